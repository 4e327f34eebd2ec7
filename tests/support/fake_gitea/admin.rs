//! The admin API for driving the fake out of process (the `fake-gitea` example, system tests),
//! served on the Connect port when `FakeOptions::admin_api` is set:
//! - `POST /_fake/registration-tokens` (body: the token) → 204
//! - `POST /_fake/tasks?labels=a,b&job=ID&count=N` (body: workflow YAML) → `{"task_id": N}`;
//!   `labels` replaces `runs-on`, `job` picks one job of a multi-job workflow, `count` (1 to
//!   100,000; default 1) queues that many copies with consecutive ids, `task_id` the first
//! - `GET /_fake/task-counts` → `{"waiting": N, "running": N, "success": N, ...}`: tasks per status
//! - `GET /_fake/tasks/{id}` → `{id, status, result, runner_id, stopped_at, steps, outputs,
//!   log_archived, logs: [{time, content}], log_writes: [{rows, at}]}`; `log_writes` lists each
//!   UpdateLog that added rows: the log's length after it and when (Unix seconds)
//! - `POST /_fake/tasks/{id}/cancel`, `POST /_fake/tasks/{id}/reap` → `{"changed": bool}`
//! - `GET /_fake/runners` → `[{id, uuid, name, version, labels, ephemeral, deleted}]`
//! - `GET /_fake/counters` → `{"FetchTask": N, ...}`

use std::collections::HashMap;
use std::sync::Arc;

use act_runner::client::Method;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::Shared;
use super::task_gen::TaskSpec;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_fake/registration-tokens", post(add_registration_token))
        .route("/_fake/tasks", post(enqueue))
        .route("/_fake/task-counts", get(task_counts))
        .route("/_fake/tasks/{id}", get(task))
        .route("/_fake/tasks/{id}/cancel", post(cancel))
        .route("/_fake/tasks/{id}/reap", post(reap))
        .route("/_fake/runners", get(runners))
        .route("/_fake/counters", get(counters))
        .with_state(shared)
}

async fn add_registration_token(State(shared): State<Arc<Shared>>, body: String) -> StatusCode {
    shared
        .lock_state()
        .registration_tokens
        .insert(body.trim().to_owned());
    StatusCode::NO_CONTENT
}

async fn enqueue(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    let spec = match query.get("job") {
        Some(job_id) => TaskSpec::from_workflow_job(&body, job_id),
        None => TaskSpec::from_workflow(&body),
    };
    let mut spec = match spec {
        Ok(spec) => spec,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    if let Some(labels) = query.get("labels") {
        spec.runs_on = labels
            .split(',')
            .map(str::trim)
            .filter(|label| !label.is_empty())
            .map(str::to_owned)
            .collect();
    }
    let count = match query.get("count").map(|count| count.parse::<u32>()) {
        None => 1,
        Some(Ok(count @ 1..=MAX_ENQUEUE_COUNT)) => count,
        Some(_) => {
            let message = format!("count must be 1 to {MAX_ENQUEUE_COUNT}");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    let mut state = shared.lock_state();
    let task_id = state.enqueue(spec.clone());
    for _ in 1..count {
        state.enqueue(spec.clone());
    }
    Json(json!({ "task_id": task_id })).into_response()
}

/// The most tasks one enqueue call queues (a soak benchmark queues thousands at once).
const MAX_ENQUEUE_COUNT: u32 = 100_000;

async fn task_counts(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let state = shared.lock_state();
    let mut counts = serde_json::Map::new();
    for task in state.tasks.values() {
        let status = format!("{:?}", task.status).to_lowercase();
        let n_tasks = counts.get(&status).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(status, json!(n_tasks + 1));
    }
    Json(Value::Object(counts))
}

fn timestamp_json(timestamp: &Option<prost_types::Timestamp>) -> Value {
    match timestamp {
        Some(ts) => json!(ts.to_string()),
        None => Value::Null,
    }
}

async fn task(State(shared): State<Arc<Shared>>, Path(task_id): Path<i64>) -> Response {
    let state = shared.lock_state();
    let Some(task) = state.tasks.get(&task_id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let steps: Vec<Value> = task
        .steps
        .iter()
        .map(|step| {
            json!({
                "id": step.id,
                "result": step.result().as_str_name(),
                "started_at": timestamp_json(&step.started_at),
                "stopped_at": timestamp_json(&step.stopped_at),
                "log_index": step.log_index,
                "log_length": step.log_length,
            })
        })
        .collect();
    let logs: Vec<Value> = task
        .log
        .rows()
        .map(|row| json!({ "time": timestamp_json(&row.time), "content": row.content }))
        .collect();
    let log_writes: Vec<Value> = task
        .log_writes
        .iter()
        .map(|(rows, at)| {
            let at = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            json!({ "rows": rows, "at": at.as_secs_f64() })
        })
        .collect();
    Json(json!({
        "id": task.id,
        "status": format!("{:?}", task.status).to_lowercase(),
        "result": task.status.as_result().as_str_name(),
        "runner_id": task.runner_id,
        "stopped_at": timestamp_json(&task.stopped_at),
        "steps": steps,
        "outputs": task.outputs,
        "log_archived": task.log_archived,
        "logs": logs,
        "log_writes": log_writes,
    }))
    .into_response()
}

async fn cancel(State(shared): State<Arc<Shared>>, Path(task_id): Path<i64>) -> Json<Value> {
    let now = prost_types::Timestamp::from(std::time::SystemTime::now());
    let changed = shared.lock_state().cancel_task(task_id, now);
    Json(json!({ "changed": changed }))
}

async fn reap(State(shared): State<Arc<Shared>>, Path(task_id): Path<i64>) -> Json<Value> {
    let now = prost_types::Timestamp::from(std::time::SystemTime::now());
    let changed = shared.lock_state().reap_task(task_id, now);
    Json(json!({ "changed": changed }))
}

async fn runners(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let state = shared.lock_state();
    let runners: Vec<Value> = state
        .runners
        .iter()
        .map(|runner| {
            json!({
                "id": runner.id, "uuid": runner.uuid, "name": runner.name,
                "version": runner.version, "labels": runner.labels,
                "ephemeral": runner.ephemeral, "deleted": runner.deleted,
            })
        })
        .collect();
    Json(Value::Array(runners))
}

async fn counters(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let counters = act_runner::sync::lock(&shared.counters);
    let map: serde_json::Map<String, Value> = Method::ALL
        .iter()
        .map(|method| {
            let n_calls = counters.get(method).copied().unwrap_or_default();
            (method.as_str().to_owned(), json!(n_calls))
        })
        .collect();
    Json(Value::Object(map))
}
