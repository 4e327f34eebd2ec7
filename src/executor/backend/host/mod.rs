//! The host backend: a job's steps run as host processes in a fresh per-task directory
//! (`workspace/`, `temp/`, `tool_cache/` unless the tool cache is shared), writing to one pipe or,
//! with `runner.allocate_pty`, a terminal (`output`). The environment is explicit: a process gets exactly what
//! the executor passes, built on an allowlist of the runner's own variables (never systemd's
//! `NOTIFY_SOCKET`, `LISTEN_*`, `WATCHDOG_*`, `INVOCATION_ID`, `JOURNAL_STREAM`). Each command runs in
//! its own process group, killed as a whole (SIGTERM, then SIGKILL after a bound) on cancellation or
//! timeout; at `cleanup` what a step left running is killed: its groups, and every process that
//! carries the job's mark, which `setsid` does not shed ([`super::job_processes`]). When the
//! scope has a cgroup tree (the daemon under systemd), every command starts inside the job's own
//! cgroup and cleanup kills all of it, which nothing escapes.

mod output;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sync;

use super::job_processes::{JOB_MARK_VAR, JobCgroupTree, ProcessScope, kill_job};
use super::tree_copy::copy_entries;
use super::{
    Backend, BackendError, EnvironmentPaths, ExecEnd, ExecRequest, ExitStatus, JobContainers,
    MAX_COMMAND_FILE_BYTES, NewFile, OutputLines, PROXY_VARIABLES, Stream, WorkspaceHasher,
    command_file_too_large,
};

/// How long a process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long output is still read after the main process exited (a background child may hold the pipe).
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// Runner variables a job process may see (and [`PROXY_VARIABLES`]); everything else is left out
/// on purpose.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How the host backend runs a job's steps, from the runner's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOptions {
    /// `runner.allocate_pty`: each step runs with a terminal (see `output`).
    pub allocate_pty: bool,
    /// `runner.tool_cache_mode: shared`: `RUNNER_TOOL_CACHE` is this directory, kept across jobs
    /// (upstream: `tool_cache` beside the action cache); `None` gives each job its own, removed
    /// with the job's directory.
    pub shared_tool_cache: Option<PathBuf>,
    /// Every process of the job is marked as a job of this scope ([`JOB_MARK_VAR`]).
    pub scope: ProcessScope,
}

/// Runs steps as host processes under `<parent>/<random>/`.
#[derive(Debug)]
pub struct HostBackend {
    root: PathBuf,
    paths: EnvironmentPaths,
    options: HostOptions,
    base_env: BTreeMap<String, String>,
    /// Process groups started, killed at cleanup in case a step left something running.
    process_groups: Mutex<Vec<i32>>,
    /// The value of [`JOB_MARK_VAR`] in every process of this job.
    mark: String,
    /// The job's name in its scope (the task directory's name).
    job: String,
    /// The job's cgroup, from `prepare`, when the scope has a cgroup tree.
    cgroup: Option<PathBuf>,
}

impl HostBackend {
    /// A backend whose task directory will be created under `parent` (e.g. `host.workdir_parent`,
    /// or the system temp dir), in a scope of its own.
    pub fn new(parent: &Path) -> HostBackend {
        let options = HostOptions {
            allocate_pty: false,
            shared_tool_cache: None,
            scope: ProcessScope::private(),
        };
        HostBackend::with_options(parent, options)
    }

    /// [`HostBackend::new`] with the runner's settings.
    pub fn with_options(parent: &Path, options: HostOptions) -> HostBackend {
        let job = format!("{:016x}", rand::random::<u64>());
        let root = parent.join(&job);
        let paths = EnvironmentPaths {
            workspace: root.join("workspace"),
            temp: root.join("temp"),
            tool_cache: options
                .shared_tool_cache
                .clone()
                .unwrap_or_else(|| root.join("tool_cache")),
        };
        let mut base_env: BTreeMap<String, String> = std::env::vars()
            .filter(|(key, _)| {
                INHERITED_ENV.contains(&key.as_str())
                    || PROXY_VARIABLES.contains(&key.as_str())
                    || key.starts_with("LC_")
            })
            .collect();
        base_env
            .entry("PATH".to_string())
            .or_insert_with(|| DEFAULT_PATH.to_string());
        let mark = options.scope.job_mark(&job);
        HostBackend {
            root,
            paths,
            options,
            base_env,
            process_groups: Mutex::new(Vec::new()),
            mark,
            job,
            cgroup: None,
        }
    }

    /// The per-task directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.paths.workspace.join(path)
        }
    }

    fn forget_group(&self, pgid: i32) {
        sync::lock(&self.process_groups).retain(|group| *group != pgid);
    }
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> BackendError {
    move |source| BackendError::Io { context, source }
}

impl Backend for HostBackend {
    fn paths(&self) -> &EnvironmentPaths {
        &self.paths
    }

