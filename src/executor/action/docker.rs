//! Docker actions: `uses: docker://image` steps and actions with `runs.using: docker`
//! (`image: docker://…` or a Dockerfile built as `act-<name>-dockeraction:latest`). Arguments
//! come from `with.args` (split with shell-quote rules) or the action's `args` interpolated with
//! `inputs`; the entrypoint from `with.entrypoint` or the action's `entrypoint`; the environment
//! adds `INPUT_*`, `GITHUB_ACTION_*` and `runs.env`. The step container itself is the backend's
//! business (`Backend::run_container`); the host backend refuses it.

use indexmap::IndexMap;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Call, LoadedAction, input_variable, post};
use crate::executor::backend::{Backend, BuildContext, BuildRequest};
use crate::executor::expr::Value;
use crate::executor::job::{JobRun, JobState};
use crate::executor::model::Step;
use crate::executor::model::action::DockerRuns;
use crate::executor::step::{self, BodyResult, StepCommand, StepContainer};

/// A `uses: docker://image` step.
pub async fn run_image_step<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    call: Call,
    step: &Step,
    image: &str,
    step_env: IndexMap<String, String>,
) -> Result<BodyResult, String> {
    let state = &*job_run.state;
    let inputs = super::with_values(step, state)?;
    let container = StepContainer {
        image: image.to_string(),
        entrypoint: with_entrypoint(&inputs),
        args: with_args(&inputs, &state.file, step)?.unwrap_or_default(),
    };
    let extra_env = inputs
        .iter()
        .map(|(name, value)| (input_variable(name), value.clone()))
        .collect();
    let command = StepCommand::container(container, extra_env, step::step_timeout(step, state)?);
    step::execute(job_run, Some(call.step_idx), command, step_env).await
}

/// The main stage of a `runs.using: docker` action; registers its `post-entrypoint`.
pub async fn run_action<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    call: Call,
    step: &Step,
    loaded: &LoadedAction,
    runs: &DockerRuns,
    step_env: IndexMap<String, String>,
) -> Result<BodyResult, String> {
    let image = action_image(job_run, call, loaded, runs).await?;
    let state = &mut *job_run.state;
    let (args, runs_env) = with_inputs(state, loaded, |state| {
        let args = match with_args(&loaded.inputs, &state.file, step)? {
            Some(args) => args,
            None => runs
                .args
                .iter()
                .map(|arg| state.scope.string(arg, "runs.args").map_err(|e| e.0))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let mut env = IndexMap::new();
        for (name, field) in &runs.env {
            let value = state
                .scope
                .string(field, &format!("runs.env.{name}"))
                .map_err(|error| error.0)?;
            env.insert(name.clone(), value);
        }
        Ok((args, env))
    })?;
    let entrypoint = match with_entrypoint(&loaded.inputs) {
        Some(entrypoint) => Some(entrypoint),
        None => split_entrypoint(runs.entrypoint.as_ref().map(|e| e.value.as_str()))?,
    };
    let mut extra_env = runs_env;
    extra_env.extend(loaded.env());
    let container = StepContainer {
        image: image.clone(),
        entrypoint,
        args: args.clone(),
    };
    let command = StepCommand::container(container, extra_env, step::step_timeout(step, state)?);
    let post_stage = || {
        let Some(post_entrypoint) = &runs.post_entrypoint else {
            return Ok(None);
        };
        Ok(Some(post::PostStage {
            condition: runs.post_if.clone(),
            argv: Vec::new(),
            container: Some(StepContainer {
                image,
                entrypoint: split_entrypoint(Some(&post_entrypoint.value))?,
                args,
            }),
        }))
    };
    post::run_main_stage(job_run, call, step, command, step_env, post_stage).await
}

/// The `pre-entrypoint` stage of a docker action.
pub async fn run_pre<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    call: Call,
    loaded: &LoadedAction,
    runs: &DockerRuns,
    step_env: IndexMap<String, String>,
) -> Result<BodyResult, String> {
    let image = action_image(job_run, call, loaded, runs).await?;
    let container = StepContainer {
        image,
        entrypoint: split_entrypoint(runs.pre_entrypoint.as_ref().map(|e| e.value.as_str()))?,
        args: Vec::new(),
    };
    let command = StepCommand::container(container, loaded.env(), None);
    step::execute(job_run, None, command, step_env).await
}

