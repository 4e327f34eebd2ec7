//! Who may use the cache: each task's credential (its `ACTIONS_RUNTIME_TOKEN`) is granted for the
//! task's life and revoked at its end. A grant also carries a lifetime (the task's timeout plus a
//! margin) after which it lapses by itself, so a credential never outlives its task even when the
//! revoke is lost (the runner crashed). A grant names the repository and ref the task runs for;
//! [`Access`] turns it into GitHub's rule against cache poisoning: restore from the own ref, else
//! the pull request's base branch, else the default branch; write only to the own ref.
//!
//! [`Grants`] is the registry the server checks; [`TaskGrants`] is how a runner registers tasks,
//! in process ([`LocalGrants`]) or with a shared `cache-server` (`super::remote::RemoteGrants`).
//! Tokens are kept only as SHA-256 digests, so the registry holds nothing a dump could replay.
//!
//! May use: `crate::config::Secret`, `sha2`, std.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Secret;

use super::error::CacheError;

/// Live grants at most, bounding what a misbehaving client of the grant endpoint can pin.
pub const MAX_GRANTS: usize = 100_000;
/// Longest repository, ref or branch name accepted in a grant.
const MAX_NAME_BYTES: usize = 1024;
/// Longest lifetime a grant may ask for; a runner whose task timeout is longer asks for this.
pub const MAX_GRANT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// One task's credential and what it may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The task's `ACTIONS_RUNTIME_TOKEN`, which the toolkit sends as `Authorization: Bearer`.
    pub token: Secret,
    /// `owner/name`; entries never cross repositories.
    pub repository: String,
    /// The ref the task runs for, e.g. `refs/heads/feature` or `refs/pull/3/merge`.
    pub ref_name: String,
    /// The repository's default branch (`main` or `refs/heads/main`).
    pub default_branch: Option<String>,
    /// For pull requests, the base branch (`github.base_ref`, e.g. `main`).
    pub base_ref: Option<String>,
    /// How long the grant holds unless revoked first (at most [`MAX_GRANT_LIFETIME`]).
    pub lifetime: Duration,
}

/// Registers and revokes task credentials with a cache server.
pub trait TaskGrants: Send + Sync {
    /// Lets `grant.token` use the cache until it is revoked.
    fn grant(&self, grant: Grant) -> impl Future<Output = Result<(), CacheError>> + Send;
    /// Ends a token's access; revoking an unknown token is not an error.
    fn revoke(&self, token: &Secret) -> impl Future<Output = Result<(), CacheError>> + Send;
}

/// What a live credential may do, resolved once at grant time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub repository: String,
    /// The one scope new entries are written to: the task's own ref.
    pub write_scope: String,
    /// Scopes restores search, in order: own ref, base branch, default branch (no repeats).
    pub read_scopes: Vec<String>,
}

impl Access {
    fn from_grant(grant: &Grant) -> Access {
        let mut read_scopes = vec![grant.ref_name.clone()];
        for branch in [&grant.base_ref, &grant.default_branch]
            .into_iter()
            .flatten()
        {
            let scope = branch_ref(branch);
            if !read_scopes.contains(&scope) {
                read_scopes.push(scope);
            }
        }
        Access {
            repository: grant.repository.clone(),
            write_scope: grant.ref_name.clone(),
            read_scopes,
        }
    }
}

/// `main` → `refs/heads/main`; a full ref stays as it is.
fn branch_ref(branch: &str) -> String {
    if branch.starts_with("refs/") {
        branch.to_owned()
    } else {
        format!("refs/heads/{branch}")
    }
}

/// The registry of live credentials. Cheap to clone; clones share the registry.
#[derive(Clone, Default)]
pub struct Grants {
    // A std mutex: every critical section is a hash-map operation, never held across an await.
    live: Arc<Mutex<HashMap<[u8; 32], Live>>>,
}

