//! Running one job: the input (`JobSpec`), the job-level flow (parse, `if`, matrix, timeout, backend
//! set-up, steps, outputs, clean-up) and the event emitter that masks every line before it leaves.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use indexmap::IndexMap;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::action;
use super::backend::{
    Backend, ContainerSpec, JobContainers, NewFile, RegistryCredentials, RunningContainer,
    RunningContainers,
};
use super::contexts;
use super::event::{Conclusion, JobEvent, PlannedStep};
use super::expr::{JobStatus, Value};
use super::local_tree;
use super::log_checkpoint;
use super::masking::Masker;
use super::model::{self, Container, Job, Workflow};
use super::scope::{self, FieldError, Scope};
use super::shell;
pub use super::spec::{JobSpec, conclusion_name};
use super::step;
use super::summary::{self, Summaries};

/// GitHub's default job timeout.
const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(360 * 60);
/// Bound on the backend's clean-up (containers, networks, directories).
const CLEANUP_LIMIT: Duration = Duration::from_secs(60);

pub use super::emitter::Emitter;

/// The state of a running job that steps read and update.
pub struct JobState {
    pub file: String,
    pub scope: Scope,
    pub env: EnvLayers,
    /// The backend's containers, shown by `job.container` and `job.services`.
    pub running: RunningContainers,
    /// `steps.<id>` as JSON, updated after each step.
    pub steps_context: serde_json::Map<String, Json>,
    pub shell_defaults: model::RunDefaults,
    pub step_debug: bool,
    pub allow_unsecure_commands: bool,
    pub deadline: Instant,
    pub timed_out: bool,
    pub cancelled: bool,
    /// Where actions come from, which are fetched, their pre and post stages.
    pub actions: action::JobActions,
    /// `exec`'s working tree, copied into the workspace (see [`local_tree`]).
    pub local_tree: Option<local_tree::LocalTree>,
    /// Files written together with the next process's own (the event payload): one archive
    /// call fewer before the first step.
    pub pending_files: Vec<NewFile>,
    /// What the steps wrote to `GITHUB_STEP_SUMMARY`.
    pub summaries: Summaries,
    /// The administrator's hooks around the steps.
    pub hooks: super::hooks::JobHooks,
}

/// What a step process's environment is built from, lowest layer first; the step's own `env:`
/// goes after `builtin`, `extra_paths` in front of `PATH`.
pub struct EnvLayers {
    /// The backend's environment (the job container's, with its `RUNNER_OS` and kin, or the
    /// runner's).
    pub base: BTreeMap<String, String>,
    /// Workflow, job and runner env, evaluated, then on the host `RUNNER_OS` and kin, then what
    /// steps added through `GITHUB_ENV`.
    pub job: IndexMap<String, String>,
    /// The job's `container.env`, evaluated: also the container's own env, but as act merges it
    /// into every step's env, over `job` as well.
    pub container: BTreeMap<String, String>,
    /// `GITHUB_PATH` entries, latest first.
    pub extra_paths: Vec<String>,
    /// Runtime, `GITHUB_*` and the runner's other variables, over `job` but under the step's
    /// `env:`.
    pub builtin: IndexMap<String, String>,
}

/// A job between set-up and clean-up: the state its stages read and update, and what every stage
/// runs with. Pre, main and post stages, composite actions and step processes all need the four
/// together, so they take this one value and a new need is a field, not a parameter.
pub struct JobRun<'a, B> {
    pub state: &'a mut JobState,
    pub backend: &'a B,
    /// Where the job's events leave, masked.
    pub emitter: &'a mut Emitter,
    /// Cancels what runs now: the job's token, or a grace token once the job was cancelled.
    pub cancel: &'a CancellationToken,
}

impl<B> JobRun<'_, B> {
    /// The same job under another token: the steps that run on a cancelled job and the post
    /// steps after an interruption get their own, so the job's cancellation does not end them.
    pub fn with_cancel<'b>(&'b mut self, cancel: &'b CancellationToken) -> JobRun<'b, B> {
        JobRun {
            state: &mut *self.state,
            backend: self.backend,
            emitter: &mut *self.emitter,
            cancel,
        }
    }
}

