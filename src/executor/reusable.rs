//! Reusable workflows (`jobs.<id>.uses`), run runner-side as upstream's act does for the Gitea
//! versions that send such a job unexpanded. The called workflow is read from the local checkout
//! (`./path` with `ActionSettings::repository_dir`) or fetched with `git` into the action cache
//! (`owner/repo/path@ref`, and `./path` from the job's own repository at `github.sha`), with the
//! trusted server's token where it lives there. Its jobs run inside the calling job, one after
//! another in `needs` order (each matrix leg in turn) on the caller's backend, prepared and cleaned
//! up for each; their steps are numbered after one another in the caller's one log. The caller's
//! `with:` becomes the typed `inputs`, `secrets:` (a mapping or `inherit`) the `secrets`, and
//! `on.workflow_call.outputs`, evaluated over the `jobs` context, the caller's outputs.

use std::path::Path;
use std::time::SystemTime;

use indexmap::IndexMap;
use serde_json::{Map, Value as Json, json};
use tokio_util::sync::CancellationToken;

use super::action::{Reference, RemoteRepository, fetch_repository, redact_url};
use super::backend::Backend;
use super::contexts;
use super::event::{Conclusion, JobEvent, PlannedStep};
use super::expr::Value;
use super::job::{Emitter, clean_up, job_runs, refuse, run_started};
use super::model::{CallSecrets, Job, Located, Workflow};
use super::scope::Scope;
use super::spec::{JobSpec, NeedResult, matrix_plan};

/// The largest workflow file read.
const MAX_WORKFLOW_BYTES: u64 = 1 << 20;
/// The token secrets a called workflow always receives, as on GitHub.
const TOKEN_SECRETS: [&str; 2] = ["GITHUB_TOKEN", "GITEA_TOKEN"];

/// A called workflow, loaded, with what the caller passes it.
struct Call {
    /// The name its messages use: the caller's `uses:` value.
    file: String,
    yaml: String,
    workflow: Workflow,
    inputs: Map<String, Json>,
    secrets: IndexMap<String, String>,
    /// Job ids in an order that runs every job after the jobs it needs.
    order: Vec<String>,
}

