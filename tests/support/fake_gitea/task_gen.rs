//! What a queued job becomes when a runner picks it (protocol.md §4.5): the single-job YAML
//! payload with `needs` erased, the 36-key context Struct, secrets with the per-task token,
//! vars and needs.

use std::collections::BTreeMap;

use act_runner::client::proto::runner::{Result as TaskResult, Task, TaskNeed};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost_types::value::Kind;
use serde_json::{Map, Value, json};

/// A job waiting in the fake's queue, built from a workflow file.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// The single-job workflow sent as `workflow_payload` (YAML, `needs` erased), or any bytes a
    /// hostile server might send instead ([`TaskSpec::from_payload`]).
    pub workflow_payload: Vec<u8>,
    /// The job's YAML key.
    pub job_id: String,
    /// `runs-on` labels; a runner picks the job only if it has all of them.
    pub runs_on: Vec<String>,
    /// Number of user-defined steps (the server pre-creates one StepState per step).
    pub n_steps: usize,
    pub secrets: BTreeMap<String, String>,
    pub vars: BTreeMap<String, String>,
    pub needs: BTreeMap<String, (BTreeMap<String, String>, TaskResult)>,
    /// Context values: `repository` (`owner/name`), `sha`, `ref`, `event_name`, `actor`, ...
    /// Anything set here overrides the generated default of that key.
    pub context: Map<String, Value>,
}

impl TaskSpec {
    /// A spec from a workflow with exactly one job.
    pub fn from_workflow(yaml: &str) -> Result<TaskSpec, String> {
        let workflow = parse_workflow(yaml)?;
        let jobs = jobs_of(&workflow)?;
        if jobs.len() != 1 {
            return Err(format!(
                "expected exactly one job, found {}; use from_workflow_job",
                jobs.len()
            ));
        }
        let job_id = jobs.keys().next().cloned().unwrap_or_default();
        TaskSpec::build(&workflow, &job_id)
    }

    /// A spec for one job of a workflow (Gitea splits a workflow into one task per job).
    pub fn from_workflow_job(yaml: &str, job_id: &str) -> Result<TaskSpec, String> {
        let workflow = parse_workflow(yaml)?;
        TaskSpec::build(&workflow, job_id)
    }

