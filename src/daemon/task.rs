//! Task → job: turns a Gitea `Task` into what the executor runs, without any I/O.
//!
//! Reads the single-job workflow payload (job id, `runs-on`), picks the platform from the runner's
//! labels, converts the `context` Struct into the `github` context (numbers that are whole become
//! integers, as Go's JSON would print them), takes the token (secret `GITEA_TOKEN`, else
//! `GITHUB_TOKEN`, else the context's), secrets, vars and `needs`, and adds the runtime variables
//! jobs need (`ACTIONS_RUNTIME_URL`, `ACTIONS_RUNTIME_TOKEN`, `ACTIONS_RESULTS_URL`, `GITEA_*`).
//! Proto types stop here: the executor never sees them.
//! May use: `client::proto`, `config` (labels), `executor` (its input types). Never: I/O of any kind.

use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Map, Number, Value as Json};

use crate::client::proto::runner::{self as proto, Task};
use crate::executor::event::Conclusion;
use crate::executor::{JobSpec, NeedResult};

/// Why a task cannot become a job (reported as the job's failure).
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("the task has no workflow payload")]
    NoPayload,
    #[error("the workflow payload has {0} bytes, larger than the 16 MiB a job may have")]
    PayloadTooLarge(usize),
    #[error("the workflow payload is not valid YAML: {0}")]
    Payload(String),
    #[error("the workflow payload must hold exactly one job, found {found:?}")]
    JobCount { found: Vec<String> },
}

/// What the runner contributes to every job, fixed while the daemon runs (until a reload).
#[derive(Clone)]
pub struct RunnerContext {
    pub name: String,
    pub uuid: String,
    /// The Gitea instance URL from `.runner`.
    pub address: String,
    /// `runner.envs` with `runner.env_file` merged over it.
    pub envs: IndexMap<String, String>,
    /// `runner.timeout`: the job may not run longer.
    pub timeout: Duration,
    /// The `X-Gitea-Actions-Capabilities` answer of Declare (empty when absent).
    pub server_capabilities: String,
    /// `runner.github_mirror`.
    pub github_mirror: Option<String>,
}

impl fmt::Debug for RunnerContext {
    // `envs` may hold credentials an operator put there.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerContext")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("n_envs", &self.envs.len())
            .finish_non_exhaustive()
    }
}

/// The parts of a task the daemon itself needs (names for logs, where the job runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    pub task_id: i64,
    /// `owner/name`.
    pub repository: String,
    /// The workflow file id, e.g. `ci.yml`.
    pub workflow: String,
    /// The job id (the key under `jobs:`).
    pub job_id: String,
    /// The job's display name (`name:`, else the id).
    pub job_name: String,
    pub runs_on: Vec<String>,
    /// The job names a `container:` (it runs in Docker even on a host label).
    pub names_container: bool,
    pub event_name: String,
    pub run_id: String,
}

