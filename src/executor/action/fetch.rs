//! Remote actions on the runner's host: the `git` CLI fetches `owner/repo@ref` into the action
//! cache, one directory per `sha256(uses)` (as Gitea's act does). A full commit SHA already checked
//! out there is used without touching the network; a branch or tag is fetched again (depth 1 unless
//! `shallow` is off) and checked out only when it moved. Short SHAs are refused with upstream's
//! error. A URL on the trusted git server is fetched with the job's token and TLS policy, which
//! reach `git` through its environment ([`super::trust`]); no token is ever added to a URL, and
//! messages carry the URL without credentials.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::reference::{RemoteAction, redact_url};
use super::trust;
use crate::executor::spec::ActionSettings;

/// Bound on one `git` command (a fetch of a large action over a slow link included).
const GIT_LIMIT: Duration = Duration::from_secs(10 * 60);

/// One fetch per cache directory at a time (two jobs of one runner using the same action).
static DIR_LOCKS: Mutex<Option<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = Mutex::new(None);

pub(super) fn dir_lock(dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
    crate::sync::lock(&DIR_LOCKS)
        .get_or_insert_with(HashMap::new)
        .entry(dir.to_path_buf())
        .or_default()
        .clone()
}

/// Whether `git_ref` is a full commit SHA (SHA-1 or SHA-256).
pub fn is_full_sha(git_ref: &str) -> bool {
    (git_ref.len() == 40 || git_ref.len() == 64) && git_ref.bytes().all(|b| b.is_ascii_hexdigit())
}

