//! What a real Gitea serves jobs besides the runner API, on the Connect port:
//! - the artifact v4 service (`routers/api/actions/artifactsv4.go`): twirp JSON
//!   `POST /twirp/github.actions.results.api.v1.ArtifactService/{CreateArtifact,FinalizeArtifact,
//!   ListArtifacts,GetSignedArtifactURL,DeleteArtifact}` behind the runtime token (an HS256 JWT
//!   this fake signs; a task that is not running is refused), run-scoped as Gitea scopes it (the
//!   token's `RunID` must be the request's run; a run sees only its own artifacts), and the
//!   signed, unauthenticated blob URLs `PUT …/UploadArtifact?…&comp=block|blocklist` (Azure block
//!   blob style) and `GET …/DownloadArtifact?…` (HMAC over endpoint, expiry, name, task, artifact);
//! - the job summary endpoint of Gitea ≥ 1.27 (`job_summary.go`):
//!   `PUT /api/actions_pipeline/_apis/pipelines/workflows/{run}/jobs/{job}/steps/{idx}/summary`,
//!   answering 404 unless the fake declares the `job-summary` capability (an older Gitea has no
//!   such route), and hanging instead when [`FakeGitea::set_summaries_hang`] says so.
//!
//! Tests read what arrived with [`FakeGitea::step_summaries`] and [`FakeGitea::artifacts`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::state::TaskStatus;
use super::{FakeGitea, Shared};

const SERVICE: &str = "/twirp/github.actions.results.api.v1.ArtifactService";
/// Signs runtime tokens and blob URLs (Gitea's general token signing secret).
const SECRET: &[u8] = b"fake-gitea-signing-secret";
/// Blocks and summaries larger than this are refused (the test clients stay far below).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One PUT of a step summary, as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryPut {
    pub task_id: i64,
    pub run_id: i64,
    pub job_id: i64,
    pub step_idx: i64,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// An artifact as the server keeps it.
#[derive(Debug, Clone, Default)]
pub struct StoredArtifact {
    pub id: i64,
    pub run_id: i64,
    pub name: String,
    blocks: BTreeMap<String, Vec<u8>>,
    block_list: Vec<String>,
    /// The zip, once finalized.
    pub content: Option<Vec<u8>>,
    pub deleted: bool,
}

/// The artifact and summary side of the fake's state.
#[derive(Debug, Default)]
pub struct ResultsState {
    artifacts: Vec<StoredArtifact>,
    summaries: Vec<SummaryPut>,
    summaries_hang: bool,
    /// Requests to the summary route, answered or not.
    summary_requests: usize,
}

/// A Gitea-style runtime token for `claims`.
pub fn sign_runtime_token(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(
        SECRET,
        format!("{header}.{payload}").as_bytes(),
    ));
    format!("{header}.{payload}.{signature}")
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|byte| byte ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|byte| byte ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The claims a valid runtime token of a running task carries.
#[derive(Debug, Clone, Copy)]
struct Claims {
    task_id: i64,
    run_id: i64,
    job_id: i64,
}

impl FakeGitea {
    /// Every step summary PUT that was stored, in arrival order.
    pub fn step_summaries(&self) -> Vec<SummaryPut> {
        self.shared.lock_results().summaries.clone()
    }

    /// Requests to the summary route, whatever the answer.
    pub fn summary_requests(&self) -> usize {
        self.shared.lock_results().summary_requests
    }

    /// The summary endpoint never answers (an unreachable server, for the runner's bound).
    pub fn set_summaries_hang(&self, hang: bool) {
        self.shared.lock_results().summaries_hang = hang;
    }

    /// The finalized, not deleted artifacts of `run_id`: `(name, zip bytes)`.
    pub fn artifacts(&self, run_id: i64) -> Vec<(String, Vec<u8>)> {
        self.shared
            .lock_results()
            .artifacts
            .iter()
            .filter(|artifact| artifact.run_id == run_id && !artifact.deleted)
            .filter_map(|artifact| Some((artifact.name.clone(), artifact.content.clone()?)))
            .collect()
    }
}

