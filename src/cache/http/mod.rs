//! The cache's HTTP face: the accept loop and the router, with what every endpoint shares
//! (credentials, error bodies, signed URLs, bounded JSON bodies).
//!
//! Endpoints, all below the base URL handed to jobs as `ACTIONS_CACHE_URL`:
//! - `v1`: `_apis/artifactcache/{cache, caches, caches/:id, artifacts/:id}`, the REST API of
//!   `@actions/cache` (Bearer task token; `artifacts/:id` takes a signed URL instead);
//! - `v2`: `twirp/github.actions.results.api.v1.CacheService/*` (Bearer task token) and
//!   `_act_runner/uploads/:id` (signed; Azure-blob style PUTs);
//! - `admin`: `_act_runner/grants` (Bearer `cache.external_secret`).
//!
//! May use: `super` (the engine), axum, hyper, hyper-util, tokio, serde.

mod admin;
mod v1;
mod v2;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::CacheServer;
use super::error::CacheError;
use super::grants::Access;
use super::signing::{Purpose, UrlSignature};
use super::stats::{Op, Outcome};

/// Time to receive a request head; also closes idle keep-alive connections. Short, because a
/// node client keeps its process alive while its keep-alive sockets are open: an action's save
/// step ends only when the server closes them. The toolkit's requests follow each other closely.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Open connections at most; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;
/// On shutdown, how long open requests get to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Largest JSON request body.
const MAX_JSON_BYTES: usize = 64 * 1024;
/// Longest `Host` header used to build a signed URL.
const MAX_HOST_BYTES: usize = 256;

/// Serves `server` on `listener` until `shutdown`, then gives open requests a grace period.
pub(super) async fn serve(
    server: Arc<CacheServer>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), CacheError> {
    let service = router(server);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(256 * 1024);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    let force_close = CancellationToken::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_closed) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "cache server cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let force_close = force_close.clone();
        connections.spawn(async move {
            let _slot = slot;
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = shutdown.cancelled() => {}
            }
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                () = force_close.cancelled() => {}
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            n_connections = connections.len(),
            "cache connections still open after the shutdown grace; dropping them"
        );
        force_close.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), connections.wait()).await;
    }
    Ok(())
}

/// Every route of the server.
pub(super) fn router(server: Arc<CacheServer>) -> Router {
    let mut router = Router::new()
        .route("/_apis/artifactcache/cache", get(v1::lookup))
        .route(
            "/_apis/artifactcache/caches",
            post(v1::reserve).get(v1::list),
        )
        .route(
            "/_apis/artifactcache/caches/{id}",
            patch(v1::upload_chunk).post(v1::commit),
        )
        .route("/_apis/artifactcache/artifacts/{id}", get(v1::download))
        .route(
            "/_act_runner/grants",
            post(admin::grant).delete(admin::revoke),
        );
    if server.settings.v2 {
        router = router
            .route(
                "/twirp/github.actions.results.api.v1.CacheService/{method}",
                post(v2::twirp),
            )
            .route("/_act_runner/uploads/{id}", put(v2::upload));
    }
    router
        .fallback(|| async {
            error_response(
                &CacheError::Invalid("no such cache endpoint".into()),
                StatusCode::NOT_FOUND,
            )
        })
        .with_state(server)
}