/// Runs the workflow the caller's job `uses` and returns the caller's conclusion; sends
/// `JobStarted`, the called jobs' steps and logs, and the caller's `Outputs`.
pub async fn run<B: Backend>(
    spec: &JobSpec,
    workflow: &Workflow,
    job: &Job,
    uses: &Located<String>,
    backend: &mut B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Conclusion {
    match prepare(spec, workflow, job, uses, backend.paths(), cancel).await {
        Err(message) => refuse(emitter, message).await,
        Ok(None) => {
            emitter
                .send(JobEvent::JobStarted {
                    at: SystemTime::now(),
                    steps: Vec::new(),
                })
                .await;
            emitter
                .log(None, "The job was skipped: its `if` condition is false")
                .await;
            Conclusion::Skipped
        }
        Ok(Some(call)) => run_call(spec, &call, backend, emitter, cancel).await,
    }
}

/// The caller's `if`, then the called workflow with its inputs and secrets; `None` when the caller
/// is skipped.
async fn prepare(
    spec: &JobSpec,
    workflow: &Workflow,
    job: &Job,
    uses: &Located<String>,
    paths: &super::backend::EnvironmentPaths,
    cancel: &CancellationToken,
) -> Result<Option<Call>, String> {
    let caller_file = spec.workflow_file.as_str();
    let mut scope = Scope::new(caller_file);
    contexts::fill_static(spec, workflow, job, paths, &mut scope);
    contexts::matrix(spec, job, &mut scope).map_err(|error| error.0)?;
    if !job_runs(spec, job, &mut scope).map_err(|error| error.0)? {
        return Ok(None);
    }
    let where_ = format!("{caller_file}:{}: job `{}`", uses.at, job.id);
    let file = uses.value.trim().to_string();
    let yaml = load(spec, &file, cancel)
        .await
        .map_err(|message| format!("{where_}: `uses: {file}`: {message}"))?;
    let called = Workflow::parse(&yaml).map_err(|error| format!("{file}:{error}"))?;
    if !called.on.iter().any(|event| event == "workflow_call") {
        return Err(format!(
            "{where_}: {file} is not a reusable workflow: its `on` lacks `workflow_call`"
        ));
    }
    let inputs = inputs(&scope, job, &called, &where_)?;
    let secrets = secrets(spec, &scope, job, &called, &where_)?;
    let order = needs_order(&called).map_err(|cycle| format!("{file}: {cycle}"))?;
    Ok(Some(Call {
        file,
        yaml,
        workflow: called,
        inputs,
        secrets,
        order,
    }))
}

/// The called workflow's text: from the local checkout, or fetched into the action cache.
async fn load(spec: &JobSpec, uses: &str, cancel: &CancellationToken) -> Result<String, String> {
    let settings = &spec.actions;
    let expected = "expected `./.gitea/workflows/<file>.yml` or `owner/repo/.gitea/workflows/<file>.yml@ref` (`.github` works too)";
    let reference = Reference::parse(uses, &settings.workflows_url)?;
    let (root, path) = match reference {
        Reference::Docker(_) => return Err(String::from(expected)),
        Reference::Local(path) => {
            check_workflow_path(&path, expected)?;
            match &settings.repository_dir {
                Some(dir) => (dir.clone(), path),
                None => {
                    let text = |key: &str| {
                        spec.github
                            .get(key)
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    let repository = text("repository");
                    let own = RemoteRepository {
                        url: format!(
                            "{}/{repository}",
                            settings.workflows_url.trim_end_matches('/')
                        ),
                        repository,
                        path: path.clone(),
                        git_ref: text("sha"),
                    };
                    (fetch(&own, spec, cancel).await?, path)
                }
            }
        }
        Reference::Remote(remote) => {
            check_workflow_path(&remote.path, expected)?;
            (fetch(&remote, spec, cancel).await?, remote.path)
        }
    };
    read_bounded(&root.join(&path)).await
}

async fn fetch(
    remote: &RemoteRepository,
    spec: &JobSpec,
    cancel: &CancellationToken,
) -> Result<std::path::PathBuf, String> {
    // One checkout per repository and ref, whichever of its workflows is called.
    let key = format!("{}@{}", remote.url, remote.git_ref);
    fetch_repository(&key, remote, &spec.actions, cancel)
        .await
        .map_err(|message| format!("cannot fetch {}: {message}", redact_url(&remote.url)))
}

fn check_workflow_path(path: &str, expected: &str) -> Result<(), String> {
    let in_workflows = [".gitea/workflows/", ".github/workflows/"]
        .iter()
        .any(|dir| {
            path.strip_prefix(dir)
                .is_some_and(|name| !name.contains('/'))
        });
    let yaml = path.ends_with(".yml") || path.ends_with(".yaml");
    if in_workflows && yaml {
        Ok(())
    } else {
        Err(String::from(expected))
    }
}

async fn read_bounded(path: &Path) -> Result<String, String> {
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if metadata.len() > MAX_WORKFLOW_BYTES {
        return Err(format!(
            "{} is larger than {MAX_WORKFLOW_BYTES} bytes",
            path.display()
        ));
    }
    tokio::fs::read_to_string(path)
        .await
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
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
            (name.clone(), super::inputs::typed(declaration, value))
        })
        .collect())
}

/// What the called workflow's `secrets` context holds: every secret with `inherit`, else the
/// caller's mapping evaluated; the token secrets in any case.
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

/// The workflow's job ids, each after the jobs it needs; an error names a cycle's jobs.
fn needs_order(workflow: &Workflow) -> Result<Vec<String>, String> {
    let mut order: Vec<String> = Vec::new();
    let mut waiting: Vec<&Job> = workflow.jobs.values().collect();
    while !waiting.is_empty() {
        let (ready, still): (Vec<&Job>, Vec<&Job>) = waiting
            .into_iter()
            .partition(|job| job.needs.iter().all(|need| order.contains(&need.value)));
        if ready.is_empty() {
            let ids: Vec<&str> = still.iter().map(|job| job.id.as_str()).collect();
            return Err(format!("the jobs {} need each other", ids.join(", ")));
        }
        order.extend(ready.iter().map(|job| job.id.clone()));
        waiting = still;
    }
    Ok(order)
}

