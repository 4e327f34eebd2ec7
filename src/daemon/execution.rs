//! Running one admitted task: start its reporter (and spool), write the set-up lines, turn the task
//! into a job ([`crate::daemon::task`]), pick the backend from the labels, run the executor under
//! `runner.timeout`, and hand the job's end to the reporter, which delivers it.
//!
//! This is the poller's [`TaskRunner`]. The executor's cancel token is a child of the daemon's
//! `jobs_cancel` (shutdown) and is also cancelled by the reporter when Gitea ends the task.
//! May use: `client`, `config`, `executor`, the other `daemon` rooms. Never: `metrics`, `systemd`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::client::RunnerApi;
use crate::client::proto::runner::Task;
use crate::config::{Config, Label, Platform, pick_platform};
use crate::daemon::backends;
pub use crate::daemon::backends::ip_families;
use crate::daemon::cache_access::{self, CacheAccess};
use crate::daemon::idle::SweepRoots;
use crate::daemon::job_lines::{refuse, send_line, setup_lines};
use crate::daemon::job_log::JobLogSettings;
use crate::daemon::observe::{DaemonEvent, Observer};
use crate::daemon::poller::{Admission, TaskRunner};
use crate::daemon::post_task_script::{self, FinishedTask};
use crate::daemon::reporter::{Reporter, ReporterSettings};
use crate::daemon::spool::SpoolRoot;
use crate::daemon::task::{self, RunnerContext, TaskError, TaskSummary};
use crate::executor::backend::Backend;
use crate::executor::backend::docker::{DockerBackend, NetworkPool};
use crate::executor::backend::job_processes::ProcessScope;
use crate::executor::event::{Conclusion, JobEvent};
use crate::executor::hooks::JobHooks;
use crate::executor::{JobSpec, TrustedGitServer, run_job};

/// Beyond `runner.timeout`, how long the executor gets to end a job it was told to cancel.
const CANCEL_GRACE: Duration = Duration::from_secs(120);

/// Everything a task needs that a reload may change; a task keeps the snapshot it started with.
#[derive(Debug, Clone)]
pub struct ExecutionConfig {
    pub config: Arc<Config>,
    pub runner: RunnerContext,
    /// The effective labels (flag, config or `.runner`).
    pub labels: Vec<Label>,
    /// Jobs whose `runs-on` matches no label run here.
    pub fallback: Platform,
    pub ephemeral: bool,
    /// The cache service jobs are told about; `None` with `cache.enabled: false` (or when the
    /// embedded server could not start).
    pub cache: Option<CacheAccess>,
    /// Marks this runner's host job processes (fixed for the daemon's life: a reload keeps it).
    pub host_scope: ProcessScope,
}

/// The Docker side, when the labels or `container.require_docker` need it.
#[derive(Clone)]
pub struct DockerAccess {
    pub docker: bollard::Docker,
    /// Host path of the socket to mount into job containers (`None` mounts nothing).
    pub socket_to_mount: Option<String>,
    /// Spare job networks (started by the service after the orphan sweep).
    pub network_pool: Option<NetworkPool>,
}

/// The poller's task runner.
pub struct Execution<A> {
    api: Arc<A>,
    spool_root: SpoolRoot,
    current: RwLock<Arc<ExecutionConfig>>,
    docker: Option<DockerAccess>,
    observer: Arc<dyn Observer>,
    admission: Admission,
    delivery_exit: CancellationToken,
    live_tasks: Mutex<HashSet<i64>>,
    idle_cleanup: crate::daemon::idle::IdleCleanup,
    health: crate::daemon::health::HealthCheck,
}

