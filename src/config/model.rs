//! The high layer of configuration: [`Config`], every key of upstream's `config.yaml` as a plain
//! typed field with its default applied and its validation done. Built only by `config::load`;
//! other rooms read it and never see YAML. Durations are `std::time::Duration`, keys whose zero
//! or negative value means "off" are `Option`s, labels are parsed [`Label`]s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

use super::labels::Label;
use super::secret::Secret;

/// The HTTP client timeout of every RPC, and the cap on `runner.fetch_timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The platform of a job whose `runs-on` matches no label.
pub const DEFAULT_IMAGE: &str = "docker.gitea.com/runner-images:ubuntu-latest";
/// The kill deadline of `runner.post_task_script` when none is configured.
pub const DEFAULT_POST_TASK_SCRIPT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long act waits for healthchecked services when `container.service_ready_timeout` is 0.
pub const DEFAULT_SERVICE_READY_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub log: LogConfig,
    pub runner: RunnerConfig,
    pub cache: CacheConfig,
    pub container: ContainerConfig,
    pub host: HostConfig,
    pub metrics: MetricsConfig,
    pub health_check: HealthCheckConfig,
}

/// `log:`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// The runner process's own log level.
    pub level: LogLevel,
    /// `log.job.*`: a local copy of each task's log.
    pub job: JobLogConfig,
    /// Log to the journal natively even when stderr is not the journal (added by this project;
    /// under systemd, `JOURNAL_STREAM` already selects it). Default false.
    pub journald: bool,
}

/// Upstream's logrus levels; `fatal` and `panic` only let errors through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
    Panic,
}

impl LogLevel {
    /// The `tracing` level that lets the same events through.
    pub fn as_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Trace => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error | LogLevel::Fatal | LogLevel::Panic => tracing::Level::ERROR,
        }
    }
}

/// `log.job:`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobLogConfig {
    /// Where task logs are copied; `None` (the default) writes none.
    pub dir: Option<PathBuf>,
    /// Prune task logs older than this; `None` (written `0`) keeps them all. Default 168h.
    pub retention: Option<Duration>,
    /// Per-file cap in bytes; `None` (written `0`) means no limit. Default 1GB.
    pub max_size: Option<u64>,
}

/// `runner:`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerConfig {
    /// The registration file, relative to the working directory. Default `.runner`.
    pub file: PathBuf,
    /// Maximum concurrent tasks (≥ 1).
    pub capacity: usize,
    /// Extra environment for every job, with `env_file` already merged over it.
    pub envs: IndexMap<String, String>,
    /// The dotenv file that was merged into `envs`, if configured.
    pub env_file: Option<PathBuf>,
    /// Per-task deadline. Default 3h.
    pub timeout: Duration,
    /// Grace period for running jobs at shutdown; zero cancels them at once. Default 0.
    pub shutdown_timeout: Duration,
    /// Skip TLS verification toward Gitea (only for `https://`).
    pub insecure: bool,
    /// Per-FetchTask deadline, at most [`REQUEST_TIMEOUT`]. Default 5s.
    pub fetch_timeout: Duration,
    /// Base poll interval. Default 2s.
    pub fetch_interval: Duration,
    /// Backoff ceiling, at least `fetch_interval`. Default 5s.
    pub fetch_interval_max: Duration,
    /// Idle cleanup age; `None` when written as 0 or negative. Default 24h.
    pub workdir_cleanup_age: Option<Duration>,
    /// Idle cleanup cadence; `None` when written as 0 or negative. Default 10m.
    pub idle_cleanup_interval: Option<Duration>,
    /// Periodic log flush. Default 5s.
    pub log_report_interval: Duration,
    /// Longest wait for the first buffered row. Default 3s.
    pub log_report_max_latency: Duration,
    /// Flush at once at this many buffered rows. Default 100.
    pub log_report_batch_size: usize,
    /// UpdateTask heartbeat. Default 5s.
    pub state_report_interval: Duration,
    /// Per-attempt deadline of the final flush. Default 10s.
    pub report_close_timeout: Duration,
    /// The configured labels (empty: use the flag or the `.runner` ones).
    pub labels: Vec<Label>,
    /// Replaces `https://github.com` as the default actions URL.
    pub github_mirror: Option<String>,
    /// Clone action repositories at depth 1. Default true.
    pub action_shallow_clone: bool,
    /// Inject `ACT=true` into jobs. Default true.
    pub set_act_env: bool,
    /// Apply act's compatibility patches to actions. Default true.
    pub patch_actions: bool,
    /// Allocate a PTY for step processes.
    pub allocate_pty: bool,
    /// Platform of a job whose `runs-on` matches no label. Default [`DEFAULT_IMAGE`].
    pub default_image: String,
    pub tool_cache_mode: ToolCacheMode,
    /// Host executable run after each task.
    pub post_task_script: Option<PathBuf>,
    /// Kill deadline of `post_task_script`. Default 5m.
    pub post_task_script_timeout: Duration,
    pub hooks: HooksConfig,
    /// How the client speaks to Gitea (added by this project). Default Connect.
    pub protocol: RpcProtocol,
}

