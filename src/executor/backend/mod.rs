//! Backends: where a job's steps run. One trait, two implementations: `docker` (a job container per
//! job, steps by exec) and `host` (host processes in a per-task directory).
//! A backend knows nothing of workflows or expressions: it runs commands and moves files.

pub mod docker;
pub mod host;
pub mod job_processes;
mod tree_copy;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::line_batch::LineBatch;

/// One command to run inside the job environment.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Program and arguments, already expanded (e.g. `["bash", "-e", "/path/script.sh"]`).
    pub argv: Vec<String>,
    /// The complete environment of the process; nothing else is inherited.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the environment; relative paths are relative to the workspace.
    pub working_dir: Option<String>,
    /// Killed (whole process group / exec) when this elapses.
    pub timeout: Option<Duration>,
    /// Files the process needs (its script, fresh file-command files), written before it starts.
    /// Docker sends them while it creates the exec, so they cost no round trip of their own.
    pub files: Vec<NewFile>,
    /// The directory of the file-command files, which the caller reads back once the process
    /// ended; a backend that sees it empty then says so ([`ExecEnd::command_dir_empty`]).
    pub command_dir: Option<String>,
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Output lines of one stream, without their terminators, sent as soon as one read of the stream
/// completed them (one send per read, not per line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLines {
    pub stream: Stream,
    pub lines: LineBatch,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i64),
    TimedOut,
    Cancelled,
}

/// How an exec ended, and what the backend saw of the request's `command_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecEnd {
    pub status: ExitStatus,
    /// No entry of `command_dir` held anything when the process ended, so reading the directory
    /// back would find nothing to apply. `false` when the backend did not look.
    pub command_dir_empty: bool,
}

impl From<ExitStatus> for ExecEnd {
    fn from(status: ExitStatus) -> ExecEnd {
        ExecEnd {
            status,
            command_dir_empty: false,
        }
    }
}

/// The runner's proxy variables, which jobs get on either backend.
pub const PROXY_VARIABLES: [&str; 6] = [
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// Errors a backend reports; the executor turns them into failed steps or jobs.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("docker: {0}")]
    Docker(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("refused by runner policy: {0}")]
    Policy(String),
}

/// The most a file [`Backend::read_dir_files`] returns may hold: a step's environment files
/// (`GITHUB_ENV`, `GITHUB_OUTPUT`, ...) are far smaller, and a step writing gigabytes there must
/// fail, not take the runner's memory.
pub const MAX_COMMAND_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The error of a file past [`MAX_COMMAND_FILE_BYTES`].
pub fn command_file_too_large(path: &str) -> BackendError {
    BackendError::Io {
        context: format!("{path} is larger than {MAX_COMMAND_FILE_BYTES} bytes"),
        source: std::io::ErrorKind::FileTooLarge.into(),
    }
}

/// A file to create inside the environment.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Absolute path inside the environment.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// Paths of the job environment, as the job's processes see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentPaths {
    /// `GITHUB_WORKSPACE`.
    pub workspace: PathBuf,
    /// `RUNNER_TEMP`: scratch space, also where command files (`GITHUB_ENV`, ...) live.
    pub temp: PathBuf,
    /// `RUNNER_TOOL_CACHE`.
    pub tool_cache: PathBuf,
}

/// `runner.arch` as GitHub spells it: the machine's, where the job containers run too.
pub fn runner_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "X64",
        "aarch64" => "ARM64",
        "arm" => "ARM",
        "x86" => "X86",
        other => other,
    }
}

/// `RUNNER_OS`, `RUNNER_ARCH`, `RUNNER_TEMP` and `RUNNER_TOOL_CACHE` of a job environment. As in
/// act, a job container has them (with `LANG`) as its own env, under the job's `env:`, and on the
/// host they are written over the workflow and job env, where `GITHUB_ENV` can still change them.
pub fn runner_variables(paths: &EnvironmentPaths, os: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("RUNNER_OS".to_string(), os.to_string()),
        ("RUNNER_ARCH".to_string(), runner_arch().to_string()),
        (
            "RUNNER_TEMP".to_string(),
            paths.temp.to_string_lossy().into_owned(),
        ),
        (
            "RUNNER_TOOL_CACHE".to_string(),
            paths.tool_cache.to_string_lossy().into_owned(),
        ),
    ])
}

