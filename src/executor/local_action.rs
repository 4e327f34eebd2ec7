//! Local actions (`uses: ./path`): `action.yml` is read from the workspace through the backend,
//! inputs are evaluated (with their defaults), and the action runs: a `node*` action as
//! `node <main>` with `INPUT_*` variables, a composite action as its steps with their own `steps` and
//! `inputs` contexts (outputs mapped back, env and path changes kept). A composite may use node
//! actions but not another composite (no recursion, so a job's future stays `Send`). Remote and
//! docker actions are refused with a message naming them: this runner has no network access to fetch
//! them and never pretends to have run them.

use indexmap::IndexMap;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::backend::Backend;
use super::contexts;
use super::event::Conclusion;
use super::expr::{JobStatus, Value};
use super::job::{Emitter, JobState, conclusion_name};
use super::model::Step;
use super::model::action::{Action, Runs};
use super::step::{self, BodyResult, StepCommand};

/// `INPUT_<NAME>`: upper-cased, spaces become `_` (as actions/toolkit reads them).
fn input_variable(name: &str) -> String {
    format!(
        "INPUT_{}",
        name.trim().replace(' ', "_").to_ascii_uppercase()
    )
}

/// A local action, loaded and with its inputs evaluated.
struct Loaded {
    file: String,
    dir: String,
    action: Action,
    inputs: IndexMap<String, String>,
}

