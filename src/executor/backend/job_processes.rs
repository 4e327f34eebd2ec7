//! Host job processes found by a mark in their environment, so the runner can kill what a job
//! leaves behind even where process groups cannot: `setsid`, a double fork, a daemonizing tool
//! all leave the step's group, but they inherit the environment. Every host process a job starts
//! gets `ACT_RUNNER_JOB=<scope>.<job>` ([`JOB_MARK_VAR`]); at the end of the job the runner kills
//! every process of its own user whose initial environment (`/proc/<pid>/environ`) carries the
//! job's mark, and at daemon start every process carrying its scope, which is what the jobs of a
//! daemon that crashed left running. Jenkins' ProcessTreeKiller works the same way.
//!
//! A process that clears its environment before it execs escapes the mark: under systemd each host
//! job also runs in a cgroup of its own ([`JobCgroupTree`], which the daemon gives the scope),
//! which nothing escapes.
//! May use: nix (signals), sha2/hex/rand (names). Never another room.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

/// The variable that marks a job's processes.
pub const JOB_MARK_VAR: &str = "ACT_RUNNER_JOB";
/// At most this much of a process's environment is read (the kernel caps it near `ARG_MAX`, and
/// a job's environment is rarely past a few KiB).
const MAX_ENVIRON_BYTES: u64 = 1024 * 1024;
/// A job forking while it is killed needs another round; a fork bomb must not keep the sweep
/// going for ever.
const MAX_ROUNDS: usize = 20;

/// A cgroup of its own for each host job (under systemd, `systemd::job_cgroups`, through the
/// daemon): every process of the job runs in it, and at the end of the job all of it is killed.
pub trait JobCgroupTree: fmt::Debug + Send + Sync {
    /// Creates the cgroup of `job` and returns its directory. Blocking.
    fn create(&self, job: &str) -> std::io::Result<PathBuf>;
    /// The program and first arguments that run a command (appended after them) inside `cgroup`
    /// from its first instruction.
    fn launcher(&self, cgroup: &Path) -> Vec<OsString>;
    /// Kills everything in the cgroup of `job`, reports what the job used and removes the cgroup.
    /// Blocking, bounded.
    fn finish(&self, job: &str);
}

/// The processes of one runner: a daemon kills all of its scope at start, as its jobs' leftovers.
#[derive(Debug, Clone)]
pub struct ProcessScope {
    id: String,
    /// Where each job of the scope gets a cgroup of its own (the daemon under systemd).
    cgroups: Option<Arc<dyn JobCgroupTree>>,
}

/// Scopes are the same when they mark processes the same: a daemon has one cgroup tree.
impl PartialEq for ProcessScope {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for ProcessScope {}

impl ProcessScope {
    /// The scope of the runner registered in `runner_file`: the same across restarts, and
    /// different for every runner file (one daemon holds a runner file's lock at a time).
    pub fn for_runner_file(runner_file: &Path) -> ProcessScope {
        let path = std::fs::canonicalize(runner_file).unwrap_or_else(|_| runner_file.to_owned());
        let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
        ProcessScope {
            id: hex::encode(&digest[..8]),
            cgroups: None,
        }
    }

    /// A scope of its own (`act_runner exec`, tests): nothing outside this process shares it.
    pub fn private() -> ProcessScope {
        ProcessScope {
            id: format!("{:016x}", rand::random::<u64>()),
            cgroups: None,
        }
    }

    /// This scope, each job of it in a cgroup of its own under `cgroups`.
    pub fn with_cgroups(self, cgroups: Arc<dyn JobCgroupTree>) -> ProcessScope {
        ProcessScope {
            cgroups: Some(cgroups),
            ..self
        }
    }

    /// Where the jobs of this scope get their cgroups, if they do.
    pub fn cgroups(&self) -> Option<&Arc<dyn JobCgroupTree>> {
        self.cgroups.as_ref()
    }

    /// The mark of one job in this scope (`job` has no `.`).
    pub fn job_mark(&self, job: &str) -> String {
        format!("{}.{job}", self.id)
    }

    /// Kills every process a job of this scope started (SIGKILL); returns how many.
    pub fn kill_all(&self) -> usize {
        let prefix = format!("{}.", self.id);
        kill_marked(|mark| mark.starts_with(&prefix))
    }

    /// [`Self::kill_all`] at a daemon's start, while no other daemon of the runner lives (it holds
    /// the runner file's lock): what it finds, the jobs of one that crashed or was killed left.
    pub fn kill_leftovers(&self) {
        let killed = self.kill_all();
        if killed > 0 {
            tracing::warn!(
                processes = killed,
                "killed the host job processes an earlier run of this runner left running"
            );
        }
    }
}

/// Kills (SIGKILL) every process of this user, other than this one, whose environment carries
/// exactly `mark`; returns how many. Blocking: it reads `/proc`.
pub fn kill_job(mark: &str) -> usize {
    kill_marked(|found| found == mark)
}

fn kill_marked(wanted: impl Fn(&str) -> bool) -> usize {
    let mut killed = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let found: Vec<i32> = marked_processes(&wanted)
            .into_iter()
            .filter(|pid| !killed.contains(pid))
            .collect();
        if found.is_empty() {
            break;
        }
        for pid in found {
            // Gone already (ESRCH) counts too: it was there.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            killed.insert(pid);
        }
    }
    killed.len()
}

/// Processes (not yet dead: a zombie's environment reads empty) whose mark `wanted` accepts.
fn marked_processes(wanted: &impl Fn(&str) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let uid = nix::unistd::geteuid().as_raw();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            if pid == me || entry.metadata().ok()?.uid() != uid {
                return None;
            }
            let mark = read_mark(&entry.path())?;
            wanted(&mark).then(|| i32::try_from(pid).ok())?
        })
        .collect()
}

fn read_mark(process_dir: &Path) -> Option<String> {
    let file = std::fs::File::open(process_dir.join("environ")).ok()?;
    let mut environ = Vec::new();
    file.take(MAX_ENVIRON_BYTES)
        .read_to_end(&mut environ)
        .ok()?;
    let prefix = format!("{JOB_MARK_VAR}=");
    environ
        .split(|byte| *byte == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn spawn_marked(mark: &str) -> std::process::Child {
        Command::new("sleep")
            .arg("600")
            .env(JOB_MARK_VAR, mark)
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    #[test]
    fn a_job_kill_takes_its_mark_only_and_a_scope_kill_all_of_the_scope() {
        let scope = ProcessScope::private();
        let mut first = spawn_marked(&scope.job_mark("a"));
        let mut second = spawn_marked(&scope.job_mark("b"));
        let mut other = spawn_marked(&ProcessScope::private().job_mark("a"));

        assert_eq!(kill_job(&scope.job_mark("a")), 1);
        assert!(first.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(
            second.try_wait().unwrap().is_none(),
            "another job's process was killed"
        );

        assert_eq!(scope.kill_all(), 1);
        assert!(second.wait().unwrap().code().is_none());
        assert!(
            other.try_wait().unwrap().is_none(),
            "another scope's process was killed"
        );
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn the_scope_of_a_runner_file_is_stable_and_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join(".runner");
        std::fs::write(&one, "{}").unwrap();
        assert_eq!(
            ProcessScope::for_runner_file(&one),
            ProcessScope::for_runner_file(&dir.path().join("./.runner"))
        );
        assert_ne!(
            ProcessScope::for_runner_file(&one),
            ProcessScope::for_runner_file(&dir.path().join(".runner-b"))
        );
    }
}