impl<A: RunnerApi + 'static> Execution<A> {
    pub fn new(
        api: Arc<A>,
        spool_root: SpoolRoot,
        config: ExecutionConfig,
        docker: Option<DockerAccess>,
        observer: Arc<dyn Observer>,
        admission: Admission,
        delivery_exit: CancellationToken,
    ) -> Execution<A> {
        Execution {
            api,
            spool_root,
            current: RwLock::new(Arc::new(config)),
            docker,
            observer,
            admission,
            delivery_exit,
            live_tasks: Mutex::new(HashSet::new()),
            idle_cleanup: crate::daemon::idle::IdleCleanup::new(),
            health: crate::daemon::health::HealthCheck::new(),
        }
    }

    /// Applies a reloaded configuration to tasks admitted from now on.
    pub fn reload(&self, config: ExecutionConfig) {
        *crate::sync::write(&self.current) = Arc::new(config);
    }

    fn snapshot(&self) -> Arc<ExecutionConfig> {
        Arc::clone(&crate::sync::read(&self.current))
    }

    /// Runs inside [`task_span`]: its events name the task through the span's fields.
    async fn run_task(
        &self,
        task: Task,
        summary: Result<TaskSummary, TaskError>,
        jobs_cancel: CancellationToken,
    ) {
        let started = Instant::now();
        let snapshot = self.snapshot();
        let task_id = task.id;
        if !self.mark_live(task_id) {
            tracing::error!("task is already running");
            return;
        }
        let (repository, job_name) = match &summary {
            Ok(summary) => (summary.repository.clone(), summary.job_name.clone()),
            Err(_) => (String::new(), String::new()),
        };
        let job_cancel = jobs_cancel.child_token();
        let reporter = match Reporter::start(
            Arc::clone(&self.api),
            &self.spool_root,
            task_id,
            reporter_settings(&snapshot),
            job_cancel.clone(),
            self.delivery_exit.clone(),
            Arc::clone(&self.observer),
        ) {
            Ok(reporter) => reporter,
            Err(error) => {
                // Without a spool nothing can be reported; Gitea's reaper will fail the task.
                tracing::error!(error = %error, "cannot start reporting the task");
                self.unmark_live(task_id);
                return;
            }
        };
        self.observer.observe(&DaemonEvent::JobStarted {
            task_id,
            repository: repository.clone(),
            job: job_name.clone(),
            running: self.admission.running(),
            capacity: self.admission.capacity(),
        });
        tracing::info!("task started");
        let cache_grant = self.grant_cache(&task, &snapshot).await;
        let ended = self
            .drive(&task, summary, &snapshot, reporter.events(), job_cancel)
            .await;
        if let Some(grant) = cache_grant {
            grant.release().await;
        }
        // Still holding the slot: host housekeeping never races the next job.
        post_task_script::run_configured(&snapshot.config.runner, &ended).await;
        let finished = reporter.finish().await;
        self.unmark_live(task_id);
        tracing::info!(
            result = ?finished.result,
            delivery = ?finished.delivery,
            "task finished"
        );
        self.observer.observe(&DaemonEvent::JobFinished {
            task_id,
            result: finished.result,
            duration: started.elapsed(),
            running: self.admission.running().saturating_sub(1),
            capacity: self.admission.capacity(),
        });
    }

    /// Feeds the reporter every event of the task. It owns `events`, so whichever way it
    /// returns, the sender is gone: the reporter's finish waits for the last sender to drop, and
    /// one kept alive past this point would hold the task (and its slot) forever.
    async fn drive(
        &self,
        task: &Task,
        summary: Result<TaskSummary, TaskError>,
        snapshot: &ExecutionConfig,
        events: mpsc::Sender<JobEvent>,
        job_cancel: CancellationToken,
    ) -> FinishedTask {
        match summary {
            Ok(summary) => {
                setup_lines(&events, snapshot, &summary).await;
                let (workspace, result) = self
                    .execute(task, &summary, snapshot, events, job_cancel)
                    .await;
                FinishedTask {
                    task_id: task.id,
                    workspace,
                    result,
                    run_id: summary.run_id,
                    repository: summary.repository,
                }
            }
            Err(error) => {
                refuse(&events, &error.to_string()).await;
                FinishedTask::refused(task.id)
            }
        }
    }

    /// Grants the task's runtime token to the cache for the task's life (see
    /// [`cache_access::TaskGrant`] for how every way out revokes it).
    async fn grant_cache(
        &self,
        task: &Task,
        snapshot: &ExecutionConfig,
    ) -> Option<cache_access::TaskGrant> {
        let cache = snapshot.cache.as_ref()?;
        let github = task
            .context
            .as_ref()
            .map(task::struct_to_json)
            .unwrap_or_default();
        let token = task::job_token(task, &github);
        let lifetime =
            cache_access::grant_lifetime(snapshot.runner.timeout.saturating_add(CANCEL_GRACE));
        let grant =
            cache_access::grant_for(&github, task::runtime_token(&github, &token), lifetime)?;
        Some(cache.grant(grant).await)
    }

    async fn execute(
        &self,
        task: &Task,
        summary: &TaskSummary,
        snapshot: &ExecutionConfig,
        events: mpsc::Sender<JobEvent>,
        job_cancel: CancellationToken,
    ) -> (String, Option<Conclusion>) {
        let mut spec = task::job_spec(task, summary, &snapshot.runner);
        apply_runner_config(&mut spec, &snapshot.config, &snapshot.runner);
        crate::daemon::step_summaries::start(
            &mut spec,
            &summary.run_id,
            &snapshot.runner.server_capabilities,
            snapshot.config.runner.insecure,
        );
        let platform =
            match pick_platform(&snapshot.labels, summary.runs_on.iter().map(String::as_str))
                .unwrap_or_else(|| snapshot.fallback.clone())
            {
                // A job `container:` runs in Docker even on a host label, as upstream's act does (the
                // backend takes the container's image); without Docker the host backend refuses it.
                Platform::Host if summary.names_container && self.docker.is_some() => {
                    Platform::Docker {
                        image: snapshot.config.runner.default_image.clone(),
                    }
                }
                platform => platform,
            };
        if let Some(cache) = &snapshot.cache
            && let Some(url) =
                cache.url_for(&platform, snapshot.config.container.network.as_deref())
        {
            spec.extra_env.extend(cache.job_env(url));
        }
        let limit = snapshot.runner.timeout + CANCEL_GRACE;
        match platform {
            Platform::Host => {
                let mut backend = backends::host_backend(&snapshot.config, &snapshot.host_scope);
                bounded_run(spec, &mut backend, limit, &job_cancel, &events).await
            }
            Platform::Docker { image } => {
                let Some(docker) = &self.docker else {
                    refuse(&events, "this job needs Docker, which the runner does not use (no docker label and container.require_docker is false)").await;
                    return (String::new(), Some(Conclusion::Failure));
                };
                let config = backends::docker_job_config(snapshot, summary, &image, docker);
                let mut backend = DockerBackend::new(docker.docker.clone(), config);
                let ran = bounded_run(spec, &mut backend, limit, &job_cancel, &events).await;
                if let Some(parent) = backends::bound_workdir_parent(&snapshot.config) {
                    backends::remove_bound_workdir(&parent, summary.task_id).await;
                }
                ran
            }
        }
    }

    fn mark_live(&self, task_id: i64) -> bool {
        self.live_set().insert(task_id)
    }

    fn unmark_live(&self, task_id: i64) {
        self.live_set().remove(&task_id);
    }

    fn live_set(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        crate::sync::lock(&self.live_tasks)
    }
}

