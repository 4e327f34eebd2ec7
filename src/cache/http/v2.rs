//! The v2 API: the twirp `CacheService` in its JSON form, as the toolkit's `cacheTwirpClient`
//! sends it (proto field names: `key`, `version`, `restore_keys`, `size_bytes`; int64 as a
//! string), and the signed upload URL that takes the Azure-blob style PUTs of the toolkit's
//! `BlockBlobClient.uploadFile`: one PUT of the whole blob, or `comp=block&blockid=..` PUTs
//! followed by a `comp=blocklist` PUT. Downloads use the v1 signed artifact URL (the toolkit
//! fetches any non-Azure URL with a plain GET).
//!
//! Twirp errors are `{"code", "msg"}` with the matching status; a refused reservation
//! (`already_exists`) makes the toolkit skip the save quietly, like v1's 409.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::super::CacheServer;
use super::super::error::CacheError;
use super::super::signing::Purpose;
use super::super::stats::{Op, Outcome};
use super::v1::ARTIFACTS_PATH;
use super::{
    authorised_json, bounded_body, content_length, count, finish, parse_id, public_message,
    signature_of, signed_url, status_of,
};

/// Where `signed_upload_url` points, below the base URL.
const UPLOADS_PATH: &str = "_act_runner/uploads/";
/// Largest block list body (the XML of up to 50 000 block ids).
const MAX_BLOCK_LIST_BYTES: usize = 8 << 20;

/// An int64 as proto3 JSON writes it: a string, though a number is accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Int64 {
    Text(String),
    Number(u64),
}

impl Int64 {
    fn value(&self) -> Result<u64, CacheError> {
        match self {
            Int64::Number(value) => Ok(*value),
            Int64::Text(text) => text
                .parse()
                .map_err(|_| CacheError::Invalid(format!("size_bytes {text:?} is not a size"))),
        }
    }
}

#[derive(Deserialize)]
struct CreateRequest {
    #[serde(default)]
    key: String,
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
struct FinalizeRequest {
    #[serde(default)]
    key: String,
    #[serde(default)]
    version: String,
    #[serde(alias = "sizeBytes")]
    size_bytes: Option<Int64>,
}

#[derive(Deserialize)]
struct DownloadUrlRequest {
    #[serde(default)]
    key: String,
    #[serde(default, alias = "restoreKeys")]
    restore_keys: Vec<String>,
    #[serde(default)]
    version: String,
}

/// `POST twirp/github.actions.results.api.v1.CacheService/{method}`.
pub(super) async fn twirp(
    State(server): State<Arc<CacheServer>>,
    headers: HeaderMap,
    Path(method): Path<String>,
    body: Body,
) -> Response {
    let (op, result) = match method.as_str() {
        "CreateCacheEntry" => (Op::Reserve, create(&server, &headers, body).await),
        "FinalizeCacheEntryUpload" => (Op::Commit, finalize(&server, &headers, body).await),
        "GetCacheEntryDownloadURL" => (Op::Lookup, download_url(&server, &headers, body).await),
        _ => {
            return twirp_error(
                StatusCode::NOT_FOUND,
                "bad_route",
                "no such CacheService method",
            );
        }
    };
    count(&server, op, result).unwrap_or_else(|err| {
        let status = status_of(&err);
        let code = match status {
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::FORBIDDEN => "permission_denied",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "already_exists",
            status if status.is_server_error() => "internal",
            _ => "invalid_argument",
        };
        twirp_error(status, code, &public_message(&err, status))
    })
}

fn twirp_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "code": code, "msg": message })),
    )
        .into_response()
}

async fn create(
    server: &CacheServer,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Outcome, Response), CacheError> {
    let (access, request): (_, CreateRequest) = authorised_json(server, headers, body).await?;
    match server
        .reserve(&access, &request.key, &request.version, None)
        .await
    {
        Ok(id) => {
            let url = signed_url(server, headers, UPLOADS_PATH, Purpose::Upload, id)?;
            let body = serde_json::json!({ "ok": true, "signed_upload_url": url });
            Ok((Outcome::Ok, Json(body).into_response()))
        }
        // The toolkit shows `message` as a warning: the place for a limit the entry breaks.
        Err(CacheError::TooLarge(message)) => {
            let body = serde_json::json!({ "ok": false, "message": message });
            Ok((Outcome::Rejected, Json(body).into_response()))
        }
        Err(err) => Err(err),
    }
}