/// The routes, to merge into the Connect router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(&format!("{SERVICE}/UploadArtifact"), put(upload))
        .route(&format!("{SERVICE}/DownloadArtifact"), get(download))
        .route(&format!("{SERVICE}/{{method}}"), post(twirp))
        .route(
            "/api/actions_pipeline/_apis/pipelines/workflows/{run_id}/jobs/{job_id}/steps/{step_index}/summary",
            put(summary),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// A refusal: the status and Gitea's message.
struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        refuse(self.0, self.1)
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// The Bearer runtime token, verified, of a task that is running.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<Claims, Refused> {
    let unauthorized = || Refused(StatusCode::UNAUTHORIZED, "Bad authorization token");
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let mut parts = token.split('.');
    let (Some(head), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized());
    };
    let expected =
        URL_SAFE_NO_PAD.encode(hmac_sha256(SECRET, format!("{head}.{payload}").as_bytes()));
    if signature != expected {
        return Err(unauthorized());
    }
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(unauthorized)?;
    let number = |key: &str| {
        claims
            .get(key)
            .and_then(Value::as_i64)
            .ok_or_else(unauthorized)
    };
    let claims = Claims {
        task_id: number("TaskID")?,
        run_id: number("RunID")?,
        job_id: number("JobID")?,
    };
    let running = shared
        .lock_state()
        .tasks
        .get(&claims.task_id)
        .is_some_and(|task| matches!(task.status, TaskStatus::Running | TaskStatus::Cancelling));
    if !running {
        return Err(Refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error runner api getting task: task is not running",
        ));
    }
    Ok(claims)
}

/// A JSON field by its proto name or its lowerCamelCase JSON name (protojson reads both).
fn field<'a>(body: &'a Value, proto_name: &str) -> Option<&'a Value> {
    body.get(proto_name).or_else(|| {
        let mut camel = String::new();
        let mut upper = false;
        for c in proto_name.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                camel.extend(c.to_uppercase());
                upper = false;
            } else {
                camel.push(c);
            }
        }
        body.get(camel.as_str())
    })
}

fn text_field(body: &Value, proto_name: &str) -> String {
    match field(body, proto_name) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => String::new(),
    }
}

fn json_reply(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        value.to_string(),
    )
        .into_response()
}

