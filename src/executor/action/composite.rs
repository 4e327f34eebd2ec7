//! Composite actions: the action's steps run with their own `steps` and `inputs` contexts and
//! `github.action_path` (restored afterwards), with the calling step's env under the built-ins act
//! sets for every step ([`process::composite_env`]), a failing step skips the rest unless a status
//! function says otherwise, outputs are mapped back even after a failure, and
//! `GITHUB_ENV`/`GITHUB_PATH` changes stay with the job. A nested `uses:` goes back through
//! [`super::run`], one level deeper.

use indexmap::IndexMap;
use serde_json::json;

use super::{Call, LoadedAction};
use crate::executor::backend::Backend;
use crate::executor::contexts;
use crate::executor::event::Conclusion;
use crate::executor::expr::{JobStatus, Value};
use crate::executor::job::{JobRun, JobState, conclusion_name};
use crate::executor::model::Step;
use crate::executor::process;
use crate::executor::step::{self, BodyResult};

/// Runs a composite action's steps for the step `call` names.
pub async fn run<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    call: Call,
    steps: &[Step],
    loaded: &LoadedAction,
    step_env: IndexMap<String, String>,
) -> Result<BodyResult, String> {
    let nested_env = process::composite_env(job_run.state, &step_env, loaded.composite_env());
    let state = &mut *job_run.state;
    let saved_steps = state.scope.contexts.get("steps").cloned();
    let saved_inputs = state.scope.contexts.get("inputs").cloned();
    let saved_status = state.scope.status;
    let saved_action_path = set_action_path(state, &loaded.dir);
    state.scope.set("inputs", Value::from(json!(loaded.inputs)));
    let result = run_steps(job_run, call, steps, loaded, &nested_env).await;
    let state = &mut *job_run.state;
    set_action_path(state, &saved_action_path);
    if let Some(saved) = saved_steps {
        state.scope.set("steps", saved);
    }
    if let Some(saved) = saved_inputs {
        state.scope.set("inputs", saved);
    }
    state.scope.status = saved_status;
    result
}

/// Sets `github.action_path` (the action's steps see their own directory there, as in
/// `GITHUB_ACTION_PATH`) and returns the value it replaces.
fn set_action_path(state: &mut JobState, dir: &str) -> String {
    let Some(Value::Object(github)) = state.scope.contexts.get_mut("github") else {
        return String::new();
    };
    match github.insert("action_path".into(), Value::from(dir)) {
        Some(Value::String(previous)) => previous,
        _ => String::new(),
    }
}

async fn run_steps<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    call: Call,
    steps: &[Step],
    loaded: &LoadedAction,
    nested_env: &IndexMap<String, String>,
) -> Result<BodyResult, String> {
    let step_idx = call.step_idx;
    let nested_call = Call {
        depth: call.depth + 1,
        ..call
    };
    let mut steps_context = serde_json::Map::new();
    job_run.state.scope.status = JobStatus::Success;
    let mut failed = false;
    for (nested_idx, nested) in steps.iter().enumerate() {
        let state = &mut *job_run.state;
        if state.cancelled || state.timed_out {
            break;
        }
        state.scope.set(
            "steps",
            Value::from(serde_json::Value::Object(steps_context.clone())),
        );
        let key = nested
            .id
            .clone()
            .unwrap_or_else(|| format!("__{nested_idx}"));
        let (outcome, conclusion, nested_outputs) =
            match step::prepare_step(nested, nested_env, state) {
                Err(message) => {
                    job_run
                        .emitter
                        .log(Some(step_idx), &format!("::error::{message}"))
                        .await;
                    (Conclusion::Failure, Conclusion::Failure, IndexMap::new())
                }
                Ok((_, false, _)) => (Conclusion::Skipped, Conclusion::Skipped, IndexMap::new()),
                Ok((env, true, continue_on_error)) => {
                    let result = step::run_body(job_run, nested_call, nested, env).await;
                    let nested_outputs = result.outputs;
                    let conclusion = if result.outcome == Conclusion::Failure && continue_on_error {
                        Conclusion::Success
                    } else {
                        result.outcome
                    };
                    (result.outcome, conclusion, nested_outputs)
                }
            };
        if conclusion == Conclusion::Failure {
            failed = true;
            job_run.state.scope.status = JobStatus::Failure;
        }
        steps_context.insert(
            key,
            json!({
                "outputs": nested_outputs,
                "outcome": conclusion_name(outcome),
                "conclusion": conclusion_name(conclusion),
            }),
        );
    }
    // Outputs are mapped even when a step failed, as upstream does.
    let state = &mut *job_run.state;
    state.scope.set(
        "steps",
        Value::from(serde_json::Value::Object(steps_context)),
    );
    contexts::set_step_env_context(state, nested_env);
    let mut mapped = IndexMap::new();
    for (name, field) in &loaded.action.outputs {
        let Some(field) = field else { continue };
        match state.scope.string(field, &format!("outputs.{name}")) {
            Ok(value) => {
                mapped.insert(name.clone(), value);
            }
            Err(error) => {
                job_run
                    .emitter
                    .log(Some(step_idx), &format!("::warning::{error}"))
                    .await
            }
        }
    }
    let outcome = if state.cancelled {
        Conclusion::Cancelled
    } else if failed || state.timed_out {
        Conclusion::Failure
    } else {
        Conclusion::Success
    };
    Ok(BodyResult {
        outcome,
        outputs: mapped,
        state: IndexMap::new(),
    })
}