/// Runs a `uses:` step of a job.
pub async fn run<B: Backend>(
    step_idx: usize,
    step: &Step,
    step_env: IndexMap<String, String>,
    state: &mut JobState,
    backend: &B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Result<BodyResult, String> {
    let loaded = load(step_idx, step, state, backend, emitter).await?;
    match &loaded.action.runs {
        Runs::Composite { steps } => {
            let mut nested_env = step_env;
            nested_env.insert("GITHUB_ACTION_PATH".into(), loaded.dir.clone());
            let saved_steps = state.scope.contexts.get("steps").cloned();
            let saved_inputs = state.scope.contexts.get("inputs").cloned();
            let saved_status = state.scope.status;
            state.scope.set("inputs", Value::from(json!(loaded.inputs)));
            let result = run_composite(
                step_idx,
                steps,
                &loaded.action.outputs,
                &nested_env,
                state,
                backend,
                emitter,
                cancel,
            )
            .await;
            if let Some(saved) = saved_steps {
                state.scope.set("steps", saved);
            }
            if let Some(saved) = saved_inputs {
                state.scope.set("inputs", saved);
            }
            state.scope.status = saved_status;
            result
        }
        _ => {
            run_leaf(
                step_idx, step, &loaded, step_env, state, backend, emitter, cancel,
            )
            .await
        }
    }
}

/// Reads `action.yml` of a `uses: ./path` step and evaluates its inputs; refuses remote actions.
async fn load<B: Backend>(
    step_idx: usize,
    step: &Step,
    state: &mut JobState,
    backend: &B,
    emitter: &mut Emitter,
) -> Result<Loaded, String> {
    let Some(uses_field) = &step.uses else {
        return Err(format!(
            "{}:{}: the step has neither `run` nor `uses`",
            state.file, step.at
        ));
    };
    let uses = state
        .scope
        .string(uses_field, "uses")
        .map_err(|error| error.0)?;
    let uses = uses.trim();
    let Some(relative) = uses.strip_prefix("./") else {
        let kind = if uses.starts_with("docker://") {
            "docker"
        } else {
            "remote"
        };
        return Err(format!(
            "{}:{}: `uses: {uses}`: {kind} actions are not supported by this runner (no network access to fetch them); use `run:` steps or a local action (`uses: ./path`)",
            state.file, uses_field.at
        ));
    };
    let workspace = backend.paths().workspace.to_string_lossy().into_owned();
    let dir = format!("{workspace}/{}", relative.trim_end_matches('/'));
    let (file, source) = read_action_file(backend, &dir).await?;
    let action = Action::parse(&source).map_err(|error| format!("{file}:{error}"))?;

    // Inputs: `with:` values, then defaults for the rest.
    let mut inputs = IndexMap::new();
    for (name, field) in &step.with {
        let value = state
            .scope
            .string(field, &format!("with.{name}"))
            .map_err(|error| error.0)?;
        inputs.insert(name.clone(), value);
    }
    for (name, input) in &action.inputs {
        if inputs.contains_key(name) {
            continue;
        }
        match &input.default {
            Some(default) => {
                let value = state
                    .scope
                    .string(default, &format!("inputs.{name}.default"))
                    .map_err(|error| error.0)?;
                inputs.insert(name.clone(), value);
            }
            None if input.required => {
                emitter
                    .log(
                        Some(step_idx),
                        &format!("::warning::Input required and not supplied: {name}"),
                    )
                    .await;
            }
            None => {}
        }
    }
    Ok(Loaded {
        file,
        dir,
        action,
        inputs,
    })
}

/// Runs an action that is not composite: a node script (docker actions are refused).
#[allow(clippy::too_many_arguments)] // The step runner's state, passed through to `execute`.
async fn run_leaf<B: Backend>(
    step_idx: usize,
    step: &Step,
    loaded: &Loaded,
    step_env: IndexMap<String, String>,
    state: &mut JobState,
    backend: &B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Result<BodyResult, String> {
    match &loaded.action.runs {
        Runs::Docker { image } => Err(format!(
            "{}: docker actions (`image: {image}`) are not supported by this runner",
            loaded.file
        )),
        Runs::Composite { .. } => Err(format!(
            "{}: a composite action inside a composite action is not supported",
            loaded.file
        )),
        Runs::Node { main, post, .. } => {
            if post.is_some() {
                emitter
                    .log(
                        Some(step_idx),
                        "::warning::this runner does not run the `post` script of node actions",
                    )
                    .await;
            }
            let mut extra_env: IndexMap<String, String> = loaded
                .inputs
                .iter()
                .map(|(name, value)| (input_variable(name), value.clone()))
                .collect();
            extra_env.insert("GITHUB_ACTION_PATH".into(), loaded.dir.clone());
            let command = StepCommand {
                argv: vec!["node".into(), format!("{}/{main}", loaded.dir)],
                extra_env,
                working_dir: None,
                step_timeout: step::step_timeout(step, state)?,
            };
            step::execute(step_idx, command, step_env, state, backend, emitter, cancel).await
        }
    }
}

async fn read_action_file<B: Backend>(
    backend: &B,
    action_dir: &str,
) -> Result<(String, String), String> {
    for name in ["action.yml", "action.yaml"] {
        let path = format!("{action_dir}/{name}");
        match backend.read_file(&path).await {
            Ok(Some(bytes)) => return Ok((path, String::from_utf8_lossy(&bytes).into_owned())),
            Ok(None) => {}
            Err(error) => return Err(format!("cannot read {path}: {error}")),
        }
    }
    Err(format!("no action.yml or action.yaml in {action_dir}"))
}

#[allow(clippy::too_many_arguments)] // As `run`.
async fn run_composite<B: Backend>(
    step_idx: usize,
    steps: &[Step],
    outputs: &IndexMap<String, Option<super::model::Located<String>>>,
    nested_env: &IndexMap<String, String>,
    state: &mut JobState,
    backend: &B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Result<BodyResult, String> {
    let mut steps_context = serde_json::Map::new();
    state.scope.status = JobStatus::Success;
    let mut failed = false;
    for (nested_idx, nested) in steps.iter().enumerate() {
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
                    emitter
                        .log(Some(step_idx), &format!("::error::{message}"))
                        .await;
                    (Conclusion::Failure, Conclusion::Failure, IndexMap::new())
                }
                Ok((_, false, _)) => (Conclusion::Skipped, Conclusion::Skipped, IndexMap::new()),
                Ok((env, true, continue_on_error)) => {
                    let body = if nested.run.is_some() {
                        step::run_script(step_idx, nested, env, state, backend, emitter, cancel)
                            .await
                    } else {
                        match load(step_idx, nested, state, backend, emitter).await {
                            Ok(loaded) => {
                                run_leaf(
                                    step_idx, nested, &loaded, env, state, backend, emitter, cancel,
                                )
                                .await
                            }
                            Err(message) => Err(message),
                        }
                    };
                    let result = match body {
                        Ok(result) => result,
                        Err(message) => {
                            emitter
                                .log(Some(step_idx), &format!("::error::{message}"))
                                .await;
                            BodyResult {
                                outcome: Conclusion::Failure,
                                outputs: IndexMap::new(),
                            }
                        }
                    };
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
            state.scope.status = JobStatus::Failure;
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
    state.scope.set(
        "steps",
        Value::from(serde_json::Value::Object(steps_context)),
    );
    contexts::set_env_context(state, nested_env);
    let mut mapped = IndexMap::new();
    for (name, field) in outputs {
        let Some(field) = field else { continue };
        match state.scope.string(field, &format!("outputs.{name}")) {
            Ok(value) => {
                mapped.insert(name.clone(), value);
            }
            Err(error) => {
                emitter
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
    })
}