impl<A: RunnerApi + 'static> TaskRunner for Execution<A> {
    async fn run(&self, task: Task, jobs_cancel: CancellationToken) {
        let summary = task::summarize(&task);
        let span = task_span(task.id, &summary, &self.snapshot().runner.name);
        self.run_task(task, summary, jobs_cancel)
            .instrument(span)
            .await;
    }

    async fn available(&self) -> Result<(), String> {
        let snapshot = self.snapshot();
        // The poller asks while holding the slot the next task would take: not a running job.
        let n_running = self.admission.running().saturating_sub(1);
        // With bound workspaces the jobs' files go to the engine's side of the file system.
        let work_root = backends::bound_workdir_parent(&snapshot.config)
            .unwrap_or_else(|| snapshot.config.host.workdir_parent.clone());
        self.health
            .check(&snapshot.config.health_check, &work_root, n_running)
            .await
    }

    fn on_idle(&self) {
        let snapshot = self.snapshot();
        let runner = &snapshot.config.runner;
        let (Some(age), Some(interval)) =
            (runner.workdir_cleanup_age, runner.idle_cleanup_interval)
        else {
            return;
        };
        if self.admission.running() == 0 {
            let roots = SweepRoots {
                host_jobs: snapshot.config.host.workdir_parent.clone(),
                bound_tasks: backends::bound_workdir_parent(&snapshot.config),
            };
            self.idle_cleanup.run_if_due(roots, age, interval);
        }
    }
}

