//! Opt-in task admission (`health_check:`, upstream's `CanAcceptTask`): before each fetch, the
//! free space under `host.workdir_parent` must reach `min_free_disk_space_mb`, and the
//! `script`, when set, must exit 0 within `timeout` (its verdict is reused for `interval`).
//! While a job runs the last verdict stands, so checks never compete with jobs. "Not ready"
//! makes the poller skip the fetch and back off; it never cancels a running job.
//!
//! May use: `config`, std, tokio, nix (statvfs), tracing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::HealthCheckConfig;

/// The last verdicts, reused while jobs run (all of them) and for `interval` (the script's).
#[derive(Debug, Default)]
pub struct HealthCheck {
    last: Mutex<Option<Result<(), String>>>,
    last_script: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl HealthCheck {
    pub fn new() -> HealthCheck {
        HealthCheck::default()
    }

    /// `Ok` when a task may be fetched, else why not.
    pub async fn check(
        &self,
        health_check: &HealthCheckConfig,
        workdir_parent: &Path,
        n_running: usize,
    ) -> Result<(), String> {
        if !health_check.enabled {
            return Ok(());
        }
        if n_running > 0 {
            return lock(&self.last).clone().unwrap_or(Ok(()));
        }
        let verdict = match free_disk_mib(workdir_parent).await {
            Ok((_, free_mib)) if free_mib >= health_check.min_free_disk_space_mb => {
                self.script_verdict(health_check).await
            }
            Ok((root, free_mib)) => Err(format!(
                "low disk space on {}: {free_mib} MiB available, {} MiB required",
                root.display(),
                health_check.min_free_disk_space_mb
            )),
            Err(reason) => Err(reason),
        };
        *lock(&self.last) = Some(verdict.clone());
        verdict
    }

    async fn script_verdict(&self, health_check: &HealthCheckConfig) -> Result<(), String> {
        let Some(script) = &health_check.script else {
            return Ok(());
        };
        if let Some((at, verdict)) = lock(&self.last_script).as_ref()
            && at.elapsed() < health_check.interval
        {
            return verdict.clone();
        }
        let verdict = run_script(script, health_check.timeout).await;
        *lock(&self.last_script) = Some((Instant::now(), verdict.clone()));
        verdict
    }
}

/// Free MiB for unprivileged users on the file system of `path`, or of its nearest existing
/// ancestor (the work directory may not exist yet).
async fn free_disk_mib(path: &Path) -> Result<(PathBuf, u64), String> {
    let mut root = path.to_owned();
    while !root.exists() {
        match root.parent() {
            Some(parent) => root = parent.to_owned(),
            None => break,
        }
    }
    let probed = root.clone();
    let stats = tokio::task::spawn_blocking(move || nix::sys::statvfs::statvfs(&probed))
        .await
        .map_err(|error| {
            format!(
                "cannot determine free disk space for {}: {error}",
                root.display()
            )
        })?
        .map_err(|error| {
            format!(
                "cannot determine free disk space for {}: {error}",
                root.display()
            )
        })?;
    let free_bytes = stats
        .blocks_available()
        .saturating_mul(stats.fragment_size());
    Ok((root, free_bytes / (1024 * 1024)))
}

async fn run_script(script: &Path, timeout: Duration) -> Result<(), String> {
    let mut command = tokio::process::Command::new(script);
    command
        .env("GITEA_RUNNER_HEALTH_CHECK", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| format!("runner health check failed: start: {error}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Err(_) => Err(format!(
            "runner health check failed: timed out after {timeout:?}"
        )),
        Ok(Err(error)) => Err(format!("runner health check failed: {error}")),
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!(
            "runner health check failed: exited with code {}",
            status.code().unwrap_or(-1)
        )),
    }
}

use crate::sync::lock;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(min_free_disk_space_mb: u64, script: Option<PathBuf>) -> HealthCheckConfig {
        HealthCheckConfig {
            enabled: true,
            min_free_disk_space_mb,
            script,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn low_disk_space_names_the_volume_and_both_figures() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not/yet/created");
        let health = HealthCheck::new();
        let reason = health
            .check(&config(u64::MAX / 2, None), &missing, 0)
            .await
            .unwrap_err();
        assert!(
            reason.starts_with(&format!("low disk space on {}: ", dir.path().display())),
            "{reason}"
        );
        assert!(reason.ends_with(&format!("MiB available, {} MiB required", u64::MAX / 2)));
        // While a job runs the last verdict stands, even with a config that would pass.
        assert_eq!(
            health.check(&config(0, None), &missing, 1).await,
            Err(reason)
        );
        assert_eq!(health.check(&config(0, None), &missing, 0).await, Ok(()));
    }

    #[tokio::test]
    async fn the_script_must_exit_zero_and_its_verdict_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let failing = config(0, Some("/bin/false".into()));
        let health = HealthCheck::new();
        assert_eq!(
            health.check(&failing, dir.path(), 0).await,
            Err("runner health check failed: exited with code 1".to_owned())
        );
        // Within `interval` the cached verdict is reused, whatever the script would say now.
        let passing = config(0, Some("/bin/true".into()));
        assert!(health.check(&passing, dir.path(), 0).await.is_err());
        assert_eq!(
            HealthCheck::new().check(&passing, dir.path(), 0).await,
            Ok(())
        );
        let disabled = HealthCheckConfig {
            enabled: false,
            ..failing
        };
        assert_eq!(
            HealthCheck::new().check(&disabled, dir.path(), 0).await,
            Ok(())
        );
    }
}