async fn run_call<B: Backend>(
    spec: &JobSpec,
    call: &Call,
    backend: &mut B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Conclusion {
    let mut offsets = IndexMap::new();
    let mut planned = Vec::new();
    for job_id in &call.order {
        offsets.insert(job_id.clone(), planned.len());
        for step in &call.workflow.jobs[job_id].steps {
            planned.push(PlannedStep {
                step_idx: planned.len(),
                name: emitter
                    .masker
                    .mask(&format!("{job_id}: {}", step.display_name())),
            });
        }
    }
    let mut next_offset = planned.len();
    emitter
        .send(JobEvent::JobStarted {
            at: SystemTime::now(),
            steps: planned,
        })
        .await;

    let mut results: IndexMap<String, NeedResult> = IndexMap::new();
    for job_id in &call.order {
        let job = &call.workflow.jobs[job_id];
        let needs = job
            .needs
            .iter()
            .filter_map(|need| {
                results
                    .get(&need.value)
                    .map(|result| (need.value.clone(), result.clone()))
            })
            .collect();
        let result = if cancel.is_cancelled() {
            cancelled()
        } else if job.uses.is_some() {
            let message = format!(
                "::error::{}: job `{job_id}`: a reusable workflow calling another one is not supported",
                call.file
            );
            emitter.log(None, &message).await;
            failed()
        } else {
            let first_offset = offsets[job_id];
            let mut offset_of_leg = |leg_idx: usize| {
                if leg_idx == 0 {
                    first_offset
                } else {
                    next_offset += job.steps.len();
                    next_offset - job.steps.len()
                }
            };
            run_called_job(
                child_spec(spec, call, job_id, needs),
                call,
                job,
                &mut offset_of_leg,
                backend,
                emitter,
                cancel,
            )
            .await
        };
        results.insert(job_id.clone(), result);
    }

    let outputs = call_outputs(spec, call, &results, emitter).await;
    emitter.send(JobEvent::Outputs(outputs)).await;
    let conclusions: Vec<Conclusion> = results.values().map(|result| result.result).collect();
    if conclusions.contains(&Conclusion::Failure) {
        Conclusion::Failure
    } else if conclusions.contains(&Conclusion::Cancelled) {
        Conclusion::Cancelled
    } else {
        Conclusion::Success
    }
}

/// Runs every matrix leg of one called job on the caller's backend; the worst leg's result, and
/// the outputs of the last leg that set them.
async fn run_called_job<B: Backend>(
    spec: JobSpec,
    call: &Call,
    job: &Job,
    offset_of_leg: &mut impl FnMut(usize) -> usize,
    backend: &mut B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> NeedResult {
    let plan = match matrix_plan(&spec) {
        Ok(plan) => plan,
        Err(message) => {
            emitter.log(None, &format!("::error::{message}")).await;
            return failed();
        }
    };
    let n_legs = plan.combinations.len();
    let mut overall = NeedResult {
        result: Conclusion::Skipped,
        outputs: IndexMap::new(),
    };
    for (leg_idx, combination) in plan.combinations.into_iter().enumerate() {
        if cancel.is_cancelled() || (plan.fail_fast && overall.result == Conclusion::Failure) {
            overall.result = worst(overall.result, Conclusion::Cancelled);
            continue;
        }
        let mut leg = child_spec(&spec, call, &spec.job_id, spec.needs.clone());
        leg.matrix = Some(combination);
        leg.matrix_position = Some((leg_idx, n_legs));
        let label = if n_legs > 1 {
            format!(" ({}/{n_legs})", leg_idx + 1)
        } else {
            String::new()
        };
        emitter
            .log(
                None,
                &format!("Running job `{}`{label} of {}", spec.job_id, call.file),
            )
            .await;
        emitter.step_offset = offset_of_leg(leg_idx);
        let ran = run_started(&leg, &call.workflow, job, backend, emitter, cancel).await;
        emitter.step_offset = 0;
        clean_up(backend).await;
        let (conclusion, outputs) = match ran {
            Ok(ran) => ran,
            Err(error) => {
                emitter.log(None, &format!("::error::{error}")).await;
                (Conclusion::Failure, None)
            }
        };
        overall.result = if overall.result == Conclusion::Skipped {
            conclusion
        } else {
            worst(overall.result, conclusion)
        };
        overall.outputs.extend(
            outputs
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, value)| !value.is_empty()),
        );
    }
    overall
}

