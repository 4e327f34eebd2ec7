//! Running the job's steps in order (between the administrator's job hooks) (and, once the job is cancelled, only those whose `if` holds
//! on a cancelled job), and one step: its `if`, env, shell and script, the output stream through
//! workflow commands and masking, the environment files afterwards, and outcome versus conclusion.

use std::time::{Duration, SystemTime};

use indexmap::IndexMap;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::action;
use super::backend::{Backend, NewFile};
use super::contexts::{self, EVENT_FILE};
use super::event::{Conclusion, JobEvent};
use super::expr::{JobStatus, Value};
use super::hooks;
use super::job::{JobRun, JobState, conclusion_name, job_context};
use super::local_tree;
use super::model::{Job, Step};
pub use super::process::{StepCommand, StepContainer, execute};
use super::shell;

/// How long the steps that run on a cancelled job (`if: always()`, `if: cancelled()`) get in
/// all, as GitHub's `cancel-timeout-minutes` default (the post steps get their own grace).
const CANCELLED_STEPS_GRACE: Duration = Duration::from_secs(5 * 60);

/// Pre steps, the job's steps, then post steps; the job's conclusion.
pub async fn run_steps<B: Backend>(job: &Job, job_run: &mut JobRun<'_, B>) -> Conclusion {
    let ready = match event_file(job_run.state, job_run.backend) {
        Ok(file) => {
            job_run.state.pending_files.push(file);
            local_tree::copy_to_workspace(job_run.state, job_run.backend).await
        }
        Err(error) => Err(error),
    };
    if let Err(error) = ready {
        job_run
            .emitter
            .log(None, &format!("::error::{error}"))
            .await;
        return Conclusion::Failure;
    }
    let hooks = job_run.state.hooks.clone();
    let mut job_failed =
        !hooks::run_started(&hooks, job_run).await || !action::run_pre_steps(job, job_run).await;
    if job_failed {
        job_run.state.scope.status = JobStatus::Failure;
    }
    // Once the job is cancelled, steps whose `if` holds on a cancelled job (`always()`,
    // `cancelled()`) still run, as on GitHub, on a token of their own and within a grace.
    let mut after_cancel: Option<CancellationToken> = None;
    for (step_idx, step) in job.steps.iter().enumerate() {
        let state = &mut *job_run.state;
        if (state.cancelled || job_run.cancel.is_cancelled()) && !state.timed_out {
            state.cancelled = true;
            let grace = after_cancel.get_or_insert_with(|| {
                state.deadline = Instant::now() + CANCELLED_STEPS_GRACE;
                CancellationToken::new()
            });
            state.scope.status = JobStatus::Cancelled;
            run_step(&mut job_run.with_cancel(grace), step_idx, step).await;
            continue;
        }
        if state.cancelled || state.timed_out {
            let emitter = &mut *job_run.emitter;
            emitter
                .send(JobEvent::StepStarted {
                    step_idx,
                    at: SystemTime::now(),
                })
                .await;
            emitter
                .send(JobEvent::StepFinished {
                    step_idx,
                    at: SystemTime::now(),
                    outcome: Conclusion::Skipped,
                    conclusion: Conclusion::Skipped,
                })
                .await;
            continue;
        }
        let (_, conclusion) = run_step(job_run, step_idx, step).await;
        if conclusion == Conclusion::Failure {
            job_failed = true;
            job_run.state.scope.status = JobStatus::Failure;
        }
    }
    let state = &mut *job_run.state;
    let status = if state.cancelled {
        JobStatus::Cancelled
    } else if job_failed || state.timed_out {
        JobStatus::Failure
    } else {
        JobStatus::Success
    };
    let (cancelled, timed_out) = (state.cancelled, state.timed_out);
    if !action::run_post_steps(job_run, status).await {
        job_failed = true;
    }
    let interrupted = cancelled || timed_out;
    if !hooks::run_completed(&hooks, interrupted, job_run).await {
        job_failed = true;
    }
    // Post steps and the completed hook run in a grace period; the job's own end stays what it was.
    let state = &mut *job_run.state;
    state.cancelled = cancelled;
    state.timed_out = timed_out;
    if cancelled {
        Conclusion::Cancelled
    } else if job_failed || timed_out {
        Conclusion::Failure
    } else {
        Conclusion::Success
    }
}

pub(super) fn temp_dir<B: Backend>(backend: &B) -> String {
    backend.paths().temp.to_string_lossy().into_owned()
}

/// `github.event` as the file `GITHUB_EVENT_PATH` points to.
pub fn event_file<B: Backend>(state: &JobState, backend: &B) -> Result<NewFile, String> {
    let github = state.scope.context_json("github");
    let event = github.get("event").cloned().unwrap_or_else(|| json!({}));
    let contents = serde_json::to_vec_pretty(&event)
        .map_err(|error| format!("cannot encode the event payload: {error}"))?;
    Ok(NewFile {
        path: format!("{}/{EVENT_FILE}", temp_dir(backend)),
        contents,
        mode: 0o644,
    })
}

/// What a step body produced.
pub struct BodyResult {
    pub outcome: Conclusion,
    pub outputs: IndexMap<String, String>,
    /// What it saved with `GITHUB_STATE` or `::save-state`: `STATE_*` of its later stages.
    pub state: IndexMap<String, String>,
}

impl BodyResult {
    pub fn failed() -> BodyResult {
        BodyResult {
            outcome: Conclusion::Failure,
            outputs: IndexMap::new(),
            state: IndexMap::new(),
        }
    }
}