/// The span a task runs in. Its fields repeat on every event inside it: in the text log as
/// `task{task_id=42 repository=owner/repo ...}`, in the journal as the fields `TASK_ID`,
/// `REPOSITORY`, `WORKFLOW`, `JOB` and `RUNNER_NAME`, so `journalctl -u act-runner TASK_ID=42`
/// finds a task. At ERROR level so that no `log.level` filters it out: a warning inside a task
/// still names the task.
fn task_span(
    task_id: i64,
    summary: &Result<TaskSummary, TaskError>,
    runner_name: &str,
) -> tracing::Span {
    let (repository, workflow, job) = match summary {
        Ok(summary) => (
            summary.repository.as_str(),
            summary.workflow.as_str(),
            summary.job_name.as_str(),
        ),
        Err(_) => ("", "", ""),
    };
    tracing::error_span!("task", task_id, repository, workflow, job, runner_name)
}

/// Reporter settings from a configuration.
pub fn reporter_settings(config: &ExecutionConfig) -> ReporterSettings {
    let runner = &config.config.runner;
    ReporterSettings {
        log_report_interval: runner.log_report_interval,
        log_report_max_latency: runner.log_report_max_latency,
        log_report_batch_size: runner.log_report_batch_size,
        state_report_interval: runner.state_report_interval,
        report_close_timeout: runner.report_close_timeout,
        delivery_timeout: runner.timeout,
        ephemeral: config.ephemeral,
        job_log: JobLogSettings::from_config(&config.config.log.job),
    }
}

/// Runs the executor; should it outlive `runner.timeout` plus a grace (it enforces the timeout
/// itself), it is cancelled and given the grace again before the job is closed as failed.
/// Returns the job's workspace and its result (`None` when it never ended).
async fn bounded_run<B: Backend>(
    spec: JobSpec,
    backend: &mut B,
    limit: Duration,
    job_cancel: &CancellationToken,
    events: &mpsc::Sender<JobEvent>,
) -> (String, Option<Conclusion>) {
    let workspace = backend.paths().workspace.to_string_lossy().into_owned();
    let run = run_job(spec, backend, events.clone(), job_cancel.clone());
    tokio::pin!(run);
    if let Ok(result) = tokio::time::timeout(limit, &mut run).await {
        return (workspace, Some(result));
    }
    tracing::error!("the job outlived runner.timeout; cancelling it");
    job_cancel.cancel();
    let result = tokio::time::timeout(CANCEL_GRACE, &mut run).await.ok();
    if result.is_none() {
        send_line(events, "::error::the job did not stop after runner.timeout").await;
        let _ = events
            .send(JobEvent::JobFinished {
                at: SystemTime::now(),
                result: Conclusion::Failure,
            })
            .await;
    }
    (workspace, result)
}