/// Runs one job to its end and returns its result; `JobFinished` is always the last event.
pub async fn run_job<B: Backend>(
    mut spec: JobSpec,
    backend: &mut B,
    events: mpsc::Sender<JobEvent>,
    cancel: CancellationToken,
) -> Conclusion {
    let mut emitter = Emitter::new(events, Masker::new());
    if spec.mask_secrets {
        let token = spec.github.get("token").and_then(Json::as_str);
        let secrets = spec.secrets.values().chain(&spec.masks).map(String::as_str);
        emitter.masker.add_all(token.into_iter().chain(secrets));
        if emitter.masker.n_refused() > 0 {
            emitter.log(None, &super::masking::cap_warning()).await;
        }
    }
    let outlet = spec.summary_outlet.take();
    let result = run_parsed(&spec, backend, &mut emitter, &cancel).await;
    if result != Conclusion::Cancelled {
        let summaries = std::mem::take(&mut emitter.summaries);
        let masker = &emitter.masker;
        summary::hand_out(outlet, summaries, |text| masker.mask(text), &cancel).await;
        log_checkpoint::wait_for_delivery(spec.log_delivery_wait, &emitter, &cancel).await;
    }
    emitter
        .send(JobEvent::JobFinished {
            at: SystemTime::now(),
            result,
        })
        .await;
    // The result is known and sent: the containers go after it, so that removing them delays
    // neither the result nor its report (a reporter's final flush starts at `JobFinished`).
    drop(emitter);
    clean_up(backend).await;
    result
}

/// Removes what the job created, within [`CLEANUP_LIMIT`]. After `JobFinished`, so a failure goes
/// to the runner's own log (with the task's fields), not to the job's.
pub(super) async fn clean_up<B: Backend>(backend: &mut B) {
    match tokio::time::timeout(CLEANUP_LIMIT, backend.cleanup()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(error = %error, "job clean-up failed"),
        Err(_) => tracing::warn!(
            limit_s = CLEANUP_LIMIT.as_secs(),
            "job clean-up did not finish in time"
        ),
    }
}

