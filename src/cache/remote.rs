//! [`RemoteGrants`]: registers task credentials with a shared `cache-server` over HTTP, as
//! `POST /_act_runner/grants` (a [`GrantBody`]) and `DELETE /_act_runner/grants` (a
//! [`RevokeBody`]), authenticated with `Authorization: Bearer <cache.external_secret>`. The server
//! side is `http::admin`.
//!
//! May use: `super::grants`, `crate::config::Secret`, reqwest, serde.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Secret;

use super::error::CacheError;
use super::grants::{Grant, TaskGrants};

/// The path of the grant endpoints, below the server's base URL.
pub const GRANTS_PATH: &str = "_act_runner/grants";
/// Every grant call is bounded by this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON of a grant.
#[derive(Serialize, Deserialize)]
pub struct GrantBody {
    pub token: String,
    pub repository: String,
    pub ref_name: String,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub base_ref: Option<String>,
    /// Seconds the grant holds unless revoked first ([`Grant::lifetime`]).
    pub lifetime_secs: u64,
}

/// The JSON of a revocation.
#[derive(Serialize, Deserialize)]
pub struct RevokeBody {
    pub token: String,
}

impl From<GrantBody> for Grant {
    fn from(body: GrantBody) -> Grant {
        Grant {
            token: Secret::new(body.token),
            repository: body.repository,
            ref_name: body.ref_name,
            default_branch: body.default_branch,
            base_ref: body.base_ref,
            lifetime: Duration::from_secs(body.lifetime_secs),
        }
    }
}

/// [`TaskGrants`] against a shared `cache-server`.
#[derive(Clone)]
pub struct RemoteGrants {
    http: reqwest::Client,
    /// `<external_server>_act_runner/grants`.
    url: String,
    secret: Secret,
}

impl std::fmt::Debug for RemoteGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteGrants")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RemoteGrants {
    /// Grants against the server at `base_url` (`cache.external_server`, ending in `/`).
    pub fn new(base_url: &str, secret: Secret) -> Result<RemoteGrants, CacheError> {
        let base = if base_url.ends_with('/') {
            base_url.to_owned()
        } else {
            format!("{base_url}/")
        };
        let url = format!("{base}{GRANTS_PATH}");
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|err| CacheError::Remote {
                url: url.clone(),
                message: err.to_string(),
            })?;
        Ok(RemoteGrants { http, url, secret })
    }

    async fn call(&self, method: reqwest::Method, body: String) -> Result<(), CacheError> {
        let remote = |message: String| CacheError::Remote {
            url: self.url.clone(),
            message,
        };
        let response = self
            .http
            .request(method, &self.url)
            .bearer_auth(self.secret.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            // Without the URL: reqwest's message carries it already, and never the body.
            .map_err(|err| remote(err.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(512).collect();
        Err(remote(format!("answered {status}: {text}")))
    }
}

impl TaskGrants for RemoteGrants {
    async fn grant(&self, grant: Grant) -> Result<(), CacheError> {
        let body = GrantBody {
            token: grant.token.expose().to_owned(),
            repository: grant.repository,
            ref_name: grant.ref_name,
            default_branch: grant.default_branch,
            base_ref: grant.base_ref,
            lifetime_secs: grant.lifetime.as_secs().max(1),
        };
        let json =
            serde_json::to_string(&body).map_err(|err| CacheError::Invalid(err.to_string()))?;
        self.call(reqwest::Method::POST, json).await
    }

    async fn revoke(&self, token: &Secret) -> Result<(), CacheError> {
        let body = RevokeBody {
            token: token.expose().to_owned(),
        };
        let json =
            serde_json::to_string(&body).map_err(|err| CacheError::Invalid(err.to_string()))?;
        self.call(reqwest::Method::DELETE, json).await
    }
}
