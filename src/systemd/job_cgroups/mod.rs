//! A cgroup of its own for each host job, under systemd. The unit delegates its cgroup
//! (`Delegate=yes`); the daemon moves itself into `<service>/daemon` and each host job's processes
//! run in `<service>/jobs/<job>`, which they enter before the step's program runs ([`enter`],
//! through `act_runner __job-cgroup`). Nothing a step starts leaves it by itself: not `setsid`,
//! not a double fork, not a cleared environment. At the end of the job everything in it is killed
//! (`cgroup.kill`, or SIGKILL to every pid in `cgroup.procs` on kernels before 5.14), what it
//! used is logged (CPU always, memory when the memory controller is delegated) and the cgroup is
//! removed. A daemon that starts removes the job cgroups an earlier one left
//! ([`JobCgroups::remove_stale`]). It contains, it does not confine: a job runs as the runner's
//! user, who may write the delegated tree.
//!
//! Used only where systemd marks the cgroup as delegated (`user.delegate`, systemd 251 and later);
//! anywhere else [`JobCgroups::set_up`] says why not and jobs run as before (process groups and
//! the environment mark).
//!
//! May use: nix (signals), rustix (xattr), walkdir. Never another room.

pub mod plan;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use plan::{JobUsage, Plan, Unusable};

/// How long the end of a job waits for its killed processes to be gone before it removes the
/// cgroup anyway (a process in uninterruptible sleep dies when its I/O returns).
const EMPTY_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);
/// Rounds of the SIGKILL sweep without `cgroup.kill`: a job forking while it is killed needs
/// another round, a fork bomb must not keep it going for ever.
const MAX_KILL_ROUNDS: usize = 50;

/// The jobs' cgroups of one daemon.
#[derive(Debug)]
pub struct JobCgroups {
    plan: Plan,
    /// The memory controller is enabled for the jobs (`memory.peak` exists in each).
    memory: bool,
}

/// Why the jobs run without cgroups of their own.
#[derive(Debug)]
pub enum NotUsed {
    Unusable(Unusable),
    /// systemd did not delegate the cgroup (no `Delegate=yes`, or systemd before 251).
    NotDelegated(PathBuf),
    Io {
        context: String,
        source: io::Error,
    },
}

impl fmt::Display for NotUsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotUsed::Unusable(reason) => reason.fmt(f),
            NotUsed::NotDelegated(dir) => write!(
                f,
                "{} is not delegated to the runner (Delegate=yes in the unit)",
                dir.display()
            ),
            NotUsed::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

fn io_error(context: String) -> impl FnOnce(io::Error) -> NotUsed {
    move |source| NotUsed::Io { context, source }
}

impl JobCgroups {
    /// Takes this process's delegated cgroup: moves the process into `<service>/daemon`, creates
    /// `<service>/jobs` and enables the memory controller for the jobs where it is delegated.
    /// Blocking.
    pub fn set_up() -> Result<JobCgroups, NotUsed> {
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(io_error(format!("cannot read {path}")))
        };
        let plan = Plan::from_proc(&read("/proc/self/cgroup")?, &read("/proc/self/mountinfo")?)
            .map_err(NotUsed::Unusable)?;
        if !delegated(&plan.service) {
            return Err(NotUsed::NotDelegated(plan.service));
        }
        JobCgroups::set_up_in(plan, std::process::id())
    }

    /// [`Self::set_up`] in `plan`'s directories, moving `pid`.
    fn set_up_in(plan: Plan, pid: u32) -> Result<JobCgroups, NotUsed> {
        for dir in [&plan.daemon, &plan.jobs] {
            create_dir(dir).map_err(io_error(format!("cannot create {}", dir.display())))?;
        }
        let procs = plan.daemon.join("cgroup.procs");
        write_existing(&procs, &pid.to_string()).map_err(io_error(format!(
            "cannot move the runner into {}",
            procs.display()
        )))?;
        let memory = enable_memory(&plan);
        Ok(JobCgroups { plan, memory })
    }

    /// Whether each job's memory is accounted.
    pub fn accounts_memory(&self) -> bool {
        self.memory
    }

    /// Creates the (empty) cgroup of `job`; returns its directory. Blocking.
    pub fn create(&self, job: &str) -> io::Result<PathBuf> {
        let dir = self.plan.job(job);
        std::fs::create_dir(&dir)?;
        Ok(dir)
    }

    /// Kills everything in the cgroup of `job`, logs what the job used and removes the cgroup.
    /// Blocking (bounded by [`EMPTY_WAIT`]).
    pub fn finish(&self, job: &str) -> JobUsage {
        let dir = self.plan.job(job);
        let ended = end(&dir, self.memory);
        let memory = match ended.usage.memory_peak {
            Some(bytes) => format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0)),
            None => String::from("not available"),
        };
        let cpu = match ended.usage.cpu {
            Some(cpu) => format!("{:.3} s", cpu.as_secs_f64()),
            None => String::from("not available"),
        };
        tracing::info!(
            cgroup = %dir.display(),
            cpu_usec = ended.usage.cpu.map(|cpu| u64::try_from(cpu.as_micros()).unwrap_or(u64::MAX)),
            memory_peak_bytes = ended.usage.memory_peak,
            processes_left = ended.processes_left,
            "host job used cpu {cpu}, memory peak {memory}"
        );
        if let Some(error) = ended.removal_error {
            tracing::warn!(cgroup = %dir.display(), error = %error, "cannot remove the job's cgroup");
        }
        ended.usage
    }

    /// Kills and removes every job cgroup under `jobs/`: at a daemon's start, what an earlier
    /// daemon's jobs left (it crashed, or was killed). Returns how many cgroups were removed.
    pub fn remove_stale(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.plan.jobs) else {
            return 0;
        };
        let mut removed = 0;
        let mut processes = 0;
        for entry in entries.filter_map(Result::ok) {
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            let ended = end(&entry.path(), false);
            processes += ended.processes_left;
            match ended.removal_error {
                None => removed += 1,
                Some(error) => tracing::warn!(
                    cgroup = %entry.path().display(),
                    error = %error,
                    "cannot remove a stale job cgroup"
                ),
            }
        }
        if removed > 0 {
            tracing::warn!(
                cgroups = removed,
                processes,
                "removed the job cgroups an earlier run of this runner left, with their processes"
            );
        }
        removed
    }
}

