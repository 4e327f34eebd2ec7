//! Building the contexts a job's expressions see (`github`/`gitea`, `env`, `vars`, `secrets`,
//! `inputs`, `matrix`, `needs`, `strategy`, `runner`, `job`, `steps`) and the variables every step
//! process gets (`CI`, `GITHUB_*`, `RUNNER_*`, the runtime env).

use indexmap::IndexMap;
use serde_json::{Value as Json, json};

use super::backend::{EnvironmentPaths, runner_arch};
use super::event::Conclusion;
use super::expr::{JobStatus, Value};
use super::job::{JobSpec, JobState, conclusion_name};
use super::model::{Dimension, Job, Matrix, Workflow, matrix};
use super::scope::{FieldError, Scope};

/// Where the event payload is written, relative to `RUNNER_TEMP`.
pub const EVENT_FILE: &str = "_github_workflow/event.json";

fn path_text(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The `github` context: the caller's keys, with local defaults for the standard ones it lacks.
pub fn github_context(
    spec: &JobSpec,
    job: &Job,
    workflow_name: &str,
    paths: &EnvironmentPaths,
) -> Json {
    let mut github = spec.github.clone();
    let defaults = [
        ("event", json!({})),
        ("event_name", json!("push")),
        ("run_id", json!("1")),
        ("run_number", json!("1")),
        ("run_attempt", json!("1")),
        ("actor", json!("act-runner")),
        ("repository", json!("")),
        ("repository_owner", json!("")),
        ("sha", json!("")),
        ("ref", json!("")),
        ("ref_name", json!("")),
        ("ref_type", json!("")),
        ("head_ref", json!("")),
        ("base_ref", json!("")),
        ("server_url", json!("")),
        ("api_url", json!("")),
        ("graphql_url", json!("")),
        ("retention_days", json!("")),
        ("token", json!("")),
        ("action", json!("")),
        ("action_path", json!("")),
        ("action_ref", json!("")),
        ("action_repository", json!("")),
        ("runner_perflog", json!("/dev/null")),
        ("runner_tracking_id", json!("")),
        ("workflow", json!(workflow_name)),
    ];
    for (key, value) in defaults {
        github.entry(key.to_string()).or_insert(value);
    }
    github.insert("workspace".into(), json!(path_text(&paths.workspace)));
    github.insert("job".into(), json!(job.id));
    github.insert(
        "event_path".into(),
        json!(path_text(&paths.temp.join(EVENT_FILE))),
    );
    Json::Object(github)
}

/// Sets every context known before the job starts; `env`, `job` and `steps` change later.
pub fn fill_static(
    spec: &JobSpec,
    workflow: &Workflow,
    job: &Job,
    paths: &EnvironmentPaths,
    scope: &mut Scope,
) {
    fill_paths(spec, workflow, job, paths, scope);
    scope.set("vars", Value::from(json!(spec.vars)));
    scope.set("secrets", Value::from(json!(spec.secrets)));
    scope.set(
        "inputs",
        Value::from(Json::Object(job_inputs(spec, workflow))),
    );
    let needs: serde_json::Map<String, Json> = spec
        .needs
        .iter()
        .map(|(id, need)| {
            (
                id.clone(),
                json!({ "result": conclusion_name(need.result), "outputs": need.outputs }),
            )
        })
        .collect();
    scope.set("needs", Value::from(Json::Object(needs)));
    scope.set("env", Value::from(json!({})));
    scope.set("steps", Value::from(json!({})));
    scope.set(
        "job",
        Value::from(json!({ "status": "success", "services": {}, "container": {} })),
    );
    scope.set("matrix", Value::from(json!({})));
    scope.set("strategy", Value::from(json!({})));
}

/// The `inputs` context: the event's inputs as the workflow declares them, then the spec's own
/// (already typed, they win).
fn job_inputs(spec: &JobSpec, workflow: &Workflow) -> serde_json::Map<String, Json> {
    let event_name = spec
        .github
        .get("event_name")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let event = spec.github.get("event").cloned().unwrap_or(Json::Null);
    let mut inputs = super::inputs::resolve(workflow, event_name, &event);
    inputs.extend(spec.inputs.clone());
    inputs
}

/// Sets the contexts that name paths of the job environment (`github`, `gitea`, `runner`); called
/// again once the backend is prepared, when its paths are final.
pub fn fill_paths(
    spec: &JobSpec,
    workflow: &Workflow,
    job: &Job,
    paths: &EnvironmentPaths,
    scope: &mut Scope,
) {
    let workflow_name = workflow
        .name
        .clone()
        .unwrap_or_else(|| spec.workflow_file.clone());
    let github = github_context(spec, job, &workflow_name, paths);
    scope.set("github", Value::from(github.clone()));
    scope.set("gitea", Value::from(github));
    scope.set(
        "runner",
        Value::from(json!({
            "name": spec.runner_name,
            "os": "Linux",
            "arch": runner_arch(),
            "temp": path_text(&paths.temp),
            "tool_cache": path_text(&paths.tool_cache),
            "workspace": path_text(paths.workspace.parent().unwrap_or(&paths.workspace)),
            "environment": "self-hosted",
            "debug": if flag(spec, "ACTIONS_STEP_DEBUG") { "1" } else { "" },
        })),
    );
}

/// Evaluates and expands `strategy.matrix` with the contexts in `scope` (needs, vars, ...).
pub fn expand_matrix(job: &Job, scope: &Scope) -> Result<Vec<matrix::Combination>, FieldError> {
    let Some(strategy_matrix) = job
        .strategy
        .as_ref()
        .and_then(|strategy| strategy.matrix.as_ref())
    else {
        return Ok(vec![matrix::Combination::new()]);
    };
    let as_json = |value: Value| value.to_json();
    let (dimensions, include, exclude, at) = match strategy_matrix {
        Matrix::Expression(field) => {
            let value = as_json(scope.value(field, "strategy.matrix")?);
            let Json::Object(mut object) = value else {
                return Err(FieldError(format!(
                    "{}:{}: strategy.matrix: the expression must give an object",
                    scope_file(scope),
                    field.at
                )));
            };
            let list = |value: Option<Json>| -> Vec<matrix::Combination> {
                match value {
                    Some(Json::Array(items)) => items
                        .into_iter()
                        .filter_map(|item| serde_json::from_value(item).ok())
                        .collect(),
                    _ => Vec::new(),
                }
            };
            let include = list(object.remove("include"));
            let exclude = list(object.remove("exclude"));
            let dimensions = object
                .into_iter()
                .map(|(key, value)| match value {
                    Json::Array(values) => (key, values),
                    other => (key, vec![other]),
                })
                .collect::<IndexMap<_, _>>();
            (dimensions, include, exclude, field.at)
        }
        Matrix::Explicit(explicit) => {
            let mut dimensions = IndexMap::new();
            for (key, dimension) in &explicit.dimensions {
                let values = match dimension {
                    Dimension::Values(values) => values.clone(),
                    Dimension::Expression(field) => {
                        match as_json(scope.value(field, "strategy.matrix")?) {
                            Json::Array(values) => values,
                            other => vec![other],
                        }
                    }
                };
                dimensions.insert(key.clone(), values);
            }
            (
                dimensions,
                explicit.include.clone(),
                explicit.exclude.clone(),
                explicit.at,
            )
        }
    };
    let combinations = matrix::expand(&dimensions, &include, &exclude).map_err(|error| {
        let message = match error {
            matrix::MatrixError::TooMany(_) => format!("Strategy for job '{}' {error}", job.id),
            matrix::MatrixError::UnknownExcludeKey(_) => error.to_string(),
        };
        FieldError(format!("{}:{at}: {message}", scope_file(scope)))
    })?;
    if combinations.is_empty() {
        return Err(FieldError(format!(
            "{}:{at}: strategy.matrix: the matrix has no combinations",
            scope_file(scope)
        )));
    }
    Ok(combinations)
}

fn scope_file(scope: &Scope) -> &str {
    scope.file()
}

/// Picks the matrix combination of this job and sets the `matrix` and `strategy` contexts.
pub fn matrix(
    spec: &JobSpec,
    job: &Job,
    scope: &mut Scope,
) -> Result<IndexMap<String, Json>, FieldError> {
    let (combination, job_index, job_total) = match &spec.matrix {
        Some(combination) => {
            let (job_index, job_total) = spec.matrix_position.unwrap_or((0, 1));
            (combination.clone(), job_index, job_total)
        }
        None => {
            let combinations = expand_matrix(job, scope)?;
            if combinations.len() != 1 {
                return Err(FieldError(format!(
                    "{}: job `{}`: the matrix has {} combinations; this runner runs exactly one per job",
                    spec.workflow_file,
                    job.id,
                    combinations.len()
                )));
            }
            (combinations.into_iter().next().unwrap_or_default(), 0, 1)
        }
    };
    let (fail_fast, max_parallel) = strategy_limits(job, scope)?;
    let max_parallel = max_parallel.unwrap_or(job_total);
    scope.set("matrix", Value::from(json!(combination)));
    scope.set(
        "strategy",
        Value::from(json!({
            "fail-fast": fail_fast,
            "max-parallel": max_parallel,
            "job-index": job_index,
            "job-total": job_total,
        })),
    );
    Ok(combination)
}

/// `strategy.fail-fast` (default true) and `strategy.max-parallel` (`None` when absent), each a
/// literal or an expression.
pub fn strategy_limits(job: &Job, scope: &Scope) -> Result<(bool, Option<usize>), FieldError> {
    let strategy = job.strategy.as_ref();
    let fail_fast = match strategy.and_then(|strategy| strategy.fail_fast.as_ref()) {
        None => true,
        Some(field) => scope.boolean(Some(field), "strategy.fail-fast")?,
    };
    let max_parallel = match strategy.and_then(|strategy| strategy.max_parallel.as_ref()) {
        None => None,
        Some(field) => {
            let number = match scope.value(field, "strategy.max-parallel")? {
                Value::Number(number) => Some(number),
                Value::String(text) => text.trim().parse::<f64>().ok(),
                _ => None,
            };
            match number {
                Some(number) if number >= 1.0 && number.fract() == 0.0 => Some(number as usize),
                _ => {
                    return Err(FieldError(format!(
                        "{}:{}: strategy.max-parallel: expected a whole number of at least 1, found `{}`",
                        scope_file(scope),
                        field.at,
                        field.value
                    )));
                }
            }
        }
    };
    Ok((fail_fast, max_parallel))
}

/// Workflow env, then job env (each evaluated, seeing what came before), then the runner's env,
/// which overrides both (as upstream's `Config.Env`). Sets the `env` context.
pub fn job_env(
    spec: &JobSpec,
    workflow: &Workflow,
    job: &Job,
    scope: &mut Scope,
) -> Result<IndexMap<String, String>, FieldError> {
    let mut env = IndexMap::new();
    for block in [&workflow.env, &job.env] {
        let mut evaluated = Vec::with_capacity(block.len());
        for (key, field) in block {
            evaluated.push((key.clone(), scope.string(field, &format!("env.{key}"))?));
        }
        env.extend(evaluated);
        scope.set("env", Value::from(json!(env)));
    }
    env.extend(spec.env.clone());
    scope.set("env", Value::from(json!(env)));
    Ok(env)
}

/// `name` is on (`true`, any case) in the secrets, vars or runner env.
pub fn flag(spec: &JobSpec, name: &str) -> bool {
    [
        spec.secrets.get(name),
        spec.vars.get(name),
        spec.env.get(name),
    ]
    .into_iter()
    .flatten()
    .any(|value| value.eq_ignore_ascii_case("true"))
}

fn scalar(value: Option<&Json>) -> String {
    match value {
        Some(Json::String(text)) => text.clone(),
        Some(Json::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The variables every step gets, applied over the workflow and job env but under a step's own
/// `env:`, as act merges them. `image_os` is `ImageOS` (see `image_os`). `RUNNER_OS` and its
/// kind are not here: see [`crate::executor::backend::runner_variables`].
pub fn builtin_env(
    spec: &JobSpec,
    state: &JobState,
    paths: &EnvironmentPaths,
    image_os: Option<String>,
) -> IndexMap<String, String> {
    let mut env = IndexMap::new();
    for (key, value) in [
        ("CI", "true"),
        ("GITHUB_ACTIONS", "true"),
        ("GITEA_ACTIONS", "true"),
        ("GITEA_ACTIONS_RUNNER_VERSION", crate::VERSION),
        ("RUNNER_ENVIRONMENT", "self-hosted"),
    ] {
        env.insert(key.to_string(), value.to_string());
    }
    if spec.act_env {
        env.insert("ACT".into(), "true".into());
    }
    let github = state.scope.context_json("github");
    for key in [
        "workflow",
        "run_id",
        "run_number",
        "run_attempt",
        "actor",
        "repository",
        "repository_owner",
        "event_name",
        "event_path",
        "workspace",
        "sha",
        "ref",
        "ref_name",
        "ref_type",
        "base_ref",
        "head_ref",
        "job",
        "retention_days",
        "server_url",
        "api_url",
        "graphql_url",
        "action",
    ] {
        env.insert(
            format!("GITHUB_{}", key.to_ascii_uppercase()),
            scalar(github.get(key)),
        );
    }
    env.insert("RUNNER_NAME".into(), spec.runner_name.clone());
    env.insert(
        "RUNNER_WORKSPACE".into(),
        path_text(paths.workspace.parent().unwrap_or(&paths.workspace)),
    );
    for (name, key) in [
        ("RUNNER_PERFLOG", "runner_perflog"),
        ("RUNNER_TRACKING_ID", "runner_tracking_id"),
    ] {
        env.insert(name.into(), scalar(github.get(key)));
    }
    if state.step_debug {
        env.insert("RUNNER_DEBUG".into(), "1".into());
    }
    if let Some(image_os) = image_os {
        env.insert("ImageOS".into(), image_os);
    }
    env.extend(spec.extra_env.clone());
    env
}

/// Whether act sets the built-in `name` again for every step, so that inside a composite action
/// the calling step's `env:` does not reach it (act's `withGithubEnv`, and `ACT`); the others
/// (`ImageOS`, `GITEA_ACTIONS`, `RUNNER_NAME`, ...) are set once for the job and keep the
/// caller's value there.
pub fn set_for_every_step(name: &str) -> bool {
    name.starts_with("GITHUB_")
        || matches!(name, "CI" | "ACT" | "RUNNER_PERFLOG" | "RUNNER_TRACKING_ID")
}

/// Sets the `env` context to the job env plus a step's env: what a step's `env:` values and the
/// job's fields see (act's run-context evaluator: no built-ins).
pub fn set_env_context(state: &mut JobState, step_env: &IndexMap<String, String>) {
    let mut env = state.env.job.clone();
    env.extend(step_env.clone());
    state.scope.set("env", Value::from(json!(env)));
}

/// Sets the `env` context of a step's other fields (`if`, `run`, `with`, ...) once its `env:` is
/// evaluated: the step's variables, built-ins included (see [`super::process::step_variables`]).
pub fn set_step_env_context(state: &mut JobState, step_env: &IndexMap<String, String>) {
    let env = super::process::step_variables(state, step_env);
    state.scope.set("env", Value::from(json!(env)));
}

/// The status the job-level status functions see: the needed jobs' results.
pub(super) fn needs_status(spec: &JobSpec) -> (JobStatus, bool) {
    let mut status = JobStatus::Success;
    let mut all_succeeded = true;
    for need in spec.needs.values() {
        match need.result {
            Conclusion::Success => {}
            Conclusion::Failure => {
                status = JobStatus::Failure;
                all_succeeded = false;
            }
            Conclusion::Cancelled => {
                if status == JobStatus::Success {
                    status = JobStatus::Cancelled;
                }
                all_succeeded = false;
            }
            Conclusion::Skipped => all_succeeded = false,
        }
    }
    (status, all_succeeded)
}