    fn os(&self) -> &str {
        "Linux"
    }

    /// A job that names containers never runs here as if it did not: the caller routes a job
    /// `container:` to Docker when it can, and whatever reaches the host is refused.
    fn configure(&mut self, containers: JobContainers) -> Result<(), BackendError> {
        let mut wanted: Vec<String> = containers
            .job
            .iter()
            .map(|container| format!("`container: {}`", container.image))
            .collect();
        wanted.extend(
            containers
                .services
                .iter()
                .map(|(id, _)| format!("service `{id}`")),
        );
        if wanted.is_empty() {
            return Ok(());
        }
        Err(BackendError::Policy(format!(
            "the job runs on the host, which runs no containers, but it asks for {}; run it on a \
             docker label, or give the runner Docker so that a job `container:` runs there",
            wanted.join(" and ")
        )))
    }

    fn base_env(&self) -> BTreeMap<String, String> {
        self.base_env.clone()
    }

    fn workspace_hasher(&self) -> Option<WorkspaceHasher> {
        let workspace = self.paths.workspace.clone();
        Some(Box::new(move |patterns: &[String]| {
            crate::executor::hash_files::hash_files(&workspace, patterns)
        }))
    }

    async fn prepare(&mut self, _log: &mpsc::Sender<String>) -> Result<(), BackendError> {
        for dir in [
            &self.paths.workspace,
            &self.paths.temp,
            &self.paths.tool_cache,
        ] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(io_error(format!("cannot create {}", dir.display())))?;
        }
        // The task directory may receive secrets (command files, scripts): owner only.
        set_mode(&self.root, 0o700).await?;
        if let Some(tree) = self.options.scope.cgroups() {
            self.cgroup = create_cgroup(Arc::clone(tree), self.job.clone()).await;
        }
        Ok(())
    }

    async fn exec(
        &self,
        request: ExecRequest,
        output: mpsc::Sender<OutputLines>,
        cancel: CancellationToken,
    ) -> Result<ExecEnd, BackendError> {
        let Some((program, args)) = request.argv.split_first() else {
            return Err(BackendError::Io {
                context: "empty command".into(),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        };
        let working_dir = match &request.working_dir {
            Some(dir) => self.resolve(dir),
            None => self.paths.workspace.clone(),
        };
        self.write_files(request.files).await?;
        let step_output = output::StepOutput::new(self.options.allocate_pty).map_err(io_error(
            String::from("cannot create the step's output pipe or terminal"),
        ))?;
        let mut command = match (&self.cgroup, self.options.scope.cgroups()) {
            (Some(cgroup), Some(tree)) => {
                let launcher = tree.launcher(cgroup);
                let (first, rest) = launcher.split_first().ok_or_else(|| BackendError::Io {
                    context: String::from("the job cgroup's launcher is empty"),
                    source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
                })?;
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
            _ => Command::new(program),
        };
        command
            .args(args)
            .env_clear()
            .envs(&request.env)
            .env(JOB_MARK_VAR, &self.mark)
            .current_dir(&working_dir)
            .stdin(step_output.stdin)
            .stdout(step_output.stdout)
            .stderr(step_output.stderr)
            .process_group(0)
            .kill_on_drop(true);
        let spawned = command.spawn();
        // The command holds the output's write ends: the output ends only once it lets them go.
        drop(command);
        let mut child = spawned.map_err(io_error(format!(
            "cannot start `{program}` in {}",
            working_dir.display()
        )))?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok());
        if let Some(pgid) = pgid {
            sync::lock(&self.process_groups).push(pgid);
        }

        let readers = output::forward_lines(Some(step_output.reader), Stream::Stdout, &output);
        tokio::pin!(readers);
        let mut readers_done = false;

        let deadline = async {
            match request.timeout {
                Some(timeout) => tokio::time::sleep(timeout).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);

        let ended = loop {
            tokio::select! {
                status = child.wait() => break Ok(status),
                _ = &mut readers, if !readers_done => readers_done = true,
                () = &mut deadline => break Err(ExitStatus::TimedOut),
                () = cancel.cancelled() => break Err(ExitStatus::Cancelled),
            }
        };
        match ended {
            Ok(status) => {
                if !readers_done {
                    let _ = tokio::time::timeout(OUTPUT_DRAIN_LIMIT, &mut readers).await;
                }
                let status = status.map_err(io_error(format!("waiting for `{program}`")))?;
                let code = status.code().map(i64::from).unwrap_or_else(|| {
                    // Killed by a signal: report it the way shells do.
                    use std::os::unix::process::ExitStatusExt;
                    128 + i64::from(status.signal().unwrap_or(0))
                });
                // The command files are plain files here: reading them back costs nothing.
                Ok(ExitStatus::Exited(code).into())
            }
            Err(reason) => {
                if let Some(pgid) = pgid {
                    kill_group(pgid, &mut child).await;
                    self.forget_group(pgid);
                }
                let _ = tokio::time::timeout(OUTPUT_DRAIN_LIMIT, &mut readers).await;
                Ok(reason.into())
            }
        }
    }

    async fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), BackendError> {
        let path = self.resolve(path);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io_error(format!("cannot create {}", parent.display())))?;
        }
        tokio::fs::write(&path, contents)
            .await
            .map_err(io_error(format!("cannot write {}", path.display())))?;
        set_mode(&path, mode).await
    }

    async fn write_files(&self, files: Vec<NewFile>) -> Result<(), BackendError> {
        for file in files {
            self.write_file(&file.path, &file.contents, file.mode)
                .await?;
        }
        Ok(())
    }

    async fn read_dir_files(&self, dir: &str) -> Result<BTreeMap<String, Vec<u8>>, BackendError> {
        let dir = self.resolve(dir);
        let mut files = BTreeMap::new();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(source) => {
                return Err(BackendError::Io {
                    context: format!("cannot list {}", dir.display()),
                    source,
                });
            }
        };
        let listing = |source| BackendError::Io {
            context: format!("cannot list {}", dir.display()),
            source,
        };
        while let Some(entry) = entries.next_entry().await.map_err(listing)? {
            if !entry.file_type().await.map_err(listing)?.is_file() {
                continue;
            }
            let path = entry.path();
            let read_error = |source| BackendError::Io {
                context: format!("cannot read {}", path.display()),
                source,
            };
            let mut contents = Vec::new();
            let file = tokio::fs::File::open(&path).await.map_err(read_error)?;
            // At most one byte past the bound is read, whatever the step keeps writing.
            file.take(MAX_COMMAND_FILE_BYTES + 1)
                .read_to_end(&mut contents)
                .await
                .map_err(read_error)?;
            if contents.len() as u64 > MAX_COMMAND_FILE_BYTES {
                return Err(command_file_too_large(&path.to_string_lossy()));
            }
            files.insert(entry.file_name().to_string_lossy().into_owned(), contents);
        }
        Ok(files)
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let path = self.resolve(path);
        match tokio::fs::read(&path).await {
            Ok(contents) => Ok(Some(contents)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BackendError::Io {
                context: format!("cannot read {}", path.display()),
                source,
            }),
        }
    }

    /// A remote action runs from its checkout in the action cache: nothing to copy.
    async fn import_dir(&self, host_dir: &Path, _path: &str) -> Result<String, BackendError> {
        Ok(host_dir.to_string_lossy().into_owned())
    }

    async fn import_files(
        &self,
        root: &Path,
        relative: Vec<PathBuf>,
        path: &str,
    ) -> Result<(), BackendError> {
        let source = root.to_path_buf();
        let dest = self.resolve(path);
        tokio::task::spawn_blocking(move || copy_entries(&source, &relative, &dest))
            .await
            .map_err(|error| BackendError::Io {
                context: format!("copying {}", root.display()),
                source: std::io::Error::other(error.to_string()),
            })?
    }

    async fn cleanup(&mut self) -> Result<(), BackendError> {
        let groups = std::mem::take(&mut *sync::lock(&self.process_groups));
        for pgid in groups {
            // The leader has exited; what is left are processes a step put in the background.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        if let (Some(_), Some(tree)) = (self.cgroup.take(), self.options.scope.cgroups()) {
            let (tree, job) = (Arc::clone(tree), self.job.clone());
            let span = tracing::Span::current();
            let _ = tokio::task::spawn_blocking(move || span.in_scope(|| tree.finish(&job))).await;
        }
        let mark = self.mark.clone();
        let _ = tokio::task::spawn_blocking(move || kill_job(&mark)).await;
        match tokio::fs::remove_dir_all(&self.root).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(BackendError::Io {
                context: format!("cannot remove {}", self.root.display()),
                source,
            }),
        }
    }
}

/// The job's cgroup; without one (logged) the job runs with its process groups and mark only.
async fn create_cgroup(tree: Arc<dyn JobCgroupTree>, job: String) -> Option<PathBuf> {
    match tokio::task::spawn_blocking(move || tree.create(&job)).await {
        Ok(Ok(dir)) => Some(dir),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "cannot create the job's cgroup; its processes are killed by their mark");
            None
        }
        Err(_) => None,
    }
}

async fn set_mode(path: &Path, mode: u32) -> Result<(), BackendError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(io_error(format!(
            "cannot set the mode of {}",
            path.display()
        )))
}

/// SIGTERM to the whole group, then SIGKILL if the leader is still there after the grace.
async fn kill_group(pgid: i32, child: &mut tokio::process::Child) {
    let group = Pid::from_raw(pgid);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
    }
    // Children that ignored SIGTERM while the leader obeyed it.
    let _ = killpg(group, Signal::SIGKILL);
}

#[cfg(test)]
mod tests;