/// Registry credentials for an image (`container.credentials`). `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// A container the workflow asks for (`jobs.<id>.container` or one of `services`), with every
/// expression already evaluated by the executor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerSpec {
    pub image: String,
    pub env: BTreeMap<String, String>,
    /// As written: `name:/path` (a volume) or `/host:/path[:ro]` (a bind); the backend applies its policy.
    pub volumes: Vec<String>,
    /// Raw `docker run` flags, as written in the workflow (empty when absent).
    pub options: String,
    /// Only meaningful for services; parsed but unused for the job container, as upstream.
    pub ports: Vec<String>,
    pub credentials: Option<RegistryCredentials>,
    /// Gitea's `services.<id>.cmd`: the command of a service container (empty: the image's).
    pub cmd: Vec<String>,
}

/// The containers a job asks for, handed to the backend once, before `prepare`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobContainers {
    /// `container:`; `None` means the backend's own image (the one its `runs-on` label maps to).
    pub job: Option<ContainerSpec>,
    /// `services:` in workflow order; the id is the service's network alias.
    pub services: Vec<(String, ContainerSpec)>,
}

/// A running container as the `job.container` and `job.services.<id>` contexts show it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunningContainer {
    /// The container id.
    pub id: String,
    /// The network it joined.
    pub network: String,
    /// Published ports: container port (`80`, or `53/udp` for other protocols) to host port.
    pub ports: BTreeMap<String, String>,
}

/// The containers of a prepared job (empty on the host backend).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunningContainers {
    pub job: Option<RunningContainer>,
    /// Services by id, in workflow order.
    pub services: Vec<(String, RunningContainer)>,
}

/// `hashFiles(patterns)` as a backend computes it over its workspace: the hex digest, `''` when
/// nothing matches, `Err` with a message for the job log.
pub type WorkspaceHasher = Box<dyn Fn(&[String]) -> Result<String, String> + Send + Sync>;