async fn twirp(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let claims = match authorize(&shared, &headers) {
        Ok(claims) => claims,
        Err(refused) => return refused.into_response(),
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error decode request body",
        );
    };
    // validateRunIDV4: the request's run must be the token's.
    if text_field(&request, "workflow_run_backend_id") != claims.run_id.to_string() {
        return refuse(StatusCode::BAD_REQUEST, "run-id does not match");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let name = text_field(&request, "name");
    let mut results = shared.lock_results();
    let find = |results: &ResultsState, name: &str| {
        results.artifacts.iter().position(|artifact| {
            artifact.run_id == claims.run_id && artifact.name == name && !artifact.deleted
        })
    };
    match method.as_str() {
        "CreateArtifact" => {
            if name.is_empty()
                || name.contains(['\\', '/', '"', ':', '<', '>', '|', '*', '?', '\r', '\n'])
            {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "Error checking artifact name contains invalid character",
                );
            }
            let id = results.artifacts.len() as i64 + 1;
            match find(&results, &name) {
                Some(position) => {
                    // Gitea reuses the row of the same name and run, emptied.
                    let artifact = &mut results.artifacts[position];
                    artifact.blocks.clear();
                    artifact.block_list.clear();
                    artifact.content = None;
                }
                None => results.artifacts.push(StoredArtifact {
                    id,
                    run_id: claims.run_id,
                    name: name.clone(),
                    ..StoredArtifact::default()
                }),
            }
            let position = find(&results, &name).unwrap_or_default();
            let artifact_id = results.artifacts[position].id;
            let url = signed_url(&host, "UploadArtifact", &name, claims.task_id, artifact_id);
            json_reply(json!({"ok": true, "signedUploadUrl": url}))
        }
        "FinalizeArtifact" => {
            let Some(position) = find(&results, &name) else {
                return refuse(StatusCode::NOT_FOUND, "Error artifact not found");
            };
            let artifact = &mut results.artifacts[position];
            let mut content = Vec::new();
            for block_id in &artifact.block_list {
                let Some(block) = artifact.blocks.get(block_id) else {
                    return refuse(StatusCode::INTERNAL_SERVER_ERROR, "Error merge chunks");
                };
                content.extend_from_slice(block);
            }
            let size = text_field(&request, "size");
            if size != content.len().to_string() {
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error merge chunks: size mismatch",
                );
            }
            let hash = text_field(&request, "hash");
            if !hash.is_empty()
                && hash != format!("sha256:{}", hex::encode(Sha256::digest(&content)))
            {
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error merge chunks: checksum mismatch",
                );
            }
            artifact.content = Some(content);
            json_reply(json!({"ok": true, "artifactId": artifact.id.to_string()}))
        }
        "ListArtifacts" => {
            let name_filter = text_field(&request, "name_filter");
            let id_filter = text_field(&request, "id_filter");
            let listed: Vec<Value> = results
                .artifacts
                .iter()
                .filter(|artifact| artifact.run_id == claims.run_id && !artifact.deleted)
                .filter(|artifact| artifact.content.is_some())
                .filter(|artifact| name_filter.is_empty() || artifact.name == name_filter)
                .filter(|artifact| id_filter.is_empty() || artifact.id.to_string() == id_filter)
                .map(|artifact| {
                    json!({
                        "workflowRunBackendId": claims.run_id.to_string(),
                        "workflowJobRunBackendId": text_field(&request, "workflow_job_run_backend_id"),
                        "databaseId": artifact.id.to_string(),
                        "name": artifact.name,
                        "size": artifact.content.as_ref().map_or(0, Vec::len).to_string(),
                        "createdAt": "2026-01-01T00:00:00Z",
                    })
                })
                .collect();
            json_reply(json!({"artifacts": listed}))
        }
        "GetSignedArtifactURL" => {
            let Some(position) = find(&results, &name)
                .filter(|position| results.artifacts[*position].content.is_some())
            else {
                return refuse(StatusCode::NOT_FOUND, "Error artifact not found");
            };
            let artifact_id = results.artifacts[position].id;
            let url = signed_url(
                &host,
                "DownloadArtifact",
                &name,
                claims.task_id,
                artifact_id,
            );
            json_reply(json!({"signedUrl": url}))
        }
        "DeleteArtifact" => {
            let Some(position) = find(&results, &name) else {
                return refuse(StatusCode::NOT_FOUND, "Error artifact not found");
            };
            results.artifacts[position].deleted = true;
            json_reply(
                json!({"ok": true, "artifactId": results.artifacts[position].id.to_string()}),
            )
        }
        _ => refuse(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

fn signature(endpoint: &str, expires: &str, name: &str, task_id: i64, artifact_id: i64) -> String {
    let message = format!("{endpoint}{expires}{name}{task_id}{artifact_id}");
    URL_SAFE.encode(hmac_sha256(SECRET, message.as_bytes()))
}

fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn signed_url(host: &str, endpoint: &str, name: &str, task_id: i64, artifact_id: i64) -> String {
    let expires = (SystemTime::now() + Duration::from_secs(3600))
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
        .to_string();
    let sig = signature(endpoint, &expires, name, task_id, artifact_id);
    format!(
        "http://{host}{SERVICE}/{endpoint}?sig={}&expires={expires}&artifactName={}&taskID={task_id}&artifactID={artifact_id}",
        query_escape(&sig),
        query_escape(name)
    )
}

/// The signed URL's artifact, if its signature and expiry hold and its task still runs.
fn verify_signed(
    shared: &Shared,
    endpoint: &str,
    query: &BTreeMap<String, String>,
) -> Result<(i64, String), Refused> {
    let get = |key: &str| query.get(key).cloned().unwrap_or_default();
    let (expires, name) = (get("expires"), get("artifactName"));
    let task_id: i64 = get("taskID").parse().unwrap_or_default();
    let artifact_id: i64 = get("artifactID").parse().unwrap_or_default();
    if get("sig") != signature(endpoint, &expires, &name, task_id, artifact_id) {
        return Err(Refused(StatusCode::UNAUTHORIZED, "Error unauthorized"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    if expires.parse::<u64>().map_or(true, |expires| expires < now) {
        return Err(Refused(StatusCode::UNAUTHORIZED, "Error link expired"));
    }
    let running =
        shared.lock_state().tasks.get(&task_id).is_some_and(|task| {
            matches!(task.status, TaskStatus::Running | TaskStatus::Cancelling)
        });
    if !running {
        return Err(Refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error runner api getting task: task is not running",
        ));
    }
    Ok((artifact_id, name))
}

async fn upload(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let (artifact_id, _name) = match verify_signed(&shared, "UploadArtifact", &query) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    let mut results = shared.lock_results();
    let Some(artifact) = results
        .artifacts
        .iter_mut()
        .find(|artifact| artifact.id == artifact_id)
    else {
        return refuse(StatusCode::NOT_FOUND, "Error artifact not found");
    };
    match query.get("comp").map(String::as_str) {
        Some("block") | Some("appendBlock") => {
            let block_id = query.get("blockid").cloned().unwrap_or_default();
            artifact.blocks.insert(block_id, body.to_vec());
            (StatusCode::CREATED, "\"appended\"").into_response()
        }
        Some("blocklist") => {
            let text = String::from_utf8_lossy(&body);
            artifact.block_list = text
                .split("<Latest>")
                .skip(1)
                .filter_map(|rest| rest.split("</Latest>").next())
                .map(str::to_owned)
                .collect();
            (StatusCode::CREATED, "\"created\"").into_response()
        }
        _ => refuse(StatusCode::BAD_REQUEST, "unknown comp"),
    }
}

async fn download(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let (artifact_id, _name) = match verify_signed(&shared, "DownloadArtifact", &query) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    let results = shared.lock_results();
    match results
        .artifacts
        .iter()
        .find(|artifact| artifact.id == artifact_id && !artifact.deleted)
        .and_then(|artifact| artifact.content.clone())
    {
        Some(content) => ([(header::CONTENT_TYPE, "application/zip")], content).into_response(),
        None => refuse(StatusCode::NOT_FOUND, "Error artifact not found"),
    }
}

async fn summary(
    State(shared): State<Arc<Shared>>,
    Path((run_id, job_id, step_index)): Path<(i64, i64, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.lock_results().summary_requests += 1;
    let capable = shared
        .lock_state()
        .declare_capabilities
        .as_deref()
        .is_some_and(|capabilities| {
            capabilities
                .split(',')
                .any(|item| item.trim() == "job-summary")
        });
    if !capable {
        return super::connect::not_found().await;
    }
    if shared.lock_results().summaries_hang {
        tokio::time::sleep(super::faults::HANG_LIMIT).await;
        return refuse(StatusCode::GATEWAY_TIMEOUT, "hung");
    }
    let claims = match authorize(&shared, &headers) {
        Ok(claims) => claims,
        Err(refused) => return refused.into_response(),
    };
    if claims.run_id != run_id {
        return refuse(StatusCode::BAD_REQUEST, "run-id does not match");
    }
    if claims.job_id != job_id {
        return refuse(StatusCode::BAD_REQUEST, "job_id mismatch");
    }
    let n_steps = shared
        .lock_state()
        .tasks
        .get(&claims.task_id)
        .map_or(0, |task| task.steps.len() as i64);
    let step_idx = match step_index.parse::<i64>() {
        Ok(step_idx) if (0..n_steps).contains(&step_idx) => step_idx,
        _ => return refuse(StatusCode::BAD_REQUEST, "step_index mismatch"),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !matches!(
        media_type,
        "" | "application/octet-stream" | "text/markdown"
    ) {
        return refuse(StatusCode::BAD_REQUEST, "invalid summary content type");
    }
    if body.len() > 1024 * 1024 {
        return refuse(StatusCode::BAD_REQUEST, "invalid summary");
    }
    let size = body.len();
    shared.lock_results().summaries.push(SummaryPut {
        task_id: claims.task_id,
        run_id,
        job_id,
        step_idx,
        content_type,
        body: body.to_vec(),
    });
    json_reply(json!({"message": "success", "sizeBytes": size, "runAttempt": 1}))
}