/// Evaluates with the action's `inputs` as the `inputs` context, restoring the caller's after.
fn with_inputs<T>(
    state: &mut JobState,
    loaded: &LoadedAction,
    evaluate: impl FnOnce(&mut JobState) -> Result<T, String>,
) -> Result<T, String> {
    let saved = state.scope.contexts.get("inputs").cloned();
    state.scope.set("inputs", Value::from(json!(loaded.inputs)));
    let result = evaluate(state);
    if let Some(saved) = saved {
        state.scope.set("inputs", saved);
    }
    result
}

/// `with.args`, split with shell-quote rules; `None` when not given.
fn with_args(
    inputs: &IndexMap<String, String>,
    file: &str,
    step: &Step,
) -> Result<Option<Vec<String>>, String> {
    match inputs.get("args").filter(|args| !args.trim().is_empty()) {
        None => Ok(None),
        Some(args) => shell_words::split(args).map(Some).map_err(|error| {
            format!(
                "{file}:{}: `with.args`: {error} (quote with ' or \")",
                step.at
            )
        }),
    }
}

/// `with.entrypoint`: one program, as upstream takes it.
fn with_entrypoint(inputs: &IndexMap<String, String>) -> Option<Vec<String>> {
    inputs
        .get("entrypoint")
        .filter(|entrypoint| !entrypoint.trim().is_empty())
        .map(|entrypoint| vec![entrypoint.trim().to_string()])
}

fn split_entrypoint(entrypoint: Option<&str>) -> Result<Option<Vec<String>>, String> {
    match entrypoint.filter(|entrypoint| !entrypoint.trim().is_empty()) {
        None => Ok(None),
        Some(text) => shell_words::split(text)
            .map(Some)
            .map_err(|error| format!("entrypoint `{text}`: {error}")),
    }
}

/// The image of a docker action: `docker://…` as named, else the Dockerfile built (once) as
/// `act-<name>-dockeraction:latest`.
async fn action_image<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    call: Call,
    loaded: &LoadedAction,
    runs: &DockerRuns,
) -> Result<String, String> {
    if let Some(image) = runs.image.strip_prefix("docker://") {
        return Ok(image.to_string());
    }
    let name: String = loaded
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let tag = format!("act-{name}-dockeraction:latest");
    let request = BuildRequest {
        context: match &loaded.context {
            BuildContext::HostDir(dir) => BuildContext::HostDir(dir.clone()),
            BuildContext::EnvironmentDir(dir) => BuildContext::EnvironmentDir(dir.clone()),
        },
        dockerfile: runs.image.trim_start_matches("./").to_string(),
        tag: tag.clone(),
        force: job_run.state.actions.settings.force_rebuild,
    };
    let (log_tx, mut log_rx) = mpsc::channel::<String>(64);
    let building = job_run.backend.build_image(request, log_tx);
    tokio::pin!(building);
    let built = loop {
        tokio::select! {
            result = &mut building => break result,
            Some(line) = log_rx.recv() => job_run.emitter.log(Some(call.step_idx), &line).await,
            () = job_run.cancel.cancelled() => return Err(String::from("cancelled while building the action's image")),
        }
    };
    while let Ok(line) = log_rx.try_recv() {
        job_run.emitter.log(Some(call.step_idx), &line).await;
    }
    built.map_err(|error| format!("{}: building {tag}: {error}", loaded.file))?;
    Ok(tag)
}
