//! The grant endpoints of a shared `cache-server`: runners (`super::super::RemoteGrants`)
//! register and revoke their tasks' tokens here, authenticated with `cache.external_secret`
//! (compared in constant time). Without a configured secret the endpoints do not exist (404).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::super::CacheServer;
use super::super::error::CacheError;
use super::super::grants::Grant;
use super::super::remote::{GrantBody, RevokeBody};
use super::super::signing::secrets_equal;
use super::super::stats::{Op, Outcome};
use super::{bearer, error_response, finish, json_body};

/// `POST _act_runner/grants` with a [`GrantBody`].
pub(super) async fn grant(
    State(server): State<Arc<CacheServer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    with_secret(&server, &headers, body, |request: GrantBody| {
        server.grants.insert(&Grant::from(request))
    })
    .await
}

/// `DELETE _act_runner/grants` with a [`RevokeBody`].
pub(super) async fn revoke(
    State(server): State<Arc<CacheServer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    with_secret(&server, &headers, body, |request: RevokeBody| {
        server
            .grants
            .remove(&crate::config::Secret::new(request.token));
        Ok(())
    })
    .await
}

/// Applies the JSON request `T` with `apply` once the request carries the external secret;
/// 204 on success.
async fn with_secret<T: DeserializeOwned>(
    server: &CacheServer,
    headers: &HeaderMap,
    body: Body,
    apply: impl FnOnce(T) -> Result<(), CacheError>,
) -> Response {
    if let Some(refused) = check_secret(server, headers) {
        return refused;
    }
    let result = async {
        apply(json_body(body).await?)?;
        Ok((Outcome::Ok, StatusCode::NO_CONTENT.into_response()))
    }
    .await;
    finish(server, Op::Grant, result)
}

/// None when the request carries the external secret; otherwise the response to send.
fn check_secret(server: &CacheServer, headers: &HeaderMap) -> Option<Response> {
    let Some(secret) = &server.settings.external_secret else {
        let err = CacheError::Invalid("this cache server takes no remote grants".into());
        return Some(error_response(&err, StatusCode::NOT_FOUND));
    };
    match bearer(headers) {
        Some(sent) if secrets_equal(sent, secret.expose()) => None,
        _ => {
            server.counters.request(Op::Grant, Outcome::Denied);
            let err = CacheError::Invalid(
                "the grant endpoints need Authorization: Bearer <cache.external_secret>".into(),
            );
            Some(error_response(&err, StatusCode::UNAUTHORIZED))
        }
    }
}
