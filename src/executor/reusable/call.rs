//! What a caller passes a called workflow and gets back: its job's `if`, `with:` typed as
//! `on.workflow_call.inputs` declares, `secrets:` (a mapping or `inherit`), and the outputs of
//! `on.workflow_call.outputs`. The same at every level of nesting: a called workflow's job that
//! calls another is evaluated here with its own workflow's contexts.

use indexmap::IndexMap;
use serde_json::{Map, Value as Json, json};

use super::super::backend::EnvironmentPaths;
use super::super::contexts;
use super::super::emitter::Emitter;
use super::super::expr::Value;
use super::super::job::job_runs;
use super::super::model::{CallSecrets, Job, Workflow};
use super::super::scope::Scope;
use super::super::spec::{JobSpec, NeedResult, conclusion_name};
use super::load::CalledWorkflow;

/// The token secrets a called workflow always receives, as on GitHub.
const TOKEN_SECRETS: [&str; 2] = ["GITHUB_TOKEN", "GITEA_TOKEN"];

/// A loaded workflow bound to what its caller passes it.
pub struct BoundCall<'l> {
    pub loaded: &'l CalledWorkflow,
    pub inputs: Map<String, Json>,
    pub secrets: IndexMap<String, String>,
}

/// Evaluates the calling job (its `spec` being one matrix leg) for the call of `loaded`: `None`
/// when its `if` skips it. `where_` is the calling job's position, for messages.
pub fn evaluate<'l>(
    spec: &JobSpec,
    workflow: &Workflow,
    job: &Job,
    loaded: &'l CalledWorkflow,
    paths: &EnvironmentPaths,
    where_: &str,
) -> Result<Option<BoundCall<'l>>, String> {
    let mut scope = Scope::new(&spec.workflow_file);
    contexts::fill_static(spec, workflow, job, paths, &mut scope);
    contexts::matrix(spec, job, &mut scope).map_err(|error| error.0)?;
    if !job_runs(spec, job, &mut scope).map_err(|error| error.0)? {
        return Ok(None);
    }
    Ok(Some(BoundCall {
        loaded,
        inputs: inputs(&scope, job, &loaded.workflow, where_)?,
        secrets: secrets(spec, &scope, job, &loaded.workflow, where_)?,
    }))
}

/// The caller's `with:`, evaluated and typed as `on.workflow_call.inputs` declares, with the
/// declared defaults for the rest.
fn inputs(
    scope: &Scope,
    job: &Job,
    called: &Workflow,
    where_: &str,
) -> Result<Map<String, Json>, String> {
    let mut given = Map::new();
    for (name, field) in &job.with {
        let value = scope
            .value(field, &format!("with.{name}"))
            .map_err(|error| error.0)?;
        given.insert(name.clone(), value.to_json());
    }
    let Some(declared) = called.trigger_inputs.get("workflow_call") else {
        return Ok(given);
    };
    if let Some(unknown) = given.keys().find(|name| !declared.contains_key(*name)) {
        let names: Vec<&str> = declared.keys().map(String::as_str).collect();
        return Err(format!(
            "{where_}: `with.{unknown}`: the called workflow declares no such input (it declares: {})",
            names.join(", ")
        ));
    }
    Ok(declared
        .iter()
        .map(|(name, declaration)| {
            let value = given
                .get(name)
                .filter(|value| !value.is_null())
                .or(declaration.default.as_ref());
            (
                name.clone(),
                super::super::inputs::typed(declaration, value),
            )
        })
        .collect())
}

/// What the called workflow's `secrets` context holds: every secret of the caller with
/// `inherit`, else the caller's mapping evaluated; the token secrets in any case.
fn secrets(
    spec: &JobSpec,
    scope: &Scope,
    job: &Job,
    called: &Workflow,
    where_: &str,
) -> Result<IndexMap<String, String>, String> {
    let mut secrets: IndexMap<String, String> = TOKEN_SECRETS
        .iter()
        .filter_map(|name| {
            spec.secrets
                .get(*name)
                .map(|value| (name.to_string(), value.clone()))
        })
        .collect();
    match &job.secrets {
        Some(CallSecrets::Inherit) => secrets.extend(spec.secrets.clone()),
        Some(CallSecrets::Map(mapping)) => {
            for (name, field) in mapping {
                let value = scope
                    .string(field, &format!("secrets.{name}"))
                    .map_err(|error| error.0)?;
                secrets.insert(name.to_ascii_uppercase(), value);
            }
        }
        None => {}
    }
    if !matches!(job.secrets, Some(CallSecrets::Inherit))
        && let Some(call) = &called.workflow_call
        && let Some((missing, _)) = call.secrets.iter().find(|(name, required)| {
            **required && !secrets.contains_key(&name.to_ascii_uppercase())
        })
    {
        return Err(format!(
            "{where_}: the called workflow requires the secret `{missing}`, which `secrets:` does not pass"
        ));
    }
    Ok(secrets)
}

/// `on.workflow_call.outputs`, evaluated over the `jobs` context (each called job's `result` and
/// `outputs`) and the call's `inputs`, `vars` and `github`.
pub async fn outputs(
    spec: &JobSpec,
    call: &BoundCall<'_>,
    results: &IndexMap<String, NeedResult>,
    emitter: &Emitter,
) -> IndexMap<String, String> {
    let Some(workflow_call) = &call.loaded.workflow.workflow_call else {
        return IndexMap::new();
    };
    let mut scope = Scope::new(&call.loaded.file);
    scope.set("github", Value::from(Json::Object(spec.github.clone())));
    scope.set("inputs", Value::from(Json::Object(call.inputs.clone())));
    scope.set("vars", Value::from(json!(spec.vars)));
    let jobs: Map<String, Json> = results
        .iter()
        .map(|(id, result)| {
            (
                id.clone(),
                json!({ "result": conclusion_name(result.result), "outputs": result.outputs }),
            )
        })
        .collect();
    scope.set("jobs", Value::from(Json::Object(jobs)));
    let mut outputs = IndexMap::new();
    for (name, field) in &workflow_call.outputs {
        match scope.string(field, &format!("on.workflow_call.outputs.{name}.value")) {
            Ok(value) => {
                outputs.insert(name.clone(), value);
            }
            Err(error) => emitter.log(None, &format!("::warning::{error}")).await,
        }
    }
    outputs
}
