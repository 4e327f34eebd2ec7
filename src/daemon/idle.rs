//! Idle maintenance (upstream's `OnIdle`): when a poll brings no task and no job runs, at most
//! once per `runner.idle_cleanup_interval` (the first time at once), job directories older than
//! `runner.workdir_cleanup_age` are removed: what a crash or `kill -9` left behind. They are the
//! host-mode job directories (exactly 16 lowercase hex characters under `host.workdir_parent`)
//! and, with `container.bind_workdir`, the tasks' bound workspaces (purely numeric names, task
//! ids, under `/<container.workdir_parent>`). Either key written as `0` switches it off.
//!
//! May use: std, tokio, tracing. The file-system walk runs on the blocking pool, never on the
//! runtime's workers.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// When the last cleanup ran, and whether one runs now.
#[derive(Debug, Default)]
pub struct IdleCleanup {
    last_run: Mutex<Option<Instant>>,
    in_progress: std::sync::Arc<AtomicBool>,
}

impl IdleCleanup {
    pub fn new() -> IdleCleanup {
        IdleCleanup::default()
    }

    /// Starts a cleanup of `roots` on the blocking pool if one is due (`interval` since the last
    /// one, none running); returns whether it started.
    pub fn run_if_due(&self, roots: SweepRoots, age: Duration, interval: Duration) -> bool {
        {
            let mut last_run = crate::sync::lock(&self.last_run);
            if last_run.is_some_and(|at| at.elapsed() < interval) {
                return false;
            }
            if self.in_progress.swap(true, Ordering::AcqRel) {
                return false;
            }
            *last_run = Some(Instant::now());
        }
        let in_progress = std::sync::Arc::clone(&self.in_progress);
        tokio::task::spawn_blocking(move || {
            let now = SystemTime::now();
            for dir in remove_stale_dirs(&roots.host_jobs, JobDirs::Host, age, now) {
                tracing::info!(dir = %dir.display(), "removed a stale host job directory");
            }
            if let Some(bound_tasks) = &roots.bound_tasks {
                for dir in remove_stale_dirs(bound_tasks, JobDirs::BoundTask, age, now) {
                    tracing::info!(dir = %dir.display(), "removed a stale bound task workspace");
                }
            }
            in_progress.store(false, Ordering::Release);
        });
        true
    }
}

/// Where an idle cleanup looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRoots {
    /// `host.workdir_parent`, holding host-mode job directories.
    pub host_jobs: PathBuf,
    /// With `container.bind_workdir`, `/<container.workdir_parent>`, holding one directory per
    /// task.
    pub bound_tasks: Option<PathBuf>,
}

/// Which directories of a root are the runner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobDirs {
    /// `HostBackend`'s: 16 lowercase hex characters.
    Host,
    /// A bound task workspace: the task id, digits only.
    BoundTask,
}

impl JobDirs {
    fn matches(self, name: &str) -> bool {
        match self {
            JobDirs::Host => is_job_dir_name(name),
            JobDirs::BoundTask => {
                !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_digit())
            }
        }
    }
}

/// Removes the `kind` directories under `parent` last modified more than `age` before `now`;
/// returns what it removed. Other names, files, and what cannot be read are left alone.
pub fn remove_stale_dirs(
    parent: &Path,
    kind: JobDirs,
    age: Duration,
    now: SystemTime,
) -> Vec<PathBuf> {
    let Some(cutoff) = now.checked_sub(age) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let is_job_dir = entry
            .file_name()
            .to_str()
            .is_some_and(|name| kind.matches(name));
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        let stale = metadata.modified().is_ok_and(|modified| modified < cutoff);
        if !is_job_dir || !metadata.is_dir() || !stale {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => removed.push(path),
            Err(error) => {
                tracing::warn!(dir = %path.display(), error = %error, "cannot remove a stale job directory");
            }
        }
    }
    removed
}

/// The name `HostBackend` gives a job directory: 16 lowercase hex characters.
fn is_job_dir_name(name: &str) -> bool {
    name.len() == 16
        && name
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn make_dir(parent: &Path, name: &str, modified: SystemTime) -> PathBuf {
        let path = parent.join(name);
        std::fs::create_dir_all(path.join("workspace")).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        file.set_modified(modified).unwrap();
        path
    }

    #[test]
    fn only_stale_job_directories_are_removed() {
        let parent = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let stale = make_dir(parent.path(), "0123456789abcdef", now - 2 * HOUR);
        let fresh = make_dir(parent.path(), "fedcba9876543210", now);
        let other_name = make_dir(parent.path(), "0123456789ABCDEF", now - 2 * HOUR);
        let short = make_dir(parent.path(), "0123456789abcde", now - 2 * HOUR);
        let stale_file = parent.path().join("aaaaaaaaaaaaaaaa");
        std::fs::write(&stale_file, "x").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&stale_file)
            .unwrap()
            .set_modified(now - 2 * HOUR)
            .unwrap();

        assert_eq!(
            remove_stale_dirs(parent.path(), JobDirs::Host, HOUR, now),
            std::slice::from_ref(&stale)
        );
        assert!(!stale.exists());
        for kept in [fresh, other_name, short, stale_file] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
    }

    #[test]
    fn a_missing_parent_removes_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let missing = parent.path().join("missing");
        assert!(remove_stale_dirs(&missing, JobDirs::Host, HOUR, SystemTime::now()).is_empty());
    }

    #[test]
    fn only_stale_task_directories_are_removed_from_bound_workspaces() {
        let parent = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let stale = make_dir(parent.path(), "12345", now - 2 * HOUR);
        let fresh = make_dir(parent.path(), "12346", now);
        let not_a_task = make_dir(parent.path(), "owner", now - 2 * HOUR);
        let host_job = make_dir(parent.path(), "0123456789abcdef", now - 2 * HOUR);
        let mixed = make_dir(parent.path(), "123a", now - 2 * HOUR);

        assert_eq!(
            remove_stale_dirs(parent.path(), JobDirs::BoundTask, HOUR, now),
            std::slice::from_ref(&stale)
        );
        for kept in [fresh, not_a_task, host_job, mixed] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
    }
}