/// The HTTP status of an error.
fn status_of(err: &CacheError) -> StatusCode {
    match err {
        CacheError::Unauthorized => StatusCode::UNAUTHORIZED,
        CacheError::BadSignature => StatusCode::FORBIDDEN,
        CacheError::Invalid(_) | CacheError::TooLarge(_) => StatusCode::BAD_REQUEST,
        CacheError::UnknownId(_) => StatusCode::NOT_FOUND,
        CacheError::Conflict(_) => StatusCode::CONFLICT,
        CacheError::Io { .. }
        | CacheError::Index(_)
        | CacheError::Serve(_)
        | CacheError::Remote { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The outcome label of an error.
fn outcome_of(err: &CacheError) -> Outcome {
    match err {
        CacheError::Unauthorized | CacheError::BadSignature => Outcome::Denied,
        err if status_of(err).is_server_error() => Outcome::Error,
        _ => Outcome::Rejected,
    }
}

/// The message a client sees for `err`: server errors are logged and answered without their
/// detail (it names local paths).
fn public_message(err: &CacheError, status: StatusCode) -> String {
    if status.is_server_error() {
        tracing::error!(error = %err, "cache request failed");
        "internal cache server error".to_owned()
    } else {
        err.to_string()
    }
}

/// `{"message": ...}` with `status`, the shape the toolkit's HTTP client reads errors from.
fn error_response(err: &CacheError, status: StatusCode) -> Response {
    let message = public_message(err, status);
    let mut response = (
        status,
        axum::Json(serde_json::json!({ "message": message })),
    )
        .into_response();
    if matches!(err, CacheError::Unauthorized) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// Counts a finished request by its outcome (or its error's).
fn count(
    server: &CacheServer,
    op: Op,
    result: Result<(Outcome, Response), CacheError>,
) -> Result<Response, CacheError> {
    let outcome = match &result {
        Ok((outcome, _)) => *outcome,
        Err(err) => outcome_of(err),
    };
    server.counters.request(op, outcome);
    result.map(|(_, response)| response)
}

/// Counts a finished request and turns its error, if any, into the v1 error response.
fn finish(
    server: &CacheServer,
    op: Op,
    result: Result<(Outcome, Response), CacheError>,
) -> Response {
    count(server, op, result).unwrap_or_else(|err| error_response(&err, status_of(&err)))
}

/// The task's access from `Authorization: Bearer <ACTIONS_RUNTIME_TOKEN>`.
fn access(server: &CacheServer, headers: &HeaderMap) -> Result<Access, CacheError> {
    let token = bearer(headers).ok_or(CacheError::Unauthorized)?;
    server.grants.check(token)
}

/// The Bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The task's access (as [`access`]) and its JSON request body (as [`json_body`]).
async fn authorised_json<T: DeserializeOwned>(
    server: &CacheServer,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Access, T), CacheError> {
    let access = access(server, headers)?;
    Ok((access, json_body(body).await?))
}

/// Reads a JSON body of at most [`MAX_JSON_BYTES`].
async fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, CacheError> {
    let bytes = bounded_body(body, MAX_JSON_BYTES, "JSON body").await?;
    serde_json::from_slice(&bytes)
        .map_err(|err| CacheError::Invalid(format!("invalid JSON body: {err}")))
}

/// Reads a whole request body of at most `limit` bytes; `what` names it in the error.
async fn bounded_body(body: Body, limit: usize, what: &str) -> Result<bytes::Bytes, CacheError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| CacheError::Invalid(format!("the {what} is unreadable or over {limit} bytes")))
}

/// The base URL (ending in `/`) for signed URLs: the configured public URL, or the address the
/// client used to reach this server.
fn base_url(server: &CacheServer, headers: &HeaderMap) -> Result<String, CacheError> {
    if let Some(url) = &server.settings.public_url {
        return Ok(url.clone());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host.len() <= MAX_HOST_BYTES
                && host
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]_".contains(&byte))
        })
        .ok_or_else(|| CacheError::Invalid("the request has no usable Host header".into()))?;
    Ok(format!("http://{host}/"))
}

/// A signed URL for `purpose` on `id` below `path` (`<base><path><id>?exp=..&sig=..`).
fn signed_url(
    server: &CacheServer,
    headers: &HeaderMap,
    path: &str,
    purpose: Purpose,
    id: u64,
) -> Result<String, CacheError> {
    let base = base_url(server, headers)?;
    let signature = server.signer.sign(purpose, id);
    Ok(format!("{base}{path}{id}?{}", signature.query()))
}

/// The `exp` and `sig` of a signed URL's query.
fn signature_of(
    query: &std::collections::HashMap<String, String>,
) -> Result<UrlSignature, CacheError> {
    let expires = query
        .get("exp")
        .and_then(|exp| exp.parse().ok())
        .ok_or(CacheError::BadSignature)?;
    let sig = query.get("sig").ok_or(CacheError::BadSignature)?.clone();
    Ok(UrlSignature { expires, sig })
}

/// A path id, or a clear 400.
fn parse_id(raw: &str) -> Result<u64, CacheError> {
    raw.parse()
        .map_err(|_| CacheError::Invalid(format!("cache id {raw:?} is not a number")))
}

/// The request's `Content-Length`, required for uploads (bodies are checked against it).
fn content_length(headers: &HeaderMap) -> Result<u64, CacheError> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| CacheError::Invalid("the upload needs a Content-Length header".into()))
}

/// Streams bytes `start..end` of a committed blob, honouring a `Range` header (206/416).
async fn blob_response(
    server: &CacheServer,
    id: u64,
    headers: &HeaderMap,
) -> Result<Response, CacheError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let (file, len) = server.open_blob(id).await?;
    let range = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .map(|value| parse_range(value, len));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(None) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response());
        }
    };
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|err| CacheError::io("blob", err))?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(end - start), 1 << 20);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONTENT_LENGTH, (end - start).into());
    response_headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    response_headers.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) =
            header::HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1))
    {
        response_headers.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

/// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range of a `len`-byte blob, as `start..end`;
/// None when it cannot be satisfied (or names several ranges).
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (start, end) = if first.is_empty() {
        let suffix: u64 = last.parse().ok()?;
        (len.saturating_sub(suffix), len)
    } else {
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() {
            len
        } else {
            last.parse::<u64>().ok()?.saturating_add(1).min(len)
        };
        (start, end)
    };
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_http_defines_them() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-2", 100), None);
        assert_eq!(parse_range("bytes=0-1,4-5", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