/// Reads the summary from a task: its context and its single job.
pub fn summarize(task: &Task) -> Result<TaskSummary, TaskError> {
    let context = task
        .context
        .as_ref()
        .map(struct_to_json)
        .unwrap_or_default();
    let text = |key: &str| match context.get(key) {
        Some(Json::String(value)) => value.clone(),
        _ => String::new(),
    };
    let payload = task
        .workflow_payload
        .as_deref()
        .ok_or(TaskError::NoPayload)?;
    if payload.len() > 16 << 20 {
        return Err(TaskError::PayloadTooLarge(payload.len()));
    }
    let (job_id, job) = single_job(payload)?;
    let job_name = match job.get("name") {
        Some(Json::String(name)) if !name.is_empty() => name.clone(),
        _ => job_id.clone(),
    };
    let runs_on = match job.get("runs-on") {
        Some(Json::String(label)) => vec![label.clone()],
        Some(Json::Array(labels)) => labels
            .iter()
            .filter_map(|label| label.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let names_container = job
        .get("container")
        .is_some_and(|container| !container.is_null());
    Ok(TaskSummary {
        task_id: task.id,
        repository: text("repository"),
        workflow: text("workflow"),
        job_id,
        job_name,
        runs_on,
        names_container,
        event_name: text("event_name"),
        run_id: text("run_id"),
    })
}

/// The one job of a payload, as JSON.
fn single_job(payload: &[u8]) -> Result<(String, Map<String, Json>), TaskError> {
    let text =
        std::str::from_utf8(payload).map_err(|error| TaskError::Payload(error.to_string()))?;
    let document: Json =
        serde_saphyr::from_str(text).map_err(|error| TaskError::Payload(error.to_string()))?;
    let jobs = document
        .get("jobs")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let found: Vec<String> = jobs.keys().cloned().collect();
    match (found.len(), jobs.into_iter().next()) {
        (1, Some((job_id, job))) => Ok((job_id, job.as_object().cloned().unwrap_or_default())),
        _ => Err(TaskError::JobCount { found }),
    }
}

/// The executor's input for a task.
pub fn job_spec(task: &Task, summary: &TaskSummary, runner: &RunnerContext) -> JobSpec {
    let payload = task
        .workflow_payload
        .as_deref()
        .map(|payload| String::from_utf8_lossy(payload).into_owned())
        .unwrap_or_default();
    let mut github = task
        .context
        .as_ref()
        .map(struct_to_json)
        .unwrap_or_default();
    let token = job_token(task, &github);
    if !token.is_empty() {
        github.insert("token".into(), Json::String(token.clone()));
    }
    let actions_url = default_actions_url(runner, &github);
    if !actions_url.is_empty() {
        github.insert(
            "gitea_default_actions_url".into(),
            Json::String(actions_url),
        );
    }
    let mut spec = JobSpec::new(payload, summary.workflow.clone(), summary.job_id.clone());
    spec.extra_env = runtime_env(runner, &github, &token);
    spec.masks = extra_masks(&github, &token);
    spec.github = github;
    spec.env = runner.envs.clone();
    spec.vars = sorted(&task.vars);
    spec.secrets = sorted(&task.secrets);
    let mut need_ids: Vec<&String> = task.needs.keys().collect();
    need_ids.sort();
    spec.needs = need_ids
        .into_iter()
        .map(|need_id| {
            let need = &task.needs[need_id];
            let result = match need_result_name(need.result) {
                "success" => Conclusion::Success,
                "cancelled" => Conclusion::Cancelled,
                "skipped" => Conclusion::Skipped,
                _ => Conclusion::Failure,
            };
            let outputs = sorted(&need.outputs);
            (need_id.clone(), NeedResult { result, outputs })
        })
        .collect();
    spec.runner_name = runner.name.clone();
    spec.timeout_cap = Some(runner.timeout);
    spec.log_delivery_wait = Some(LOG_DELIVERY_WAIT);
    spec
}

/// How long a finished job waits for Gitea to acknowledge its log before it removes its
/// containers: the removal keeps the Docker engine busy, and the log's end should not compete
/// with it. Long enough for a burst's backlog on a healthy server, short enough that an outage
/// holds no container for long (its rows are spooled and delivered later either way).
const LOG_DELIVERY_WAIT: Duration = Duration::from_secs(5);

fn sorted(map: &std::collections::HashMap<String, String>) -> IndexMap<String, String> {
    let mut pairs: Vec<(&String, &String)> = map.iter().collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// `google.protobuf.Struct` → JSON object.
pub fn struct_to_json(value: &prost_types::Struct) -> Map<String, Json> {
    value
        .fields
        .iter()
        .map(|(key, value)| (key.clone(), value_to_json(value)))
        .collect()
}

fn value_to_json(value: &prost_types::Value) -> Json {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(flag)) => Json::Bool(*flag),
        Some(Kind::NumberValue(number)) => number_to_json(*number),
        Some(Kind::StringValue(text)) => Json::String(text.clone()),
        Some(Kind::ListValue(list)) => Json::Array(list.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(object)) => Json::Object(struct_to_json(object)),
    }
}

/// Struct numbers are doubles; a PR number must still print as `7`, not `7.0`.
fn number_to_json(number: f64) -> Json {
    const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
    if number.fract() == 0.0 && number.abs() < EXACT_LIMIT {
        Json::Number(Number::from(number as i64))
    } else {
        Number::from_f64(number).map_or(Json::Null, Json::Number)
    }
}

/// The job's `needs.<id>.result` word for a Gitea result.
pub fn need_result_name(result: i32) -> &'static str {
    match proto::Result::try_from(result) {
        Ok(proto::Result::Success) => "success",
        Ok(proto::Result::Failure) => "failure",
        Ok(proto::Result::Cancelled) => "cancelled",
        Ok(proto::Result::Skipped) => "skipped",
        _ => "unspecified",
    }
}