/// A registered credential: what it may do, and until when.
#[derive(Debug)]
struct Live {
    access: Access,
    /// Tokio's clock, so tests can pause and advance it.
    expires: tokio::time::Instant,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants").field("live", &self.len()).finish()
    }
}

impl Grants {
    /// Registers `grant` for its lifetime, replacing an earlier grant of the same token.
    pub fn insert(&self, grant: &Grant) -> Result<(), CacheError> {
        check_grant(grant)?;
        let now = tokio::time::Instant::now();
        let mut live = crate::sync::lock(&self.live);
        let digest = digest(&grant.token);
        if live.len() >= MAX_GRANTS && !live.contains_key(&digest) {
            live.retain(|_, entry| entry.expires > now);
        }
        if live.len() >= MAX_GRANTS && !live.contains_key(&digest) {
            return Err(CacheError::Invalid(format!(
                "too many live cache grants (at most {MAX_GRANTS})"
            )));
        }
        let entry = Live {
            access: Access::from_grant(grant),
            expires: now + grant.lifetime,
        };
        live.insert(digest, entry);
        Ok(())
    }

    /// Forgets the grants whose lifetime is over; returns how many went.
    pub fn remove_expired(&self) -> usize {
        let now = tokio::time::Instant::now();
        let mut live = crate::sync::lock(&self.live);
        let before = live.len();
        live.retain(|_, entry| entry.expires > now);
        before - live.len()
    }

    /// Ends `token`'s access.
    pub fn remove(&self, token: &Secret) {
        let mut live = crate::sync::lock(&self.live);
        live.remove(&digest(token));
    }

    /// What the bearer of `token` may do, or [`CacheError::Unauthorized`].
    pub fn check(&self, token: &str) -> Result<Access, CacheError> {
        if token.is_empty() {
            return Err(CacheError::Unauthorized);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut live = crate::sync::lock(&self.live);
        match live.get(&digest) {
            Some(entry) if entry.expires > tokio::time::Instant::now() => Ok(entry.access.clone()),
            Some(_) => {
                live.remove(&digest);
                Err(CacheError::Unauthorized)
            }
            None => Err(CacheError::Unauthorized),
        }
    }

    /// Registered grants (a lapsed one counts until a check or [`Grants::remove_expired`]).
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.live).len()
    }

    /// True when no grant is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn digest(token: &Secret) -> [u8; 32] {
    Sha256::digest(token.expose().as_bytes()).into()
}

fn check_grant(grant: &Grant) -> Result<(), CacheError> {
    if grant.token.expose().len() < 8 || grant.token.expose().len() > 8192 {
        return Err(CacheError::Invalid(
            "a cache grant's token must be 8 to 8192 bytes long".into(),
        ));
    }
    if grant.lifetime.is_zero() || grant.lifetime > MAX_GRANT_LIFETIME {
        return Err(CacheError::Invalid(format!(
            "a cache grant's lifetime must be more than 0 s and at most {} s",
            MAX_GRANT_LIFETIME.as_secs()
        )));
    }
    let names = [
        ("repository", Some(&grant.repository)),
        ("ref_name", Some(&grant.ref_name)),
        ("default_branch", grant.default_branch.as_ref()),
        ("base_ref", grant.base_ref.as_ref()),
    ];
    for (field, value) in names {
        let Some(value) = value else { continue };
        if value.is_empty() || value.len() > MAX_NAME_BYTES || value.chars().any(char::is_control) {
            return Err(CacheError::Invalid(format!(
                "a cache grant's {field} must be 1 to {MAX_NAME_BYTES} bytes without control characters"
            )));
        }
    }
    Ok(())
}

/// [`TaskGrants`] for the server embedded in this process.
#[derive(Debug, Clone)]
pub struct LocalGrants {
    grants: Grants,
}

impl LocalGrants {
    /// Registers tasks with `grants` (from [`super::CacheServer::grants`]).
    pub fn new(grants: &Grants) -> LocalGrants {
        LocalGrants {
            grants: grants.clone(),
        }
    }
}

