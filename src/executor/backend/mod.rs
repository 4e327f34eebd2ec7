//! Backends: where a job's steps run. One trait, two implementations: `docker` (a job container per
//! job, steps by exec) and `host` (host processes in a per-task directory).
//! A backend knows nothing of workflows or expressions: it runs commands and moves files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of output, without its trailing newline, sent as soon as it is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: Stream,
    pub line: String,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i64),
    TimedOut,
    Cancelled,
}

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

/// Where a job's steps run. `prepare` once, `exec`/`write_file`/`read_file` per step,
/// `cleanup` always (after success, failure and cancellation).
#[allow(async_fn_in_trait)]
pub trait Backend: Send + Sync {
    /// Paths inside the environment. Valid after `prepare`.
    fn paths(&self) -> &EnvironmentPaths;
    /// `runner.os` as the job sees it (`Linux`).
    fn os(&self) -> &str;
    /// Job-level lines (pull progress, service health) go to `log`.
    async fn prepare(&mut self, log: &mpsc::Sender<String>) -> Result<(), BackendError>;
    /// Runs one command; every complete output line goes to `output` as it arrives.
    async fn exec(
        &self,
        request: ExecRequest,
        output: mpsc::Sender<OutputLine>,
        cancel: CancellationToken,
    ) -> Result<ExitStatus, BackendError>;
    /// Writes a file (creating parent directories) inside the environment.
    async fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), BackendError>;
    /// Reads a file from inside the environment; `Ok(None)` when it does not exist.
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, BackendError>;
    /// Removes everything `prepare` created. Must be safe to call after a failed `prepare`.
    async fn cleanup(&mut self) -> Result<(), BackendError>;
}