/// Where a runner keeps its state: the directory of `runner.file`.
pub fn state_dir(runner_file: &std::path::Path) -> PathBuf {
    match runner_file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Where the job's remote actions come from and live, as upstream's runner configures act: the
/// default actions URL from the task (after `runner.github_mirror`; GitHub when the server sends
/// none), the cache in `host.workdir_parent`, `runner.action_shallow_clone`,
/// `cache.offline_mode`, `container.force_rebuild` and `runner.patch_actions`;
/// `runner.set_act_env`; `runner.hooks`; and the task's own
/// instance as the one git server its token is for: the runner's address and the instance's
/// `server_url` (its ROOT_URL, which may differ behind a proxy), so private actions and instances
/// that require sign-in work, with `runner.insecure` for TLS toward it alone.
fn apply_runner_config(spec: &mut JobSpec, config: &Config, runner: &RunnerContext) {
    if let Some(url) = spec
        .github
        .get("gitea_default_actions_url")
        .and_then(serde_json::Value::as_str)
        .filter(|url| !url.is_empty())
    {
        spec.actions.default_url = url.to_string();
    }
    spec.actions.cache_dir = config.host.workdir_parent.clone();
    spec.actions.shallow = config.runner.action_shallow_clone;
    spec.actions.offline = config.cache.offline_mode;
    spec.actions.force_rebuild = config.container.force_rebuild;
    spec.act_env = config.runner.set_act_env;
    spec.actions.patch_actions = config.runner.patch_actions;
    // As upstream: GitHub's variables in `runner.envs` when the keys are unset.
    let hook = |configured: &Option<String>, variable: &str| {
        let from_envs = config
            .runner
            .envs
            .get(variable)
            .filter(|path| !path.is_empty());
        configured.clone().or_else(|| from_envs.cloned())
    };
    spec.hooks = JobHooks {
        started: hook(
            &config.runner.hooks.job_started,
            "ACTIONS_RUNNER_HOOK_JOB_STARTED",
        ),
        completed: hook(
            &config.runner.hooks.job_completed,
            "ACTIONS_RUNNER_HOOK_JOB_COMPLETED",
        ),
    };
    let text = |key: &str| {
        spec.github
            .get(key)
            .and_then(serde_json::Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let base_urls = std::iter::once(runner.address.clone())
        .chain(text("server_url"))
        .collect();
    // Reusable workflows live on the instance, as upstream's act clones them from it.
    spec.actions.workflows_url = runner.address.clone();
    spec.actions.trusted_server = Some(TrustedGitServer {
        base_urls,
        token: text("token").unwrap_or_default(),
        insecure: config.runner.insecure,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_settings_follow_the_task_and_the_config() {
        let env = crate::config::LoadEnv::with_home("/home/runner");
        let mut config = Config::defaults(&env);
        config.runner.action_shallow_clone = false;
        config.cache.offline_mode = true;
        config.runner.insecure = true;
        let runner = RunnerContext {
            name: "r".into(),
            uuid: "u".into(),
            address: "http://gitea.internal:3000".into(),
            envs: Default::default(),
            timeout: Duration::from_secs(60),
            server_capabilities: String::new(),
            github_mirror: None,
        };
        let mut spec = JobSpec::new(String::new(), String::new(), String::new());
        for (key, value) in [
            ("gitea_default_actions_url", "https://gitea.example"),
            ("server_url", "https://gitea.example/"),
            ("token", "task-token"),
        ] {
            spec.github
                .insert(key.into(), serde_json::Value::String(value.into()));
        }
        apply_runner_config(&mut spec, &config, &runner);
        assert_eq!(spec.actions.default_url, "https://gitea.example");
        assert_eq!(spec.actions.cache_dir, config.host.workdir_parent);
        assert!(!spec.actions.shallow);
        assert!(spec.actions.offline);
        assert!(
            spec.actions.patch_actions,
            "runner.patch_actions defaults to true"
        );
        let server = spec.actions.trusted_server.unwrap();
        assert_eq!(
            server.base_urls,
            ["http://gitea.internal:3000", "https://gitea.example/"]
        );
        assert_eq!(server.token, "task-token");
        assert!(server.insecure);

        config.runner.patch_actions = false;
        let mut spec = JobSpec::new(String::new(), String::new(), String::new());
        apply_runner_config(&mut spec, &config, &runner);
        assert!(!spec.actions.patch_actions);
        assert_eq!(spec.actions.default_url, "https://github.com");
        let server = spec.actions.trusted_server.unwrap();
        assert_eq!(server.base_urls, ["http://gitea.internal:3000"]);
        assert!(server.token.is_empty());
    }
}
