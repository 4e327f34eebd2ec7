//! The v1 REST API as `@actions/cache` speaks it (`cacheHttpClient.ts`): lookup, reserve, chunk
//! upload, commit, the debug listing, and the download of `archiveLocation`.
//!
//! Status codes the toolkit relies on: lookup 200 or 204 (miss); reserve 201 with `cacheId` (a
//! 409 or any other refusal makes it skip the save quietly, a 400 shows the message as a
//! warning); chunks and commit 204.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::super::CacheServer;
use super::super::error::CacheError;
use super::super::signing::Purpose;
use super::super::stats::{Op, Outcome};
use super::super::upload::Upload;
use super::{
    access, authorised_json, blob_response, finish, json_body, parse_id, signature_of, signed_url,
};

/// Where `archiveLocation` points, below the base URL.
pub(super) const ARTIFACTS_PATH: &str = "_apis/artifactcache/artifacts/";

#[derive(Deserialize)]
pub(super) struct LookupQuery {
    keys: Option<String>,
    version: Option<String>,
}

/// `GET _apis/artifactcache/cache?keys=k1,k2&version=V`.
pub(super) async fn lookup(
    State(server): State<Arc<CacheServer>>,
    headers: HeaderMap,
    Query(query): Query<LookupQuery>,
) -> Response {
    let result = async {
        let access = access(&server, &headers)?;
        let keys: Vec<String> = query
            .keys
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect();
        let version = query
            .version
            .ok_or_else(|| CacheError::Invalid("the lookup needs a version".into()))?;
        match server.lookup(&access, &keys, &version).await? {
            None => Ok((Outcome::Miss, StatusCode::NO_CONTENT.into_response())),
            Some(hit) => {
                let url = signed_url(&server, &headers, ARTIFACTS_PATH, Purpose::Download, hit.id)?;
                let body = serde_json::json!({
                    "result": "hit",
                    "archiveLocation": url,
                    "cacheKey": hit.key,
                    "cacheVersion": version,
                });
                Ok((Outcome::Hit, Json(body).into_response()))
            }
        }
    }
    .await;
    finish(&server, Op::Lookup, result)
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    key: Option<String>,
}

/// `GET _apis/artifactcache/caches?key=K`: the toolkit's debug listing after a miss; the
/// entries of this repository with that key, in the scopes the task may read.
pub(super) async fn list(
    State(server): State<Arc<CacheServer>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let result = async {
        let access = access(&server, &headers)?;
        let key = query.key.unwrap_or_default();
        let entries = server.list(Some(&access.repository)).await?;
        let caches: Vec<serde_json::Value> = entries
            .into_iter()
            .filter(|entry| entry.key == key && access.read_scopes.contains(&entry.scope))
            .map(|entry| {
                serde_json::json!({
                    "cacheKey": entry.key,
                    "cacheVersion": entry.version,
                    "scope": entry.scope,
                    "creationTime": humantime::format_rfc3339_seconds(entry.created).to_string(),
                })
            })
            .collect();
        let body = serde_json::json!({ "totalCount": caches.len(), "artifactCaches": caches });
        Ok((Outcome::Ok, Json(body).into_response()))
    }
    .await;
    finish(&server, Op::Lookup, result)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReserveBody {
    key: String,
    version: String,
    #[serde(default)]
    cache_size: Option<u64>,
}

/// `POST _apis/artifactcache/caches` `{key, version, cacheSize}` → 201 `{cacheId}`.
pub(super) async fn reserve(
    State(server): State<Arc<CacheServer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let (access, request): (_, ReserveBody) = authorised_json(&server, &headers, body).await?;
        let id = server
            .reserve(&access, &request.key, &request.version, request.cache_size)
            .await?;
        let body = Json(serde_json::json!({ "cacheId": id }));
        Ok((Outcome::Ok, (StatusCode::CREATED, body).into_response()))
    }
    .await;
    finish(&server, Op::Reserve, result)
}

/// `PATCH _apis/artifactcache/caches/:id` with `Content-Range: bytes a-b/*`.
pub(super) async fn upload_chunk(
    State(server): State<Arc<CacheServer>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let result = async {
        let upload = own_upload(&server, &headers, &id)?;
        let range = headers
            .get(header::CONTENT_RANGE)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| CacheError::Invalid("a chunk needs a Content-Range header".into()))?;
        let (start, end) = parse_content_range(range)?;
        server
            .write_range(&upload, start, end, body.into_data_stream())
            .await?;
        Ok((Outcome::Ok, StatusCode::NO_CONTENT.into_response()))
    }
    .await;
    finish(&server, Op::Upload, result)
}

#[derive(Deserialize)]
struct CommitBody {
    size: u64,
}

/// `POST _apis/artifactcache/caches/:id` `{size}`.
pub(super) async fn commit(
    State(server): State<Arc<CacheServer>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let result = async {
        let upload = own_upload(&server, &headers, &id)?;
        let request: CommitBody = json_body(body).await?;
        server.commit(upload, request.size).await?;
        Ok((Outcome::Ok, StatusCode::NO_CONTENT.into_response()))
    }
    .await;
    finish(&server, Op::Commit, result)
}

/// `GET _apis/artifactcache/artifacts/:id?exp=..&sig=..`: the blob, to a signed URL only (the
/// toolkit sends no credential here).
pub(super) async fn download(
    State(server): State<Arc<CacheServer>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let result = async {
        let id = parse_id(&id)?;
        server
            .signer
            .verify(Purpose::Download, id, &signature_of(&query)?)?;
        Ok((Outcome::Ok, blob_response(&server, id, &headers).await?))
    }
    .await;
    finish(&server, Op::Download, result)
}

/// The upload in flight under the path id `raw_id`, if it belongs to the task's repository.
fn own_upload(
    server: &CacheServer,
    headers: &HeaderMap,
    raw_id: &str,
) -> Result<Arc<Upload>, CacheError> {
    let access = access(server, headers)?;
    server
        .uploads
        .get(parse_id(raw_id)?, Some(&access.repository))
}

/// `bytes a-b/*` (or `/total`) as `a..b+1`.
fn parse_content_range(value: &str) -> Result<(u64, u64), CacheError> {
    let invalid = || {
        CacheError::Invalid(format!(
            "Content-Range {value:?} is not `bytes <first>-<last>/*` with first <= last"
        ))
    };
    let spec = value.trim().strip_prefix("bytes ").ok_or_else(invalid)?;
    let (range, _total) = spec.split_once('/').ok_or_else(invalid)?;
    let (first, last) = range.split_once('-').ok_or_else(invalid)?;
    let first: u64 = first.parse().map_err(|_| invalid())?;
    let last: u64 = last.parse().map_err(|_| invalid())?;
    if first > last {
        return Err(invalid());
    }
    Ok((first, last.checked_add(1).ok_or_else(invalid)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_inclusive_and_refuse_negative_or_reversed_bounds() {
        assert_eq!(parse_content_range("bytes 0-199/*").unwrap(), (0, 200));
        assert_eq!(parse_content_range("bytes 5-5/10").unwrap(), (5, 6));
        for bad in [
            "bytes -1-5/*",
            "bytes 9-3/*",
            "bytes 0-/*",
            "0-5/*",
            "bytes 0-5",
        ] {
            assert!(parse_content_range(bad).is_err(), "{bad}");
        }
    }
}
