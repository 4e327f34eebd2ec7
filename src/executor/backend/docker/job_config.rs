//! What one job's Docker backend is given: the runner's settings and the job's containers, all
//! already evaluated. A plain value, filled by the daemon or `exec` at construction.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{IpFamilies, NetworkPool, RegistryCredentials};

/// The volume every job with `runner.tool_cache_mode: shared` mounts on its tool cache (upstream's
/// name, so a runner replacing the Go one finds its tools).
pub const SHARED_TOOL_CACHE_VOLUME: &str = "act-toolcache";

/// Who a job's containers belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdentity {
    /// The runner's UUID (`.runner`); `act_runner exec` uses a fixed local name.
    pub runner_uuid: String,
    /// The Gitea task id (0 for local runs).
    pub task_id: i64,
}

/// One `services:` entry, already interpolated by the executor.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The service id: its network alias and part of its container name.
    pub id: String,
    pub image: String,
    pub credentials: Option<RegistryCredentials>,
    pub env: BTreeMap<String, String>,
    /// `ports:` entries (`8080:80`, `5432`, ...).
    pub ports: Vec<String>,
    /// `volumes:` entries, filtered by `container.valid_volumes`.
    pub volumes: Vec<String>,
    /// `options:` (`docker run` flags, e.g. `--health-cmd`).
    pub options: String,
    /// Gitea's `cmd:`: arguments replacing the image's command; empty keeps it.
    pub cmd: Vec<String>,
}

/// Everything the Docker backend needs for one job. The runner config fills it at construction;
/// [`Backend::configure`] then replaces the workflow-given fields (`image` when the job names a
/// `container:`, `credentials`, `job_options`, `env`, `volumes`, `ports`, `services`).
#[derive(Debug, Clone)]
pub struct DockerJobConfig {
    /// Job image (`container.image`, or the platform image from `runs-on`).
    pub image: String,
    pub credentials: Option<RegistryCredentials>,
    /// Runner `container.options`, applied first.
    pub runner_options: String,
    /// The workflow's `container.options`, applied after the runner's.
    pub job_options: String,
    /// The workflow's `container.env`.
    pub env: BTreeMap<String, String>,
    /// The runner's proxy variables ([`proxy::runner_proxy_env`]), under the workflow's env.
    pub proxy_env: BTreeMap<String, String>,
    /// The workflow's `container.volumes`.
    pub volumes: Vec<String>,
    /// The workflow's `container.ports`.
    pub ports: Vec<String>,
    pub services: Vec<ServiceConfig>,
    /// `container.network`: `None` creates (and later removes) a network for the job;
    /// `host`, `bridge` or a name are used as they are.
    pub network: Option<String>,
    /// `container.network_create_options`, for a network the job creates itself.
    pub network_ip: IpFamilies,
    /// Where a job without `network` takes a pre-created network from; when it is `None` or has
    /// none ready, the job creates its own.
    pub network_pool: Option<NetworkPool>,
    /// `container.privileged`: job, service and step containers run privileged, and workflows
    /// may use host-escape options.
    pub privileged: bool,
    /// `container.valid_volumes` globs.
    pub valid_volumes: Vec<String>,
    /// `container.force_pull`.
    pub force_pull: bool,
    /// Host path of the Docker socket to mount at `/var/run/docker.sock` in the job container;
    /// `None` mounts nothing (`container.docker_host: -` or a non-unix host).
    pub docker_socket: Option<String>,
    /// Job container name (`GITEA-ACTIONS-TASK-<id>_WORKFLOW-<wf>_JOB-<job>`); services and the
    /// network derive theirs from it. Characters Docker refuses are replaced by `-`.
    pub container_name: String,
    /// The job container's network alias (the job id).
    pub job_alias: String,
    pub identity: JobIdentity,
    /// Workspace path inside the container: `/workspace/<owner>/<repo>` (the daemon puts the
    /// task id before the repository with `bind_workspace`).
    pub workspace: String,
    /// `container.bind_workdir`: the workspace is the host directory of the same path, bound in,
    /// for a runner that shares its file system with the engine (Docker-in-Docker); the daemon
    /// removes it after the task. Otherwise it lives in the job container's layer.
    pub bind_workspace: bool,
    /// `runner.tool_cache_mode: shared`: the volume [`SHARED_TOOL_CACHE_VOLUME`] on the tool
    /// cache, kept across jobs; otherwise each job's tool cache goes with its container.
    pub shared_tool_cache: bool,
    /// `runner.allocate_pty`: each step runs with a terminal for its output (see `exec`).
    pub allocate_pty: bool,
    /// The job container's keep-alive: it sleeps this long, then exits whatever happens.
    pub max_lifetime: Duration,
    /// How long to wait for services with a health check; `None` does not wait.
    pub service_ready_timeout: Option<Duration>,
    /// Upper bound on pulling one image.
    pub pull_timeout: Duration,
}
