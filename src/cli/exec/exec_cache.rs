//! `exec`'s actions cache: the embedded server on the default `cache.dir`, and one credential for
//! the whole run, as upstream's `exec` does: `ACTIONS_RUNTIME_TOKEN` from `--env` or the process
//! environment, else one minted here; granted for the workflow's repository and ref, revoked when
//! the run ends. Unless `--env` names one, `ACTIONS_RESULTS_URL` is the cache server too.

use crate::cache::MAX_GRANT_LIFETIME;
use crate::cli::cache_service::{self, RunningCache};
use crate::config::{Config, LoadEnv, Platform};
use crate::daemon::cache_access::{TaskGrant, grant_for};
use crate::executor::JobSpec;

/// The cache of one `exec` run; [`ExecCache::stop`] revokes the credential and stops the server.
pub struct ExecCache {
    running: RunningCache,
    grant: Option<TaskGrant>,
}

impl ExecCache {
    pub async fn stop(self) {
        if let Some(grant) = self.grant {
            grant.release().await;
        }
        self.running.stop().await;
    }
}

/// Starts the cache and tells `base` (every job's template) about it. `docker`: the engine is
/// in use; `on_host`: jobs run on the host (`-self-hosted`) unless they name a `container:`.
pub async fn start(
    base: &mut JobSpec,
    docker: bool,
    on_host: bool,
    network: Option<&str>,
) -> Option<ExecCache> {
    let config = Config::defaults(&LoadEnv::from_process());
    let running = cache_service::start(
        &config.cache,
        cache_service::settings(&config),
        docker,
        network,
    )
    .await?;
    let platform = if on_host {
        Platform::Host
    } else {
        Platform::Docker {
            image: String::new(),
        }
    };
    let url = running.access.url_for(&platform, network)?.to_owned();
    let token = runtime_token(base);
    base.extra_env
        .insert("ACTIONS_RUNTIME_TOKEN".into(), token.clone());
    base.extra_env.extend(running.access.job_env(&url));
    // Without Gitea, nothing else serves the results API: the toolkit's v2 branch (taken when
    // GITHUB_SERVER_URL is github.com, as it is for `exec`) finds the cache there.
    if running.access.v2 && !base.env.contains_key("ACTIONS_RESULTS_URL") {
        base.extra_env.insert(
            "ACTIONS_RESULTS_URL".into(),
            url.trim_end_matches('/').to_owned(),
        );
    }
    base.masks.push(token.clone());
    // The server lives in this process and ends with the run: the longest lifetime is safe.
    let grant = match grant_for(&base.github, &token, MAX_GRANT_LIFETIME) {
        Some(grant) => Some(running.access.grant(grant).await),
        None => None,
    };
    Some(ExecCache { running, grant })
}

/// `ACTIONS_RUNTIME_TOKEN` from `--env`, else the process environment, else 16 random bytes in hex.
fn runtime_token(base: &JobSpec) -> String {
    base.env
        .get("ACTIONS_RUNTIME_TOKEN")
        .cloned()
        .or_else(|| std::env::var("ACTIONS_RUNTIME_TOKEN").ok())
        .filter(|token| !token.is_empty())
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()))
}