fn worst(a: Conclusion, b: Conclusion) -> Conclusion {
    match (a, b) {
        (Conclusion::Failure, _) | (_, Conclusion::Failure) => Conclusion::Failure,
        (Conclusion::Cancelled, _) | (_, Conclusion::Cancelled) => Conclusion::Cancelled,
        (Conclusion::Skipped, other) | (other, Conclusion::Skipped) => other,
        _ => Conclusion::Success,
    }
}

fn failed() -> NeedResult {
    NeedResult {
        result: Conclusion::Failure,
        outputs: IndexMap::new(),
    }
}

fn cancelled() -> NeedResult {
    NeedResult {
        result: Conclusion::Cancelled,
        outputs: IndexMap::new(),
    }
}

/// A called job's spec: the caller's contexts (its `github` too, as on GitHub), the call's
/// inputs and secrets, and the results of the called jobs it needs.
fn child_spec(
    spec: &JobSpec,
    call: &Call,
    job_id: &str,
    needs: IndexMap<String, NeedResult>,
) -> JobSpec {
    let mut child = spec.another_job(call.yaml.clone(), call.file.clone(), job_id.to_string());
    child.secrets = call.secrets.clone();
    child.inputs = call.inputs.clone();
    child.needs = needs;
    child
}

/// `on.workflow_call.outputs`, evaluated over the `jobs` context (each called job's `result` and
/// `outputs`) and the call's `inputs`, `vars` and `github`.
async fn call_outputs(
    spec: &JobSpec,
    call: &Call,
    results: &IndexMap<String, NeedResult>,
    emitter: &Emitter,
) -> IndexMap<String, String> {
    let Some(workflow_call) = &call.workflow.workflow_call else {
        return IndexMap::new();
    };
    let mut scope = Scope::new(&call.file);
    scope.set("github", Value::from(Json::Object(spec.github.clone())));
    scope.set("inputs", Value::from(Json::Object(call.inputs.clone())));
    scope.set("vars", Value::from(json!(spec.vars)));
    let jobs: Map<String, Json> = results
        .iter()
        .map(|(id, result)| {
            let result_name = super::spec::conclusion_name(result.result);
            (
                id.clone(),
                json!({ "result": result_name, "outputs": result.outputs }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_after_the_jobs_they_need() {
        let workflow = Workflow::parse(
            "on: workflow_call\njobs:\n  c:\n    needs: [a, b]\n    steps: [{run: x}]\n  b:\n    needs: a\n    steps: [{run: x}]\n  a:\n    steps: [{run: x}]\n",
        )
        .unwrap();
        assert_eq!(needs_order(&workflow).unwrap(), ["a", "b", "c"]);
    }

    #[test]
    fn only_files_in_a_workflows_directory_are_called() {
        for good in [".gitea/workflows/build.yml", ".github/workflows/x.yaml"] {
            assert!(check_workflow_path(good, "e").is_ok(), "{good}");
        }
        for bad in [
            ".gitea/workflows/sub/x.yml",
            "ci/x.yml",
            ".gitea/workflows/x.txt",
            ".gitea/x.yml",
        ] {
            assert!(check_workflow_path(bad, "e").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_worst_result_wins_and_skipped_counts_for_nothing() {
        use Conclusion::*;
        assert_eq!(worst(Success, Failure), Failure);
        assert_eq!(worst(Cancelled, Success), Cancelled);
        assert_eq!(worst(Skipped, Success), Success);
        assert_eq!(worst(Failure, Cancelled), Failure);
    }
}