async fn run_parsed<B: Backend>(
    spec: &JobSpec,
    backend: &mut B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Conclusion {
    let file = spec.workflow_file.as_str();
    let workflow = match Workflow::parse(&spec.workflow_yaml) {
        Ok(workflow) => workflow,
        Err(error) => return refuse(emitter, format!("{file}:{error}")).await,
    };
    let Some(job) = workflow.jobs.get(&spec.job_id) else {
        return refuse(
            emitter,
            format!("{file}: there is no job `{}`", spec.job_id),
        )
        .await;
    };
    if let Err(error) = scope::validate(file, &workflow, job) {
        return refuse(emitter, error.0).await;
    }
    if let Some(uses) = &job.uses {
        return super::reusable::run(spec, &workflow, job, uses, backend, emitter, cancel).await;
    }
    let steps: Vec<PlannedStep> = job
        .steps
        .iter()
        .enumerate()
        .map(|(step_idx, step)| PlannedStep {
            step_idx,
            name: emitter.masker.mask(&step.display_name()),
        })
        .collect();
    emitter
        .send(JobEvent::JobStarted {
            at: SystemTime::now(),
            steps,
        })
        .await;
    match run_started(spec, &workflow, job, backend, emitter, cancel).await {
        Ok((conclusion, outputs)) => {
            if let Some(outputs) = outputs {
                emitter.send(JobEvent::Outputs(outputs)).await;
            }
            conclusion
        }
        Err(error) => {
            emitter.log(None, &format!("::error::{error}")).await;
            Conclusion::Failure
        }
    }
}

/// Fails a job that cannot start: an empty step list and one error line.
pub(super) async fn refuse(emitter: &Emitter, message: String) -> Conclusion {
    emitter
        .send(JobEvent::JobStarted {
            at: SystemTime::now(),
            steps: Vec::new(),
        })
        .await;
    emitter.log(None, &format!("::error::{message}")).await;
    Conclusion::Failure
}

/// The job's `if`, evaluated in `scope` (left with the success status): a skipped or failed need
/// skips the job unless a status function says otherwise.
pub(super) fn job_runs(spec: &JobSpec, job: &Job, scope: &mut Scope) -> Result<bool, FieldError> {
    let (status, all_needs_succeeded) = contexts::needs_status(spec);
    scope.status = status;
    let uses_status_function =
        scope.condition_uses_status_function(job.condition.as_ref(), "if")?;
    let run_it = if !uses_status_function && !all_needs_succeeded {
        false
    } else {
        scope.condition(job.condition.as_ref(), "if")?
    };
    scope.status = JobStatus::Success;
    Ok(run_it)
}

/// Runs a started job to its end: its conclusion, and its outputs unless it was cancelled.
pub(super) async fn run_started<B: Backend>(
    spec: &JobSpec,
    workflow: &Workflow,
    job: &Job,
    backend: &mut B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Result<(Conclusion, Option<IndexMap<String, String>>), FieldError> {
    let file = spec.workflow_file.as_str();
    let mut scope = Scope::new(file);
    contexts::fill_static(spec, workflow, job, backend.paths(), &mut scope);
    contexts::matrix(spec, job, &mut scope)?;

    if !job_runs(spec, job, &mut scope)? {
        emitter
            .log(None, "The job was skipped: its `if` condition is false")
            .await;
        return Ok((Conclusion::Skipped, None));
    }

    let continue_on_error = scope.boolean(job.continue_on_error.as_ref(), "continue-on-error")?;
    let job_timeout = scope
        .minutes(job.timeout_minutes.as_ref(), "timeout-minutes")?
        .map_or(DEFAULT_JOB_TIMEOUT, |minutes| {
            Duration::from_secs_f64(minutes * 60.0)
        });
    let job_timeout = spec
        .timeout_cap
        .map_or(job_timeout, |cap| job_timeout.min(cap));

    // Env before containers: container fields may refer to `env`.
    let env = contexts::job_env(spec, workflow, job, &mut scope)?;
    let containers = JobContainers {
        job: job
            .container
            .as_ref()
            .map(|container| container_spec(&scope, container))
            .transpose()?,
        services: job
            .services
            .iter()
            .map(|(id, service)| Ok((id.clone(), container_spec(&scope, service)?)))
            .collect::<Result<Vec<_>, FieldError>>()?
            .into_iter()
            .filter(|(_, service)| !service.image.is_empty())
            .collect(),
    };
    for credentials in containers
        .job
        .iter()
        .chain(containers.services.iter().map(|(_, service)| service))
        .filter_map(|container| container.credentials.as_ref())
    {
        let _ = emitter.masker.add(&credentials.password);
    }

    let deadline = Instant::now() + job_timeout;
    let mut state = JobState {
        file: file.to_string(),
        scope,
        env: EnvLayers {
            base: BTreeMap::new(),
            job: env,
            container: containers
                .job
                .as_ref()
                .map(|container| container.env.clone())
                .unwrap_or_default(),
            extra_paths: Vec::new(),
            builtin: IndexMap::new(),
        },
        running: RunningContainers::default(),
        steps_context: serde_json::Map::new(),
        shell_defaults: shell::run_defaults(workflow, job),
        step_debug: contexts::flag(spec, "ACTIONS_STEP_DEBUG"),
        allow_unsecure_commands: contexts::flag(spec, "ACTIONS_ALLOW_UNSECURE_COMMANDS"),
        deadline,
        timed_out: false,
        cancelled: false,
        actions: action::JobActions::new(spec.actions.clone()),
        pending_files: Vec::new(),
        local_tree: spec.local_tree.clone(),
        summaries: Summaries::default(),
        hooks: spec.hooks.clone(),
    };

    let prepared = prepare(backend, containers, emitter, cancel, deadline).await;
    let mut result = match prepared {
        Ok(()) => {
            contexts::fill_paths(spec, workflow, job, backend.paths(), &mut state.scope);
            state.env.base = backend.base_env();
            state.running = backend.running_containers();
            shell::container_default(&mut state.shell_defaults, job, &state.running);
            state.scope.set("job", job_context(&state));
            if let Some(hasher) = backend.workspace_hasher() {
                state.scope.set_hash_files(hasher);
            }
            // A label that does not evaluate names no release; the job's platform was picked
            // before it started, so nothing else depends on it here.
            let runs_on: Vec<String> = job
                .runs_on
                .iter()
                .filter_map(|label| state.scope.string(label, "runs-on").ok())
                .collect();
            let image_os = super::image_os::image_os(backend.image(), &runs_on);
            state.env.builtin = contexts::builtin_env(spec, &state, backend.paths(), image_os);
            // In a job container these are the container's own env (in `base`); on the host act
            // writes them over the workflow and job env, so `GITHUB_ENV` may still change them.
            if backend.image().is_none() {
                state.env.job.extend(super::backend::runner_variables(
                    backend.paths(),
                    backend.os(),
                ));
            }
            let mut job_run = JobRun {
                state: &mut state,
                backend: &*backend,
                emitter: &mut *emitter,
                cancel,
            };
            step::run_steps(job, &mut job_run).await
        }
        Err(PrepareEnd::Cancelled) => Conclusion::Cancelled,
        Err(PrepareEnd::TimedOut) => {
            state.timed_out = true;
            Conclusion::Failure
        }
        Err(PrepareEnd::Failed(message)) => {
            emitter.log(None, &format!("::error::{message}")).await;
            Conclusion::Failure
        }
    };
    if state.timed_out {
        emitter
            .log(
                None,
                &format!(
                    "::error::The job has exceeded the maximum execution time of {}",
                    humantime::format_duration(job_timeout)
                ),
            )
            .await;
    }

    let outputs = if result == Conclusion::Cancelled {
        None
    } else {
        Some(job_outputs(job, &mut state, emitter).await)
    };
    let offset = emitter.step_offset();
    emitter
        .summaries
        .absorb(std::mem::take(&mut state.summaries), offset);
    if result == Conclusion::Failure && continue_on_error {
        emitter
            .log(
                None,
                "The job failed, but `continue-on-error` lets the workflow go on",
            )
            .await;
        result = Conclusion::Success;
    }
    Ok((result, outputs))
}

enum PrepareEnd {
    Cancelled,
    TimedOut,
    Failed(String),
}

async fn prepare<B: Backend>(
    backend: &mut B,
    containers: JobContainers,
    emitter: &Emitter,
    cancel: &CancellationToken,
    deadline: Instant,
) -> Result<(), PrepareEnd> {
    backend
        .configure(containers)
        .map_err(|error| PrepareEnd::Failed(error.to_string()))?;
    let (log_tx, mut log_rx) = mpsc::channel::<String>(64);
    let prepared = {
        let preparing = backend.prepare(&log_tx);
        tokio::pin!(preparing);
        loop {
            tokio::select! {
                result = &mut preparing => break Ok(result),
                Some(line) = log_rx.recv() => emitter.log(None, &line).await,
                () = cancel.cancelled() => break Err(PrepareEnd::Cancelled),
                () = tokio::time::sleep_until(deadline) => break Err(PrepareEnd::TimedOut),
            }
        }
    };
    drop(log_tx);
    while let Ok(line) = log_rx.try_recv() {
        emitter.log(None, &line).await;
    }
    match prepared? {
        Ok(()) => Ok(()),
        Err(error) => Err(PrepareEnd::Failed(format!(
            "setting up the job failed: {error}"
        ))),
    }
}

async fn job_outputs(
    job: &Job,
    state: &mut JobState,
    emitter: &Emitter,
) -> IndexMap<String, String> {
    contexts::set_env_context(state, &IndexMap::new());
    let steps = Json::Object(state.steps_context.clone());
    state.scope.set("steps", Value::from(steps));
    state.scope.set("job", job_context(state));
    let mut outputs = IndexMap::new();
    for (name, field) in &job.outputs {
        match state.scope.string(field, &format!("outputs.{name}")) {
            Ok(value) if emitter.masker.holds_masked(&value) => {
                let warning =
                    format!("::warning::Skip output '{name}' since it may contain secret.");
                emitter.log(None, &warning).await;
            }
            Ok(value) => {
                outputs.insert(name.clone(), value);
            }
            Err(error) => emitter.log(None, &format!("::warning::{error}")).await,
        }
    }
    outputs
}

fn container_spec(scope: &Scope, container: &Container) -> Result<ContainerSpec, FieldError> {
    let strings = |fields: &[model::Located<String>], what: &str| {
        fields
            .iter()
            .map(|field| scope.string(field, what))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(ContainerSpec {
        image: scope.string(&container.image, "image")?,
        env: container
            .env
            .iter()
            .map(|(key, value)| Ok((key.clone(), scope.string(value, "env")?)))
            .collect::<Result<_, FieldError>>()?,
        volumes: strings(&container.volumes, "volumes")?,
        options: container
            .options
            .as_ref()
            .map(|options| scope.string(options, "options"))
            .transpose()?
            .unwrap_or_default(),
        ports: strings(&container.ports, "ports")?,
        credentials: container
            .credentials
            .as_ref()
            .map(|credentials| {
                Ok::<_, FieldError>(RegistryCredentials {
                    username: scope.string(&credentials.username, "credentials.username")?,
                    password: scope.string(&credentials.password, "credentials.password")?,
                })
            })
            .transpose()?,
        cmd: strings(&container.cmd, "cmd")?,
    })
}

/// The `job` context.
pub fn job_context(state: &JobState) -> Value {
    let status = match state.scope.status {
        JobStatus::Success => "success",
        JobStatus::Failure => "failure",
        JobStatus::Cancelled => "cancelled",
    };
    let describe = |container: &RunningContainer| json!({ "id": container.id, "network": container.network, "ports": container.ports });
    let container = state.running.job.as_ref().map_or_else(
        || json!({}),
        |job| json!({ "id": job.id, "network": job.network }),
    );
    let services: serde_json::Map<String, Json> = state
        .running
        .services
        .iter()
        .map(|(id, service)| (id.clone(), describe(service)))
        .collect();
    Value::from(json!({ "status": status, "services": services, "container": container }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::backend::host::HostBackend;
    use std::path::Path;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn run_job_on_a_concrete_backend_is_send() {
        // The daemon spawns jobs on a multi-threaded runtime: the future must be Send.
        let mut backend = HostBackend::new(Path::new("/nonexistent"));
        let (events, _) = mpsc::channel(1);
        let spec = JobSpec::new(String::new(), String::new(), String::new());
        let future = run_job(spec, &mut backend, events, CancellationToken::new());
        assert_send(&future);
    }
}