    fn build(workflow: &Map<String, Value>, job_id: &str) -> Result<TaskSpec, String> {
        let jobs = jobs_of(workflow)?;
        let mut job = jobs
            .get(job_id)
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| format!("no job `{job_id}`"))?;
        job.remove("needs");
        let runs_on = match job.get("runs-on") {
            Some(Value::String(label)) => vec![label.clone()],
            Some(Value::Array(labels)) => labels
                .iter()
                .filter_map(|label| label.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let n_steps = job
            .get("steps")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let mut single = Map::new();
        for key in ["name", "on", "env"] {
            if let Some(value) = workflow.get(key) {
                single.insert(key.to_owned(), value.clone());
            }
        }
        let mut single_jobs = Map::new();
        single_jobs.insert(job_id.to_owned(), Value::Object(job));
        single.insert("jobs".to_owned(), Value::Object(single_jobs));
        for key in ["defaults", "permissions", "run-name"] {
            if let Some(value) = workflow.get(key) {
                single.insert(key.to_owned(), value.clone());
            }
        }
        let workflow_payload = serde_saphyr::to_string(&Value::Object(single))
            .map_err(|error| error.to_string())?
            .into_bytes();
        Ok(TaskSpec {
            workflow_payload,
            job_id: job_id.to_owned(),
            runs_on,
            n_steps,
            secrets: BTreeMap::new(),
            vars: BTreeMap::new(),
            needs: BTreeMap::new(),
            context: Map::new(),
        })
    }

    /// A task whose payload is `payload` as given, whatever it holds (no job, two jobs, invalid
    /// UTF-8): what a broken or hostile server sends. It runs on a runner with `runs_on`.
    pub fn from_payload(payload: Vec<u8>, runs_on: &[&str]) -> TaskSpec {
        TaskSpec {
            workflow_payload: payload,
            job_id: "job".to_owned(),
            runs_on: runs_on.iter().map(|label| (*label).to_owned()).collect(),
            n_steps: 0,
            secrets: BTreeMap::new(),
            vars: BTreeMap::new(),
            needs: BTreeMap::new(),
            context: Map::new(),
        }
    }

    /// Replaces the `runs-on` labels (the example binary's `--labels`).
    pub fn with_runs_on(mut self, labels: &[&str]) -> TaskSpec {
        self.runs_on = labels.iter().map(|label| (*label).to_owned()).collect();
        self
    }

    /// Makes the task one job of run `run_id` (its context's `run_id` and its runtime token).
    pub fn with_run_id(mut self, run_id: i64) -> TaskSpec {
        self.context
            .insert("run_id".to_owned(), Value::String(run_id.to_string()));
        self
    }

    pub fn with_secret(mut self, name: &str, value: &str) -> TaskSpec {
        self.secrets.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn with_var(mut self, name: &str, value: &str) -> TaskSpec {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn with_need(
        mut self,
        job_id: &str,
        outputs: &[(&str, &str)],
        result: TaskResult,
    ) -> TaskSpec {
        let outputs = outputs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        self.needs.insert(job_id.to_owned(), (outputs, result));
        self
    }

    /// Sets a context key (e.g. `event_name`, `event`, `ref`, `repository`).
    pub fn with_context(mut self, key: &str, value: Value) -> TaskSpec {
        self.context.insert(key.to_owned(), value);
        self
    }
}

fn parse_workflow(yaml: &str) -> Result<Map<String, Value>, String> {
    match serde_saphyr::from_str::<Value>(yaml) {
        Ok(Value::Object(workflow)) => Ok(workflow),
        Ok(_) => Err("a workflow is a mapping".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

fn jobs_of(workflow: &Map<String, Value>) -> Result<&Map<String, Value>, String> {
    workflow
        .get("jobs")
        .and_then(Value::as_object)
        .ok_or_else(|| "the workflow has no `jobs` mapping".to_owned())
}

/// Where the task comes from: ids and URLs the server fills in at pick time.
pub struct PickContext<'a> {
    pub task_id: i64,
    pub task_token: &'a str,
    /// `http://127.0.0.1:PORT/` (with trailing slash, as Gitea's ROOT_URL).
    pub server_url: &'a str,
}

/// The Task message for `spec` as Gitea's `buildRunnerTask` assembles it.
pub fn build_task(spec: &TaskSpec, pick: &PickContext<'_>) -> Task {
    let mut secrets: std::collections::HashMap<String, String> =
        spec.secrets.clone().into_iter().collect();
    secrets.insert("GITHUB_TOKEN".to_owned(), pick.task_token.to_owned());
    secrets.insert("GITEA_TOKEN".to_owned(), pick.task_token.to_owned());
    let needs = spec
        .needs
        .iter()
        .map(|(job_id, (outputs, result))| {
            let need = TaskNeed {
                outputs: outputs.clone().into_iter().collect(),
                result: *result as i32,
            };
            (job_id.clone(), need)
        })
        .collect();
    Task {
        id: pick.task_id,
        workflow_payload: Some(spec.workflow_payload.clone()),
        context: Some(struct_from_json(&context_json(spec, pick))),
        secrets,
        needs,
        vars: spec.vars.clone().into_iter().collect(),
        ..Task::default()
    }
}

/// The 36 keys of protocol.md §4.5, then the spec's overrides.
pub fn context_json(spec: &TaskSpec, pick: &PickContext<'_>) -> Map<String, Value> {
    let repository = spec
        .context
        .get("repository")
        .and_then(Value::as_str)
        .unwrap_or("owner/repo")
        .to_owned();
    let owner = repository.split('/').next().unwrap_or_default().to_owned();
    let git_ref = spec
        .context
        .get("ref")
        .and_then(Value::as_str)
        .unwrap_or("refs/heads/main")
        .to_owned();
    let ref_name = git_ref.rsplit('/').next().unwrap_or_default().to_owned();
    let run_id = run_id_of(spec, pick.task_id).to_string();
    let server_url = pick.server_url;
    let mut context = json!({
        "action": "", "action_path": "", "action_ref": "", "action_repository": "", "action_status": "",
        "actor": "tester",
        "api_url": format!("{server_url}api/v1"),
        "base_ref": "", "head_ref": "",
        "env": "", "event_path": "", "graphql_url": "", "path": "", "retention_days": "", "workspace": "",
        "event": { "ref": git_ref.clone(), "repository": { "full_name": repository.clone() } },
        "event_name": "push",
        "job": spec.job_id.clone(),
        "ref": git_ref.clone(),
        "ref_name": ref_name,
        "ref_type": if git_ref.starts_with("refs/tags/") { "tag" } else { "branch" },
        "ref_protected": false,
        "repository": repository.clone(),
        "repository_owner": owner,
        "repositoryUrl": format!("{server_url}{repository}"),
        "run_id": run_id.clone(),
        "run_number": run_id,
        "run_attempt": "1",
        "secret_source": "Actions",
        "server_url": server_url,
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "triggering_actor": "",
        "workflow": "ci.yml",
        "gitea_default_actions_url": "https://github.com",
        "token": pick.task_token,
        "gitea_runtime_token": runtime_token(pick.task_id, run_id_of(spec, pick.task_id), &spec.job_id),
    });
    let map = context
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut map = map;
    for (key, value) in &spec.context {
        map.insert(key.clone(), value.clone());
    }
    map
}

/// The run a task belongs to: the spec's `run_id` (several tasks of one run), else its own id.
pub fn run_id_of(spec: &TaskSpec, task_id: i64) -> i64 {
    match spec.context.get("run_id") {
        Some(Value::String(run_id)) => run_id.parse().unwrap_or(task_id),
        Some(Value::Number(run_id)) => run_id.as_i64().unwrap_or(task_id),
        _ => task_id,
    }
}

/// Gitea's job id for a task: its own number, distinct from the task's and the run's so that a
/// runner using the wrong one is caught.
pub fn job_db_id(task_id: i64) -> i64 {
    task_id + 10_000
}

/// An HS256 JWT like Gitea's ACTIONS_RUNTIME_TOKEN, signed with [`super::results`]'s secret;
/// runners decode it, the fake's artifact and summary routes verify it.
fn runtime_token(task_id: i64, run_id: i64, job_id: &str) -> String {
    let job_db_id = job_db_id(task_id);
    let claims = json!({
        "scp": format!("Actions.Results:{run_id}:{job_db_id}"),
        "TaskID": task_id, "RunID": run_id, "JobID": job_db_id, "job": job_id,
        "ac": "[]", "exp": 4_102_444_800u64,
    });
    super::results::sign_runtime_token(&claims)
}

/// JSON to `google.protobuf.Struct` (numbers become doubles, as in Gitea's context).
pub fn struct_from_json(map: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(key, value)| (key.clone(), value_from_json(value)))
            .collect(),
    }
}

fn value_from_json(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        Value::String(text) => Kind::StringValue(text.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(value_from_json).collect(),
        }),
        Value::Object(map) => Kind::StructValue(struct_from_json(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Forty lowercase hex characters, like Gitea's runner and task tokens.
pub fn random_token() -> String {
    let bytes: [u8; 20] = rand::random();
    hex::encode(bytes)
}