fn may_be_short_sha(git_ref: &str) -> bool {
    (4..40).contains(&git_ref.len()) && git_ref.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The cache directory of `uses`: `<cache_dir>/<sha256(uses)>`.
pub fn cache_path(settings: &ActionSettings, uses: &str) -> PathBuf {
    settings
        .cache_dir
        .join(hex::encode(Sha256::digest(uses.as_bytes())))
}

/// Fetches the action into the cache (or finds it there) and returns the checkout's root.
pub async fn fetch(
    uses: &str,
    action: &RemoteAction,
    settings: &ActionSettings,
    cancel: &CancellationToken,
) -> Result<PathBuf, String> {
    let dir = cache_path(settings, uses);
    let lock = dir_lock(&dir);
    let _held = lock.lock().await;
    let git = Git {
        url: action.url.clone(),
        config_env: trust::git_config_env(
            settings.trusted_server.as_ref(),
            &action.url,
            trust::inherited_config_count(),
        ),
        cancel: cancel.clone(),
    };
    let cached = dir.join(".git").is_dir();
    if cached {
        let head = git.run(&dir, &["rev-parse", "HEAD"]).await.ok();
        let head = head.as_deref().map(str::trim);
        if settings.offline || (is_full_sha(&action.git_ref) && head == Some(&action.git_ref)) {
            return Ok(dir);
        }
    } else if settings.offline {
        return Err(format!(
            "{uses} is not in the action cache {} and offline mode forbids fetching it",
            settings.cache_dir.display()
        ));
    }
    tokio::fs::create_dir_all(&settings.cache_dir)
        .await
        .map_err(|error| format!("cannot create {}: {error}", settings.cache_dir.display()))?;
    let work = if cached {
        dir.clone()
    } else {
        let temp = settings.cache_dir.join(format!(
            ".{}.tmp-{:08x}",
            dir.file_name().unwrap_or_default().to_string_lossy(),
            rand::random::<u32>()
        ));
        git.run(
            &settings.cache_dir,
            &["init", "-q", &temp.to_string_lossy()],
        )
        .await?;
        temp
    };
    let fetched = checkout(&git, &work, uses, action, settings.shallow).await;
    if cached {
        return fetched.map(|()| dir);
    }
    match fetched {
        Ok(()) => {
            tokio::fs::rename(&work, &dir).await.map_err(|error| {
                format!(
                    "cannot move the checkout of {uses} into {}: {error}",
                    dir.display()
                )
            })?;
            Ok(dir)
        }
        Err(message) => {
            let _ = tokio::fs::remove_dir_all(&work).await;
            Err(message)
        }
    }
}

/// Fetches `action.git_ref` into the repository at `work` and checks it out (detached, clean).
async fn checkout(
    git: &Git,
    work: &Path,
    uses: &str,
    action: &RemoteAction,
    shallow: bool,
) -> Result<(), String> {
    let git_ref = action.git_ref.as_str();
    let mut args = vec!["fetch", "--quiet", "--no-tags"];
    if shallow {
        args.extend(["--depth", "1"]);
    }
    args.extend([action.url.as_str(), git_ref]);
    let target = match git.run(work, &args).await {
        Ok(_) => String::from("FETCH_HEAD"),
        Err(first_error) => {
            // A short SHA, or a full SHA the server will not serve by itself: fetch everything.
            if !(may_be_short_sha(git_ref) || is_full_sha(git_ref)) {
                return Err(first_error);
            }
            git.run(
                work,
                &[
                    "fetch",
                    "--quiet",
                    action.url.as_str(),
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
            )
            .await?;
            let spec = format!("{git_ref}^{{commit}}");
            let resolved = git
                .run(work, &["rev-parse", "--verify", "--quiet", &spec])
                .await
                .map_err(|_| first_error.clone())?;
            let resolved = resolved.trim().to_string();
            if may_be_short_sha(git_ref) && resolved.starts_with(&git_ref.to_ascii_lowercase()) {
                return Err(format!(
                    "Unable to resolve action `{uses}`, the provided ref `{git_ref}` is the shortened version of a commit SHA, which is not supported. Please use the full commit SHA `{resolved}` instead"
                ));
            }
            if !is_full_sha(git_ref) {
                return Err(first_error);
            }
            resolved
        }
    };
    git.run(
        work,
        &["checkout", "--quiet", "--force", "--detach", &target],
    )
    .await?;
    git.run(work, &["clean", "-ffdxq"]).await?;
    Ok(())
}

/// Runs `git` for one action URL: no prompts, bounded, killed on cancellation.
struct Git {
    url: String,
    /// `GIT_CONFIG_*` carrying the token and TLS policy when `url` is on the trusted server.
    config_env: Vec<(String, String)>,
    cancel: CancellationToken,
}

impl Git {
    async fn run(&self, dir: &Path, args: &[&str]) -> Result<String, String> {
        let mut command = tokio::process::Command::new("git");
        command
            .args(args)
            .current_dir(dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .envs(self.config_env.iter().map(|(key, value)| (key, value)))
            // A `GIT_TRACE_CURL` the runner was started with must not print the header.
            .env("GIT_TRACE_REDACT", "1")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let shown = redact_url(&self.url);
        let what = format!("git {}", args.first().copied().unwrap_or_default());
        let output = tokio::select! {
            output = tokio::time::timeout(GIT_LIMIT, command.output()) => output,
            () = self.cancel.cancelled() => return Err(format!("{what} {shown}: cancelled")),
        };
        let output = match output {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => return Err(format!("cannot run {what} for {shown}: {error}")),
            Err(_) => {
                return Err(format!(
                    "{what} {shown}: no result within {}",
                    humantime::format_duration(GIT_LIMIT)
                ));
            }
        };
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&output.stderr).replace(&self.url, &shown);
        Err(format!("{what} {shown} failed: {}", stderr.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_shapes() {
        assert!(is_full_sha(&"a".repeat(40)));
        assert!(!is_full_sha("v4"));
        assert!(may_be_short_sha("b136eb8"));
        assert!(!may_be_short_sha("main"));
        assert!(!may_be_short_sha("abc"));
    }

    #[test]
    fn cache_path_is_the_sha256_of_uses() {
        let mut settings = ActionSettings::local_default();
        settings.cache_dir = PathBuf::from("/cache");
        assert_eq!(
            cache_path(&settings, "actions/checkout@v4"),
            PathBuf::from("/cache").join(hex::encode(Sha256::digest(b"actions/checkout@v4")))
        );
    }
}
