//! The actions cache as a task sees it: which URL its job is told (`ACTIONS_CACHE_URL`, by where
//! the job runs), and the task's credential, granted for the task's life and revoked on every way
//! out of it.
//!
//! The credential is the task's runtime token (`ACTIONS_RUNTIME_TOKEN`), which the toolkit sends
//! as its bearer; the grant says whose entries it reads and writes: the repository, the ref, the
//! default branch (from the event payload) and, for pull requests, the base branch.
//! May use: `cache` (the grant vocabulary), `config` (`Secret`, `Platform`). Never: `metrics`,
//! `systemd`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::cache::{
    CacheError, Grant, LocalGrants, MAX_GRANT_LIFETIME, RemoteGrants, TaskGrants as _,
};
use crate::config::{Platform, Secret};

/// Where a runner's grants go: the embedded server's registry, or a shared server's grant
/// endpoint.
#[derive(Debug, Clone)]
pub enum Granter {
    Local(LocalGrants),
    Remote(Arc<RemoteGrants>),
}

impl Granter {
    async fn grant(&self, grant: Grant) -> Result<(), CacheError> {
        match self {
            Granter::Local(grants) => grants.grant(grant).await,
            Granter::Remote(grants) => grants.grant(grant).await,
        }
    }

    async fn revoke(&self, token: &Secret) -> Result<(), CacheError> {
        match self {
            Granter::Local(grants) => grants.revoke(token).await,
            Granter::Remote(grants) => grants.revoke(token).await,
        }
    }
}

/// The cache service the runner hands its jobs: an embedded server or a shared `cache-server`.
#[derive(Clone)]
pub struct CacheAccess {
    /// Where grants go.
    pub grants: Granter,
    /// `ACTIONS_CACHE_URL` for host jobs and Docker jobs on the host's network.
    pub host_url: String,
    /// `ACTIONS_CACHE_URL` for Docker jobs on their own network; `None` when no address their
    /// network reaches is known (they then get no cache, and the runner said why at start).
    pub docker_url: Option<String>,
    /// `cache.v2`: also advertise `ACTIONS_CACHE_SERVICE_V2=true`.
    pub v2: bool,
}

impl fmt::Debug for CacheAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheAccess")
            .field("host_url", &self.host_url)
            .field("docker_url", &self.docker_url)
            .field("v2", &self.v2)
            .finish_non_exhaustive()
    }
}

impl CacheAccess {
    /// The URL a job on `platform` reaches the cache at; `network` is `container.network`.
    pub fn url_for(&self, platform: &Platform, network: Option<&str>) -> Option<&str> {
        match platform {
            Platform::Host => Some(&self.host_url),
            Platform::Docker { .. } if network == Some("host") => Some(&self.host_url),
            Platform::Docker { .. } => self.docker_url.as_deref(),
        }
    }

    /// The variables that advertise the cache to a job reaching it at `url`. `ACTIONS_RESULTS_URL`
    /// stays on Gitea: artifacts never go through the runner.
    pub fn job_env(&self, url: &str) -> Vec<(String, String)> {
        let mut env = vec![("ACTIONS_CACHE_URL".to_owned(), url.to_owned())];
        if self.v2 {
            env.push(("ACTIONS_CACHE_SERVICE_V2".to_owned(), "true".to_owned()));
        }
        env
    }

    /// Grants `grant` now; the returned guard revokes it when released, or when dropped on a way
    /// out that never reached the release (a panic, a cancelled future).
    pub async fn grant(&self, grant: Grant) -> TaskGrant {
        let token = grant.token.clone();
        if let Err(error) = self.grants.grant(grant).await {
            tracing::warn!(error = %error, "cannot grant the task's cache credential; its cache steps will miss");
            return TaskGrant {
                grants: self.grants.clone(),
                token: None,
            };
        }
        TaskGrant {
            grants: self.grants.clone(),
            token: Some(token),
        }
    }
}

/// A task's live cache credential. [`TaskGrant::release`] revokes it; a drop without it (a panic
/// or a cancelled task future) revokes it in the background, so no path out leaves it live.
pub struct TaskGrant {
    grants: Granter,
    token: Option<Secret>,
}

impl TaskGrant {
    /// Revokes the credential and waits for the revocation.
    pub async fn release(mut self) {
        if let Some(token) = self.token.take()
            && let Err(error) = self.grants.revoke(&token).await
        {
            tracing::warn!(error = %error, "cannot revoke the task's cache credential");
        }
    }
}

impl Drop for TaskGrant {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let grants = self.grants.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = grants.revoke(&token).await {
                        tracing::warn!(error = %error, "cannot revoke the task's cache credential");
                    }
                });
            }
            Err(_) => tracing::warn!("no runtime left to revoke a task's cache credential"),
        }
    }
}

/// Added to a task's own limit (its timeout and cancel grace) to make its grant's lifetime: the
/// revoke after the job's last step normally comes first; the lapse is for a revoke that never
/// comes (the runner crashed or lost the shared server).
pub const GRANT_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The lifetime of the grant of a task that may run for `task_limit`: that plus
/// [`GRANT_MARGIN`], at most [`MAX_GRANT_LIFETIME`].
pub fn grant_lifetime(task_limit: Duration) -> Duration {
    task_limit
        .saturating_add(GRANT_MARGIN)
        .min(MAX_GRANT_LIFETIME)
}