impl TaskGrants for LocalGrants {
    fn grant(&self, grant: Grant) -> impl Future<Output = Result<(), CacheError>> + Send {
        let result = self.grants.insert(&grant);
        async move { result }
    }

    fn revoke(&self, token: &Secret) -> impl Future<Output = Result<(), CacheError>> + Send {
        self.grants.remove(token);
        async { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(token: &str, ref_name: &str) -> Grant {
        Grant {
            token: Secret::new(token),
            repository: "owner/repo".into(),
            ref_name: ref_name.into(),
            default_branch: Some("main".into()),
            base_ref: None,
            lifetime: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_feature_branch_reads_its_own_ref_then_the_default_branch_and_writes_its_own() {
        let access = Access::from_grant(&grant("token-123", "refs/heads/feature"));
        assert_eq!(access.write_scope, "refs/heads/feature");
        assert_eq!(
            access.read_scopes,
            ["refs/heads/feature", "refs/heads/main"]
        );
    }

    #[test]
    fn a_pull_request_reads_its_base_branch_before_the_default_branch() {
        let mut pr = grant("token-123", "refs/pull/4/merge");
        pr.base_ref = Some("release".into());
        let access = Access::from_grant(&pr);
        assert_eq!(
            access.read_scopes,
            ["refs/pull/4/merge", "refs/heads/release", "refs/heads/main"]
        );
        let on_main = Access::from_grant(&grant("token-123", "refs/heads/main"));
        assert_eq!(on_main.read_scopes, ["refs/heads/main"]);
    }

    #[tokio::test]
    async fn a_revoked_or_unknown_token_is_unauthorized() {
        let grants = Grants::default();
        let local = LocalGrants::new(&grants);
        local
            .grant(grant("token-123", "refs/heads/main"))
            .await
            .unwrap();
        assert!(grants.check("token-123").is_ok());
        assert!(matches!(
            grants.check("token-124"),
            Err(CacheError::Unauthorized)
        ));
        assert!(matches!(grants.check(""), Err(CacheError::Unauthorized)));
        local.revoke(&Secret::new("token-123")).await.unwrap();
        assert!(matches!(
            grants.check("token-123"),
            Err(CacheError::Unauthorized)
        ));
        assert!(grants.is_empty());
    }

    #[test]
    fn a_grant_with_a_control_character_is_refused() {
        let grants = Grants::default();
        let mut bad = grant("token-123", "refs/heads/x\u{0}y");
        assert!(grants.insert(&bad).is_err());
        bad.ref_name = "refs/heads/ok".into();
        bad.token = Secret::new("short");
        assert!(grants.insert(&bad).is_err());
        for lifetime in [Duration::ZERO, MAX_GRANT_LIFETIME + Duration::from_secs(1)] {
            let mut bad = grant("token-123", "refs/heads/ok");
            bad.lifetime = lifetime;
            assert!(grants.insert(&bad).is_err(), "{lifetime:?}");
        }
        assert!(grants.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_lapses_after_its_lifetime_without_a_revoke() {
        let grants = Grants::default();
        let mut short = grant("token-short", "refs/heads/main");
        short.lifetime = Duration::from_secs(600);
        grants.insert(&short).unwrap();
        grants
            .insert(&grant("token-long", "refs/heads/main"))
            .unwrap();
        tokio::time::advance(Duration::from_secs(599)).await;
        assert!(grants.check("token-short").is_ok());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(
            grants.check("token-short"),
            Err(CacheError::Unauthorized)
        ));
        // The lapsed grant is gone, not merely refused; the longer one still holds.
        assert_eq!(grants.len(), 1);
        assert!(grants.check("token-long").is_ok());
        tokio::time::advance(Duration::from_secs(3000)).await;
        assert_eq!(grants.remove_expired(), 1);
        assert!(grants.is_empty());
    }
}