/// The task token the job uses: secret `GITEA_TOKEN`, else `GITHUB_TOKEN`, else the context's.
pub fn job_token(task: &Task, github: &Map<String, Json>) -> String {
    ["GITEA_TOKEN", "GITHUB_TOKEN"]
        .iter()
        .filter_map(|name| task.secrets.get(*name))
        .find(|value| !value.is_empty())
        .cloned()
        .or_else(|| {
            github
                .get("token")
                .and_then(Json::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// The runtime variables a job sees but cannot override, in upstream's order.
pub fn runtime_env(
    runner: &RunnerContext,
    github: &Map<String, Json>,
    token: &str,
) -> IndexMap<String, String> {
    let address = runner.address.trim_end_matches('/');
    let text = |key: &str| github.get(key).and_then(Json::as_str).unwrap_or_default();
    let mut env = IndexMap::new();
    env.insert(
        "ACTIONS_RUNTIME_URL".into(),
        format!("{address}/api/actions_pipeline/"),
    );
    env.insert("ACTIONS_RESULTS_URL".into(), address.to_string());
    let runtime_token = runtime_token(github, token);
    if !runtime_token.is_empty() {
        env.insert("ACTIONS_RUNTIME_TOKEN".into(), runtime_token.to_string());
    }
    let oidc_url = text("actions_id_token_request_url");
    if !oidc_url.is_empty() {
        env.insert("ACTIONS_ID_TOKEN_REQUEST_URL".into(), oidc_url.to_string());
        env.insert(
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
            text("actions_id_token_request_token").to_string(),
        );
    }
    env.insert("GITEA_ACTIONS".into(), "true".into());
    env.insert(
        "GITEA_ACTIONS_RUNNER_VERSION".into(),
        crate::VERSION.to_string(),
    );
    if !runner.server_capabilities.is_empty() {
        env.insert(
            "GITEA_ACTIONS_CAPABILITIES".into(),
            runner.server_capabilities.clone(),
        );
    }
    let run_id = text("run_id");
    if !run_id.is_empty() {
        env.insert("GITEA_RUN_ID".into(), run_id.to_string());
    }
    env
}

/// `ACTIONS_RUNTIME_TOKEN`: the context's `gitea_runtime_token`, or the task token for servers
/// that send none. It is also the task's cache credential.
pub fn runtime_token<'a>(github: &'a Map<String, Json>, token: &'a str) -> &'a str {
    match github.get("gitea_runtime_token").and_then(Json::as_str) {
        Some(runtime_token) if !runtime_token.is_empty() => runtime_token,
        _ => token,
    }
}

/// Values the job log must never show besides the secrets: tokens from the context.
pub fn extra_masks(github: &Map<String, Json>, token: &str) -> Vec<String> {
    let mut masks: Vec<String> = [
        "token",
        "gitea_runtime_token",
        "actions_id_token_request_token",
    ]
    .iter()
    .filter_map(|key| github.get(*key).and_then(Json::as_str))
    .chain(std::iter::once(token))
    .filter(|value| !value.is_empty())
    .map(str::to_owned)
    .collect();
    masks.sort();
    masks.dedup();
    masks
}

/// The default actions URL after `runner.github_mirror` (upstream replaces only github.com).
pub fn default_actions_url(runner: &RunnerContext, github: &Map<String, Json>) -> String {
    let url = github
        .get("gitea_default_actions_url")
        .and_then(Json::as_str)
        .unwrap_or_default();
    match &runner.github_mirror {
        Some(mirror) if url == "https://github.com" && !mirror.is_empty() => mirror.clone(),
        _ => url.to_string(),
    }
}

/// The job container's name: `GITEA-ACTIONS-TASK-<id>_WORKFLOW-<wf>_JOB-<job>`, with characters
/// Docker refuses replaced by `-`.
pub fn container_name(summary: &TaskSummary) -> String {
    let raw = format!(
        "GITEA-ACTIONS-TASK-{}_WORKFLOW-{}_JOB-{}",
        summary.task_id, summary.workflow, summary.job_id
    );
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost_types::value::Kind;

    use super::*;

    fn string(value: &str) -> prost_types::Value {
        prost_types::Value {
            kind: Some(Kind::StringValue(value.into())),
        }
    }

    fn context(pairs: &[(&str, prost_types::Value)]) -> prost_types::Struct {
        prost_types::Struct {
            fields: pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn runner() -> RunnerContext {
        RunnerContext {
            name: "r1".into(),
            uuid: "uuid".into(),
            address: "http://gitea.test:3000/".into(),
            envs: IndexMap::new(),
            timeout: Duration::from_secs(3 * 3600),
            server_capabilities: "job-summary".into(),
            github_mirror: Some("https://mirror.test".into()),
        }
    }

    fn task(payload: &str) -> Task {
        let event = prost_types::Value {
            kind: Some(Kind::StructValue(context(&[
                (
                    "number",
                    prost_types::Value {
                        kind: Some(Kind::NumberValue(7.0)),
                    },
                ),
                (
                    "ratio",
                    prost_types::Value {
                        kind: Some(Kind::NumberValue(0.5)),
                    },
                ),
            ]))),
        };
        let mut secrets = std::collections::HashMap::new();
        secrets.insert("GITHUB_TOKEN".to_string(), "task-token".to_string());
        secrets.insert("GITEA_TOKEN".to_string(), "".to_string());
        Task {
            id: 31,
            workflow_payload: Some(payload.as_bytes().to_vec()),
            context: Some(context(&[
                ("repository", string("owner/repo")),
                ("workflow", string("ci.yml")),
                ("event_name", string("push")),
                ("run_id", string("12")),
                ("token", string("context-token")),
                ("gitea_runtime_token", string("jwt")),
                ("gitea_default_actions_url", string("https://github.com")),
                ("event", event),
            ])),
            secrets,
            ..Task::default()
        }
    }

    const PAYLOAD: &str = "name: CI\non: push\njobs:\n  build:\n    name: Build it\n    runs-on: [ubuntu-latest, big]\n    steps:\n      - run: echo hi\n";

    #[test]
    fn summary_names_the_single_job_and_its_runs_on() {
        let summary = summarize(&task(PAYLOAD)).unwrap();
        assert_eq!(summary.task_id, 31);
        assert_eq!(summary.repository, "owner/repo");
        assert_eq!(summary.job_id, "build");
        assert_eq!(summary.job_name, "Build it");
        assert_eq!(summary.runs_on, ["ubuntu-latest", "big"]);
        assert_eq!(summary.run_id, "12");
    }

    #[test]
    fn a_payload_with_two_jobs_is_refused() {
        let payload = "on: push\njobs:\n  a:\n    runs-on: x\n  b:\n    runs-on: x\n";
        let error = summarize(&task(payload)).unwrap_err();
        assert!(matches!(error, TaskError::JobCount { found } if found == ["a", "b"]));
        assert!(matches!(
            summarize(&task(":::")),
            Err(TaskError::Payload(_)) | Err(TaskError::JobCount { .. })
        ));
    }

    #[test]
    fn whole_numbers_stay_integers_in_the_github_context() {
        let github = struct_to_json(task(PAYLOAD).context.as_ref().unwrap());
        assert_eq!(github["event"]["number"], serde_json::json!(7));
        assert_eq!(github["event"]["number"].to_string(), "7");
        assert_eq!(github["event"]["ratio"], serde_json::json!(0.5));
    }

    #[test]
    fn the_token_prefers_non_empty_secrets_then_the_context() {
        let task = task(PAYLOAD);
        let github = struct_to_json(task.context.as_ref().unwrap());
        assert_eq!(job_token(&task, &github), "task-token");
        let mut without = task.clone();
        without.secrets.clear();
        assert_eq!(job_token(&without, &github), "context-token");
    }

    #[test]
    fn runtime_env_points_at_the_instance_and_carries_the_runtime_token() {
        let task = task(PAYLOAD);
        let github = struct_to_json(task.context.as_ref().unwrap());
        let env = runtime_env(&runner(), &github, "task-token");
        assert_eq!(
            env["ACTIONS_RUNTIME_URL"],
            "http://gitea.test:3000/api/actions_pipeline/"
        );
        assert_eq!(env["ACTIONS_RESULTS_URL"], "http://gitea.test:3000");
        assert_eq!(env["ACTIONS_RUNTIME_TOKEN"], "jwt");
        assert_eq!(env["GITEA_ACTIONS"], "true");
        assert_eq!(env["GITEA_ACTIONS_CAPABILITIES"], "job-summary");
        assert_eq!(env["GITEA_RUN_ID"], "12");
        assert!(!env.contains_key("ACTIONS_CACHE_URL"));
        let masks = extra_masks(&github, "task-token");
        assert_eq!(masks, ["context-token", "jwt", "task-token"]);
    }

    #[test]
    fn the_mirror_replaces_only_github() {
        let github = struct_to_json(task(PAYLOAD).context.as_ref().unwrap());
        assert_eq!(
            default_actions_url(&runner(), &github),
            "https://mirror.test"
        );
        let mut other = github.clone();
        other.insert(
            "gitea_default_actions_url".into(),
            "https://gitea.com".into(),
        );
        assert_eq!(default_actions_url(&runner(), &other), "https://gitea.com");
    }

    #[test]
    fn container_names_replace_what_docker_refuses() {
        let mut summary = summarize(&task(PAYLOAD)).unwrap();
        summary.workflow = "my flow.yml".into();
        summary.job_id = "build/linux".into();
        assert_eq!(
            container_name(&summary),
            "GITEA-ACTIONS-TASK-31_WORKFLOW-my-flow.yml_JOB-build-linux"
        );
    }

    #[test]
    fn the_job_spec_carries_contexts_needs_and_the_runtime() {
        let mut task = task(PAYLOAD);
        task.vars.insert("V".into(), "x".into());
        let mut outputs = std::collections::HashMap::new();
        outputs.insert("out".to_string(), "1".to_string());
        task.needs.insert(
            "prepare".into(),
            proto::TaskNeed {
                outputs,
                result: proto::Result::Success as i32,
            },
        );
        task.needs.insert(
            "audit".into(),
            proto::TaskNeed {
                outputs: Default::default(),
                result: proto::Result::Skipped as i32,
            },
        );
        let mut runner = runner();
        runner.envs.insert("FROM_RUNNER".into(), "yes".into());
        let summary = summarize(&task).unwrap();
        let spec = job_spec(&task, &summary, &runner);
        assert_eq!(spec.job_id, "build");
        assert_eq!(spec.workflow_file, "ci.yml");
        assert_eq!(spec.github["token"], "task-token");
        assert_eq!(
            spec.github["gitea_default_actions_url"],
            "https://mirror.test"
        );
        assert_eq!(spec.github["event"]["number"], serde_json::json!(7));
        assert_eq!(spec.extra_env["ACTIONS_RUNTIME_TOKEN"], "jwt");
        assert_eq!(spec.env["FROM_RUNNER"], "yes");
        assert_eq!(spec.vars["V"], "x");
        assert_eq!(spec.secrets["GITHUB_TOKEN"], "task-token");
        let needs: Vec<(&str, Conclusion)> = spec
            .needs
            .iter()
            .map(|(id, need)| (id.as_str(), need.result))
            .collect();
        assert_eq!(
            needs,
            [
                ("audit", Conclusion::Skipped),
                ("prepare", Conclusion::Success)
            ]
        );
        assert_eq!(spec.needs["prepare"].outputs["out"], "1");
        assert_eq!(spec.timeout_cap, Some(Duration::from_secs(3 * 3600)));
        assert_eq!(spec.runner_name, "r1");
        assert!(spec.masks.contains(&"jwt".to_string()));
    }

    #[test]
    fn need_results_use_the_lower_case_words() {
        assert_eq!(need_result_name(proto::Result::Success as i32), "success");
        assert_eq!(
            need_result_name(proto::Result::Cancelled as i32),
            "cancelled"
        );
        assert_eq!(need_result_name(0), "unspecified");
        assert_eq!(need_result_name(99), "unspecified");
    }
}