/// The grant for a task's runtime token, from its `github` context: `repository`, `ref`, the
/// event payload's `repository.default_branch` and, for pull requests, `base_ref`; it lapses
/// after `lifetime`. `None` when the task has no token, repository or ref (nothing could then
/// be scoped).
pub fn grant_for(
    github: &Map<String, Json>,
    runtime_token: &str,
    lifetime: Duration,
) -> Option<Grant> {
    let text = |key: &str| {
        github
            .get(key)
            .and_then(Json::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let repository = text("repository")?;
    let ref_name = text("ref")?;
    if runtime_token.is_empty() {
        return None;
    }
    let default_branch = github
        .get("event")
        .and_then(|event| event.get("repository"))
        .and_then(|repository| repository.get("default_branch"))
        .and_then(Json::as_str)
        .filter(|branch| !branch.is_empty())
        .map(str::to_owned);
    Some(Grant {
        token: Secret::new(runtime_token),
        repository,
        ref_name,
        default_branch,
        base_ref: text("base_ref"),
        lifetime,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn github(value: Json) -> Map<String, Json> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn access(docker_url: Option<&str>, v2: bool) -> CacheAccess {
        let grants = RemoteGrants::new("http://cache.internal:8088/", Secret::new("s")).unwrap();
        CacheAccess {
            grants: Granter::Remote(Arc::new(grants)),
            host_url: "http://127.0.0.1:4000/".into(),
            docker_url: docker_url.map(str::to_owned),
            v2,
        }
    }

    #[test]
    fn docker_jobs_on_the_host_network_get_the_host_url_and_others_the_docker_url() {
        let docker = Platform::Docker {
            image: "debian:12".into(),
        };
        let with = access(Some("http://10.0.0.2:4000/"), true);
        assert_eq!(
            with.url_for(&Platform::Host, None),
            Some("http://127.0.0.1:4000/")
        );
        assert_eq!(
            with.url_for(&docker, Some("host")),
            Some("http://127.0.0.1:4000/")
        );
        assert_eq!(with.url_for(&docker, None), Some("http://10.0.0.2:4000/"));
        assert_eq!(
            with.url_for(&docker, Some("bridge")),
            Some("http://10.0.0.2:4000/")
        );
        let without = access(None, true);
        assert_eq!(without.url_for(&docker, None), None);
        assert_eq!(
            without.url_for(&docker, Some("host")),
            Some("http://127.0.0.1:4000/")
        );
    }

    #[test]
    fn the_v2_flag_is_advertised_only_with_cache_v2_and_never_a_results_url() {
        let names = |v2: bool| -> Vec<String> {
            access(None, v2)
                .job_env("http://127.0.0.1:4000/")
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        };
        assert_eq!(names(false), ["ACTIONS_CACHE_URL"]);
        assert_eq!(
            names(true),
            ["ACTIONS_CACHE_URL", "ACTIONS_CACHE_SERVICE_V2"]
        );
    }

    #[test]
    fn a_pull_request_grant_carries_the_ref_the_default_branch_and_the_base() {
        let context = github(json!({
            "repository": "owner/repo",
            "ref": "refs/pull/7/head",
            "base_ref": "main",
            "event": { "repository": { "default_branch": "trunk" } },
        }));
        let grant = grant_for(&context, "runtime-jwt", Duration::from_secs(60)).unwrap();
        assert_eq!(grant.token.expose(), "runtime-jwt");
        assert_eq!(grant.repository, "owner/repo");
        assert_eq!(grant.ref_name, "refs/pull/7/head");
        assert_eq!(grant.default_branch.as_deref(), Some("trunk"));
        assert_eq!(grant.base_ref.as_deref(), Some("main"));
        assert_eq!(grant.lifetime, Duration::from_secs(60));
    }

    #[test]
    fn a_grant_outlives_the_task_limit_by_the_margin_and_never_the_cap() {
        let three_hours = Duration::from_secs(3 * 3600);
        assert_eq!(grant_lifetime(three_hours), three_hours + GRANT_MARGIN);
        assert_eq!(grant_lifetime(Duration::MAX), MAX_GRANT_LIFETIME);
    }

    #[test]
    fn a_push_has_no_base_and_no_token_or_repository_means_no_grant() {
        let context =
            github(json!({ "repository": "owner/repo", "ref": "refs/heads/dev", "base_ref": "" }));
        let hour = Duration::from_secs(3600);
        let grant = grant_for(&context, "jwt", hour).unwrap();
        assert_eq!(grant.base_ref, None);
        assert_eq!(grant.default_branch, None);
        assert!(grant_for(&context, "", hour).is_none());
        assert!(grant_for(&github(json!({ "ref": "refs/heads/dev" })), "jwt", hour).is_none());
        assert!(grant_for(&github(json!({ "repository": "owner/repo" })), "jwt", hour).is_none());
    }
}