/// What ending a job's cgroup found.
struct Ended {
    usage: JobUsage,
    processes_left: usize,
    removal_error: Option<io::Error>,
}

fn end(dir: &Path, memory: bool) -> Ended {
    let read_number =
        |name: &str| plan::single_number(&std::fs::read_to_string(dir.join(name)).ok()?);
    // Before the kill: `memory.current` (the fallback before 5.19 has `memory.peak`) drops with it.
    let memory_peak = if memory {
        read_number("memory.peak").or_else(|| read_number("memory.current"))
    } else {
        None
    };
    let processes_left = tree_pids(dir).len();
    kill_tree(dir);
    wait_empty(dir);
    let cpu = std::fs::read_to_string(dir.join("cpu.stat"))
        .ok()
        .and_then(|text| plan::cpu_usage(&text));
    Ended {
        usage: JobUsage { cpu, memory_peak },
        processes_left,
        removal_error: remove_tree(dir).err(),
    }
}

/// Moves the calling process into the cgroup `dir`: what `act_runner __job-cgroup` does before
/// it execs the step's program, so the program's first instruction already runs inside.
pub fn enter(dir: &Path) -> io::Result<()> {
    write_existing(&dir.join("cgroup.procs"), &std::process::id().to_string())
}

/// systemd's mark on a cgroup it delegated (readable by the unit's user).
fn delegated(dir: &Path) -> bool {
    let mut value = [0u8; 8];
    matches!(rustix::fs::getxattr(dir, "user.delegate", &mut value[..]), Ok(len) if value.get(..len) == Some(b"1"))
}

fn create_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => Err(error),
        _ => Ok(()),
    }
}

/// Writes a cgroup file, which must exist: never a plain file created by mistake.
fn write_existing(path: &Path, contents: &str) -> io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(contents.as_bytes())
}

/// `+memory` in the service's and the jobs' `cgroup.subtree_control`, where the controller was
/// delegated. Without it there is no per-job memory figure, and nothing else changes.
fn enable_memory(plan: &Plan) -> bool {
    let available = std::fs::read_to_string(plan.service.join("cgroup.controllers"))
        .is_ok_and(|text| text.split_whitespace().any(|name| name == "memory"));
    available
        && [&plan.service, &plan.jobs].into_iter().all(|dir| {
            write_existing(&dir.join("cgroup.subtree_control"), "+memory")
                .inspect_err(|error| {
                    tracing::debug!(cgroup = %dir.display(), error = %error, "cannot enable the memory controller")
                })
                .is_ok()
        })
}

/// The cgroup and its descendants (a job may create cgroups below its own), deepest first.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .contents_first(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_dir())
        .map(walkdir::DirEntry::into_path)
        .collect();
    if dirs.is_empty() {
        dirs.push(dir.to_owned());
    }
    dirs
}

fn tree_pids(dir: &Path) -> Vec<i32> {
    tree(dir)
        .iter()
        .filter_map(|cgroup| std::fs::read_to_string(cgroup.join("cgroup.procs")).ok())
        .flat_map(|procs| plan::pids(&procs))
        .collect()
}

/// `cgroup.kill` (kernel 5.14), else SIGKILL to every pid in the tree, in rounds, until empty.
fn kill_tree(dir: &Path) {
    if write_existing(&dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    for _ in 0..MAX_KILL_ROUNDS {
        let pids = tree_pids(dir);
        if pids.is_empty() {
            return;
        }
        for pid in pids.into_iter().filter(|pid| *pid != me && *pid > 0) {
            // Gone already (ESRCH) is what the round wants.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(POLL);
    }
}

/// Waits (at most [`EMPTY_WAIT`]) until no process is left in the tree.
fn wait_empty(dir: &Path) {
    let deadline = Instant::now() + EMPTY_WAIT;
    while Instant::now() < deadline {
        let populated = match std::fs::read_to_string(dir.join("cgroup.events")) {
            Ok(events) => plan::populated(&events),
            Err(_) => !tree_pids(dir).is_empty(),
        };
        if !populated {
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// Removes the cgroup and its descendants (a cgroup directory goes with `rmdir`, its files
/// with it).
fn remove_tree(dir: &Path) -> io::Result<()> {
    let mut result = Ok(());
    for cgroup in tree(dir) {
        match std::fs::remove_dir(&cgroup) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => result = Err(error),
            _ => {}
        }
    }
    result
}

#[cfg(test)]
mod tests;