/// `runner.tool_cache_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolCacheMode {
    /// No shared tool cache.
    None,
    /// A shared volume `act-toolcache` on `RUNNER_TOOL_CACHE`.
    Shared,
}

/// `runner.protocol`: the wire transport toward Gitea.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcProtocol {
    /// Connect unary over HTTP/1.1 (what every Gitea and reverse proxy accepts).
    Connect,
    /// gRPC through tonic, for Gitea serving h2c or TLS.
    Grpc,
}

/// `runner.hooks:`: scripts run inside the job environment. Each falls back to
/// `ACTIONS_RUNNER_HOOK_JOB_STARTED/COMPLETED` from `runner.envs`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HooksConfig {
    pub job_started: Option<String>,
    pub job_completed: Option<String>,
}

/// `cache:`.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Provide a cache server to jobs. Default true.
    pub enabled: bool,
    /// Storage directory. Default `$STATE_DIRECTORY/cache` under systemd, else
    /// `$XDG_CACHE_HOME/actcache` (`~/.cache/actcache`).
    pub dir: PathBuf,
    /// Address jobs use to reach the embedded server; `None` means the outbound IP.
    pub host: Option<String>,
    /// Listen port; 0 picks a free one.
    pub port: u16,
    /// URL of a shared `cache-server`, normalised to end with exactly one `/`.
    pub external_server: Option<String>,
    /// Shared secret for the `/_internal/*` control plane (from `external_secret` or the
    /// trimmed content of `external_secret_file`).
    pub external_secret: Option<Secret>,
    /// Reuse cached action checkouts without fetching.
    pub offline_mode: bool,
    /// Advertise cache service v2. Default true.
    pub v2: bool,
    /// Evict entries not accessed within this window; `None` (written 0) never. Default 168h.
    pub retention: Option<Duration>,
    /// Per-repository cap in bytes; `None` (written 0) none. Default 10GB.
    pub repo_size_limit: Option<u64>,
    /// Total cap in bytes; `None` (the default) none.
    pub size_limit: Option<u64>,
    /// Minimum time between sweeps. Default 1h.
    pub sweep_interval: Duration,
}

/// `container:`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerConfig {
    /// Docker network for jobs; `None` means a per-job network the runner creates.
    /// (The deprecated `network_mode` is already folded in.)
    pub network: Option<String>,
    pub network_create_options: NetworkCreateOptions,
    pub privileged: bool,
    /// Extra `docker run` flags.
    pub options: String,
    /// Container workspace parent, without a leading `/`. Default `workspace`.
    pub workdir_parent: String,
    /// Allow-list of volume names and bind sources (globs); empty allows none.
    pub valid_volumes: Vec<String>,
    pub docker_host: DockerHost,
    pub force_pull: bool,
    pub force_rebuild: bool,
    pub require_docker: bool,
    /// Startup wait for Docker; zero means a single check.
    pub docker_timeout: Duration,
    pub bind_workdir: bool,
    /// Wait for healthchecked services; `None` when written negative (do not wait). Default 5m.
    pub service_ready_timeout: Option<Duration>,
}

/// `container.network_create_options:`; `None` keeps Docker's default.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkCreateOptions {
    pub enable_ipv4: Option<bool>,
    pub enable_ipv6: Option<bool>,
}

/// `container.docker_host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// `""`: find the socket and mount it into job containers.
    Detect,
    /// `-`: find the socket but do not mount it into jobs.
    DetectWithoutMount,
    /// This address, which must work.
    Address(String),
}

/// `host:`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// Host-mode work dirs. Default `$HOME/.cache/act`.
    pub workdir_parent: PathBuf,
}

/// `metrics:`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Start the HTTP metrics server. Default false.
    pub enabled: bool,
    /// Listen address. Default `127.0.0.1:9101`; `:port` listens on every interface.
    pub addr: SocketAddr,
    /// How long poll failures are tolerated before `/readyz` answers 503. Default 30s.
    pub readiness_grace: Duration,
}

/// `health_check:`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    pub enabled: bool,
    /// Free MiB required on the workspace volume. Default 1024.
    pub min_free_disk_space_mb: u64,
    /// Extra executable; non-zero exit, timeout or failure to start means "not ready".
    pub script: Option<PathBuf>,
    /// How long a script result is cached. Default 30s.
    pub interval: Duration,
    /// Per-invocation limit. Default 10s.
    pub timeout: Duration,
}