async fn finalize(
    server: &CacheServer,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Outcome, Response), CacheError> {
    let (access, request): (_, FinalizeRequest) = authorised_json(server, headers, body).await?;
    let size = request
        .size_bytes
        .ok_or_else(|| CacheError::Invalid("FinalizeCacheEntryUpload needs size_bytes".into()))?
        .value()?;
    let name = super::super::index::EntryName {
        repository: access.repository.clone(),
        scope: access.write_scope.clone(),
        key: request.key,
        version: request.version,
    };
    let upload = server.uploads.find(&name).ok_or_else(|| {
        CacheError::Invalid(format!(
            "no upload of cache key {:?} (version {}) is in flight for this ref",
            name.key, name.version
        ))
    })?;
    let id = server.commit(upload, size).await?;
    let body = serde_json::json!({ "ok": true, "entry_id": id.to_string() });
    Ok((Outcome::Ok, Json(body).into_response()))
}

async fn download_url(
    server: &CacheServer,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Outcome, Response), CacheError> {
    let (access, request): (_, DownloadUrlRequest) = authorised_json(server, headers, body).await?;
    let mut keys = vec![request.key];
    keys.extend(request.restore_keys);
    match server.lookup(&access, &keys, &request.version).await? {
        None => {
            let body = serde_json::json!({ "ok": false });
            Ok((Outcome::Miss, Json(body).into_response()))
        }
        Some(hit) => {
            let url = signed_url(server, headers, ARTIFACTS_PATH, Purpose::Download, hit.id)?;
            let body = serde_json::json!({
                "ok": true,
                "signed_download_url": url,
                "matched_key": hit.key,
            });
            Ok((Outcome::Hit, Json(body).into_response()))
        }
    }
}

/// `PUT _act_runner/uploads/:id?exp=..&sig=..[&comp=block&blockid=..|&comp=blocklist]`.
pub(super) async fn upload(
    State(server): State<Arc<CacheServer>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    let result = async {
        let id = parse_id(&id)?;
        server
            .signer
            .verify(Purpose::Upload, id, &signature_of(&query)?)?;
        let upload = server.uploads.get(id, None)?;
        match query.get("comp").map(String::as_str) {
            None => {
                let len = content_length(&headers)?;
                server
                    .write_range(&upload, 0, len, body.into_data_stream())
                    .await?;
            }
            Some("block") => {
                let block_id = query
                    .get("blockid")
                    .ok_or_else(|| CacheError::Invalid("comp=block needs a blockid".into()))?;
                let len = content_length(&headers)?;
                server
                    .stage_block(&upload, block_id, len, body.into_data_stream())
                    .await?;
            }
            Some("blocklist") => {
                let xml = bounded_body(body, MAX_BLOCK_LIST_BYTES, "block list").await?;
                let xml = std::str::from_utf8(&xml)
                    .map_err(|_| CacheError::Invalid("the block list is not UTF-8".into()))?;
                server.assemble_blocks(&upload, &block_list(xml)).await?;
            }
            Some(other) => {
                return Err(CacheError::Invalid(format!(
                    "comp={other} is not supported; use comp=block or comp=blocklist"
                )));
            }
        }
        Ok((Outcome::Ok, StatusCode::CREATED.into_response()))
    }
    .await;
    finish(&server, Op::Upload, result)
}

/// The block ids of a `<BlockList>`, in order: the text of each `<Latest>`, `<Committed>` or
/// `<Uncommitted>` element (all mean "this staged block" here).
fn block_list(xml: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('>') else { break };
        let tag = &rest[..close];
        rest = &rest[close + 1..];
        if !matches!(tag, "Latest" | "Committed" | "Uncommitted") {
            continue;
        }
        let Some(end) = rest.find("</") else { break };
        ids.push(rest[..end].trim().to_owned());
        rest = &rest[end..];
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_list_yields_its_ids_in_order() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><BlockList><Latest>AAAA</Latest><Uncommitted>BBBB</Uncommitted><Latest> CCCC </Latest></BlockList>"#;
        assert_eq!(block_list(xml), ["AAAA", "BBBB", "CCCC"]);
        assert!(block_list("<BlockList></BlockList>").is_empty());
        assert!(block_list("<Latest>unclosed").is_empty());
    }
}