/// Where a job's steps run. `configure` then `prepare` once, `exec`/`write_file`/`read_file` per step,
/// `cleanup` always (after success, failure and cancellation).
#[allow(async_fn_in_trait)]
pub trait Backend: Send + Sync {
    /// Paths inside the environment. Valid after `prepare`.
    fn paths(&self) -> &EnvironmentPaths;
    /// `runner.os` as the job sees it (`Linux`).
    fn os(&self) -> &str;
    /// The image the job's steps run in (after `configure`: its `container:`, else the label's);
    /// `None` (the default) when they run on the host.
    fn image(&self) -> Option<&str> {
        None
    }
    /// Receives the job's `container:` and `services:` before `prepare`. Backends that cannot run
    /// containers (host) may ignore them; the default does.
    fn configure(&mut self, containers: JobContainers) -> Result<(), BackendError> {
        let _ = containers;
        Ok(())
    }
    /// The environment every process starts from (docker: the image's `Env` under the job
    /// container's own, which holds [`runner_variables`] and `LANG`; host: an allowlist of the
    /// runner's own). The executor layers the job's env on top of it and prepends `GITHUB_PATH`
    /// entries to its `PATH`, so `PATH` should be present. Valid after `prepare`.
    fn base_env(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// `hashFiles` over the workspace, valid after `prepare`; `None` (the default) makes
    /// `hashFiles` an error.
    fn workspace_hasher(&self) -> Option<WorkspaceHasher> {
        None
    }
    /// The job's containers, for the `job.container` and `job.services` contexts. Valid after
    /// `prepare`; the default (host) has none.
    fn running_containers(&self) -> RunningContainers {
        RunningContainers::default()
    }
    /// Job-level lines (pull progress, service health) go to `log`.
    async fn prepare(&mut self, log: &mpsc::Sender<String>) -> Result<(), BackendError>;
    /// Runs one command; complete output lines go to `output` as they arrive.
    // The per-step methods promise `Send` futures, so the executor can box its recursion (nested
    // composite actions) and a job's future stays `Send` whatever the backend.
    fn exec(
        &self,
        request: ExecRequest,
        output: mpsc::Sender<OutputLines>,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<ExecEnd, BackendError>> + Send;
    /// Writes one file (creating parent directories) inside the environment.
    fn write_file(
        &self,
        path: &str,
        contents: &[u8],
        mode: u32,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        self.write_files(vec![NewFile {
            path: path.to_string(),
            contents: contents.to_vec(),
            mode,
        }])
    }
    /// Writes several files at once (creating parent directories). A step writes its script and
    /// its environment files before it starts; docker sends them in one archive, one API call
    /// instead of six.
    fn write_files(
        &self,
        files: Vec<NewFile>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// The regular files directly inside the directory `dir`, by name; empty when `dir` does not
    /// exist. A step's environment files are read back this way, in one call. A file past
    /// [`MAX_COMMAND_FILE_BYTES`] is an error.
    fn read_dir_files(
        &self,
        dir: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<u8>>, BackendError>> + Send;
    /// Reads a file from inside the environment; `Ok(None)` when it does not exist.
    fn read_file(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, BackendError>> + Send;
    /// Makes a host directory (a remote action checked out on the host) visible inside the
    /// environment and returns the path the job's processes use: docker copies it to `path` in the
    /// job container; the host backend uses the directory where it is.
    fn import_dir(
        &self,
        host_dir: &Path,
        path: &str,
    ) -> impl Future<Output = Result<String, BackendError>> + Send;
    /// Copies the entries `relative` (files, and symlinks as links) of the host directory `root`
    /// under the directory `path` of the environment, creating directories on the way: how `exec`
    /// puts its working tree into the workspace.
    fn import_files(
        &self,
        root: &Path,
        relative: Vec<PathBuf>,
        path: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Builds the image of a docker action (`runs.image: Dockerfile`) unless `tag` exists already
    /// (or always, with `request.force`). Backends without containers refuse (the default).
    fn build_image(
        &self,
        request: BuildRequest,
        log: mpsc::Sender<String>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = (request, log);
        async { Err(no_containers()) }
    }
    /// Runs a step container (a docker action) next to the job: it shares the job container's
    /// network and mounts, sees the workspace and temp directory as the job does, and is removed
    /// afterwards. Backends without containers refuse (the default).
    fn run_container(
        &self,
        request: ContainerRun,
        output: mpsc::Sender<OutputLines>,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<ExitStatus, BackendError>> + Send {
        let _ = (request, output, cancel);
        async { Err(no_containers()) }
    }
    /// Removes everything `prepare` created. Must be safe to call after a failed `prepare`.
    async fn cleanup(&mut self) -> Result<(), BackendError>;
}

fn no_containers() -> BackendError {
    BackendError::Policy(String::from(
        "docker actions need the docker backend; this job runs on the host (`-self-hosted`), where upstream refuses them too",
    ))
}

/// Where the build context of a docker action is.
#[derive(Debug, Clone)]
pub enum BuildContext {
    /// A directory on the runner's host (a remote action's checkout).
    HostDir(PathBuf),
    /// A directory inside the job environment (a local action in the workspace).
    EnvironmentDir(String),
}

/// A docker action's image build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub context: BuildContext,
    /// The Dockerfile, relative to the context directory.
    pub dockerfile: String,
    /// `act-<name>-dockeraction:latest`.
    pub tag: String,
    /// Rebuild even when the tag exists (`--rebuild`, `container.force_rebuild`).
    pub force: bool,
}

/// A step container: a docker action's image, entrypoint and arguments, and its environment.
#[derive(Debug, Clone)]
pub struct ContainerRun {
    pub image: String,
    /// Replaces the image's entrypoint when set.
    pub entrypoint: Option<Vec<String>>,
    /// The arguments (the image's `Cmd` when empty).
    pub args: Vec<String>,
    /// The complete environment of the container's process.
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
}
