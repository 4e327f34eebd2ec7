//! Running one step: its `if`, env, shell and script, the output stream through workflow commands and
//! masking, the environment files afterwards, and outcome versus conclusion.

use std::time::{Duration, SystemTime};

use indexmap::IndexMap;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::action;
use super::backend::{Backend, NewFile};
use super::contexts::{self, EVENT_FILE};
use super::event::{Conclusion, JobEvent};
use super::expr::Value;
use super::job::{Emitter, JobState, conclusion_name, job_context};
use super::model::Step;
pub use super::process::{StepCommand, StepContainer, execute};
use super::shell;

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
    step_idx: usize,
    step: &Step,
    state: &mut JobState,
    backend: &B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> (Conclusion, Conclusion) {
    emitter
        .send(JobEvent::StepStarted {
            step_idx,
            at: SystemTime::now(),
        })
        .await;
    let step_key = step.id.clone().unwrap_or_else(|| step_idx.to_string());
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
                Ok(Some(
                    run_body(step_idx, step, step_env, state, backend, emitter, cancel).await,
                ))
            } else {
                Ok(None)
            }
        }
    };
    let (outcome, outputs) = match body {
        Ok(Some(result)) => (result.outcome, result.outputs),
        Ok(None) => (Conclusion::Skipped, IndexMap::new()),
        Err(message) => {
            emitter
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
    state.steps_context.insert(
        step_key,
        json!({
            "outputs": outputs,
            "outcome": conclusion_name(outcome),
            "conclusion": conclusion_name(conclusion),
        }),
    );
    emitter
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
    contexts::set_env_context(state, &step_env);
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

async fn run_body<B: Backend>(
    step_idx: usize,
    step: &Step,
    step_env: IndexMap<String, String>,
    state: &mut JobState,
    backend: &B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> BodyResult {
    let body = if step.run.is_some() {
        run_script(step_idx, step, step_env, state, backend, emitter, cancel).await
    } else {
        let call = action::Call {
            step_idx,
            backend,
            cancel,
            depth: 0,
        };
        action::run(call, step, step_env, state, emitter).await
    };
    match body {
        Ok(result) => result,
        Err(message) => {
            emitter
                .log(Some(step_idx), &format!("::error::{message}"))
                .await;
            BodyResult::failed()
        }
    }
}

/// A `run:` step: evaluates its fields, writes the script and runs it with its shell.
pub async fn run_script<B: Backend>(
    step_idx: usize,
    step: &Step,
    step_env: IndexMap<String, String>,
    state: &mut JobState,
    backend: &B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Result<BodyResult, String> {
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

    let temp = temp_dir(backend);
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
    execute(
        Some(step_idx),
        command,
        step_env,
        state,
        backend,
        emitter,
        cancel,
    )
    .await
}

/// `timeout-minutes` of a step.
pub fn step_timeout(step: &Step, state: &JobState) -> Result<Option<Duration>, String> {
    Ok(state
        .scope
        .minutes(step.timeout_minutes.as_ref(), "timeout-minutes")
        .map_err(|error| error.0)?
        .map(|minutes| Duration::from_secs_f64(minutes * 60.0)))
}