/// Runs one step and returns its (outcome, conclusion).
pub async fn run_step<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    step_idx: usize,
    step: &Step,
) -> (Conclusion, Conclusion) {
    job_run
        .emitter
        .send(JobEvent::StepStarted {
            step_idx,
            at: SystemTime::now(),
        })
        .await;
    let step_key = step.id.clone().unwrap_or_else(|| step_idx.to_string());
    let state = &mut *job_run.state;
    state.scope.set("job", job_context(state));
    state.scope.set(
        "steps",
        Value::from(serde_json::Value::Object(state.steps_context.clone())),
    );
    contexts::set_env_context(state, &IndexMap::new());

    let mut continue_on_error = false;
    let body = match prepare_step(step, &IndexMap::new(), state) {
        Err(message) => Err(message),
        Ok((step_env, run_it, keep_going)) => {
            continue_on_error = keep_going;
            if run_it {
                let call = action::Call { step_idx, depth: 0 };
                Ok(Some(run_body(job_run, call, step, step_env).await))
            } else {
                Ok(None)
            }
        }
    };
    let (outcome, outputs) = match body {
        Ok(Some(result)) => (result.outcome, result.outputs),
        Ok(None) => (Conclusion::Skipped, IndexMap::new()),
        Err(message) => {
            job_run
                .emitter
                .log(Some(step_idx), &format!("::error::{message}"))
                .await;
            (Conclusion::Failure, IndexMap::new())
        }
    };
    let conclusion = if outcome == Conclusion::Failure && continue_on_error {
        Conclusion::Success
    } else {
        outcome
    };
    job_run.state.steps_context.insert(
        step_key,
        json!({
            "outputs": outputs,
            "outcome": conclusion_name(outcome),
            "conclusion": conclusion_name(conclusion),
        }),
    );
    job_run
        .emitter
        .send(JobEvent::StepFinished {
            step_idx,
            at: SystemTime::now(),
            outcome,
            conclusion,
        })
        .await;
    (outcome, conclusion)
}

/// Evaluates the step's env, `if` and `continue-on-error`.
pub fn prepare_step(
    step: &Step,
    inherited_env: &IndexMap<String, String>,
    state: &mut JobState,
) -> Result<(IndexMap<String, String>, bool, bool), String> {
    let mut step_env = inherited_env.clone();
    contexts::set_env_context(state, &step_env);
    for (key, field) in &step.env {
        let value = state
            .scope
            .string(field, &format!("env.{key}"))
            .map_err(|error| error.0)?;
        step_env.insert(key.clone(), value);
    }
    contexts::set_step_env_context(state, &step_env);
    let run_it = state
        .scope
        .condition(step.condition.as_ref(), "if")
        .map_err(|error| error.0)?;
    let continue_on_error = state
        .scope
        .boolean(step.continue_on_error.as_ref(), "continue-on-error")
        .map_err(|error| error.0)?;
    Ok((step_env, run_it, continue_on_error))
}

/// A step's body, `run:` or `uses:`, for a job's step or one inside a composite action; a step
/// that cannot run logs why and fails.
pub(super) async fn run_body<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    call: action::Call,
    step: &Step,
    step_env: IndexMap<String, String>,
) -> BodyResult {
    let body = if step.run.is_some() {
        run_script(job_run, call.step_idx, step, step_env).await
    } else {
        action::run(job_run, call, step, step_env).await
    };
    match body {
        Ok(result) => result,
        Err(message) => {
            job_run
                .emitter
                .log(Some(call.step_idx), &format!("::error::{message}"))
                .await;
            BodyResult::failed()
        }
    }
}

/// A `run:` step: evaluates its fields, writes the script and runs it with its shell.
pub async fn run_script<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    step_idx: usize,
    step: &Step,
    step_env: IndexMap<String, String>,
) -> Result<BodyResult, String> {
    let state = &*job_run.state;
    let scope = &state.scope;
    let Some(run) = &step.run else {
        return Err(format!("{}:{}: the step has no `run`", state.file, step.at));
    };
    let shell_field = step.shell.as_ref().or(state.shell_defaults.shell.as_ref());
    let shell_name = shell_field
        .map(|field| scope.string(field, "shell"))
        .transpose()
        .map_err(|error| error.0)?;
    let working_dir = step
        .working_directory
        .as_ref()
        .or(state.shell_defaults.working_directory.as_ref())
        .map(|field| scope.string(field, "working-directory"))
        .transpose()
        .map_err(|error| error.0)?;
    let step_timeout = step_timeout(step, state)?;
    let script_body = scope.string(run, "run").map_err(|error| error.0)?;

    let shell = shell::resolve(shell_name.as_deref())
        .map_err(|message| format!("{}:{}: {message}", state.file, step.at))?;

    let temp = temp_dir(job_run.backend);
    let script_path = format!("{temp}/{}{}", uuid::Uuid::new_v4(), shell.extension);
    let command = StepCommand {
        argv: shell.argv(&script_path),
        script: Some(NewFile {
            contents: shell.script(&script_body).into_bytes(),
            path: script_path,
            mode: 0o755,
        }),
        extra_env: IndexMap::new(),
        working_dir,
        step_timeout,
        container: None,
    };
    execute(job_run, Some(step_idx), command, step_env).await
}

/// `timeout-minutes` of a step.
pub fn step_timeout(step: &Step, state: &JobState) -> Result<Option<Duration>, String> {
    Ok(state
        .scope
        .minutes(step.timeout_minutes.as_ref(), "timeout-minutes")
        .map_err(|error| error.0)?
        .map(|minutes| Duration::from_secs_f64(minutes * 60.0)))
}
