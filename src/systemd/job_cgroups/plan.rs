//! The pure half of the job cgroups: where this process's cgroup v2 directory is (from
//! `/proc/self/cgroup` and `/proc/self/mountinfo`), the layout under it, and the accounting files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The leaf the daemon moves itself into: cgroup v2 lets a cgroup with controllers enabled for
/// its children hold no processes of its own ("no internal processes").
pub const DAEMON_LEAF: &str = "daemon";
/// The parent of the jobs' cgroups, a sibling of [`DAEMON_LEAF`].
pub const JOBS_DIR: &str = "jobs";

/// The service's delegated cgroup and the layout the daemon makes under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The service's cgroup, e.g. `/sys/fs/cgroup/system.slice/act-runner.service`.
    pub service: PathBuf,
    /// `<service>/daemon`: the daemon's own processes.
    pub daemon: PathBuf,
    /// `<service>/jobs`: one cgroup per host job below it.
    pub jobs: PathBuf,
}

/// Why the jobs cannot have cgroups of their own here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// `/proc/self/cgroup` has no `0::` line: the machine runs cgroup v1 only.
    NoUnifiedHierarchy,
    /// No cgroup2 file system is mounted in this mount namespace.
    NotMounted,
    /// The process's cgroup is the root, or outside what the mount shows.
    NotBelowMount,
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unusable::NoUnifiedHierarchy => "the machine has no cgroup v2 hierarchy",
            Unusable::NotMounted => "no cgroup2 file system is mounted",
            Unusable::NotBelowMount => {
                "the runner's cgroup is not a service's below the cgroup2 mount"
            }
        })
    }
}

impl Plan {
    /// The layout for this process, from the text of `/proc/self/cgroup` and
    /// `/proc/self/mountinfo`.
    pub fn from_proc(proc_self_cgroup: &str, mountinfo: &str) -> Result<Plan, Unusable> {
        let own = own_cgroup(proc_self_cgroup).ok_or(Unusable::NoUnifiedHierarchy)?;
        let (root, mount_point) = cgroup2_mount(mountinfo).ok_or(Unusable::NotMounted)?;
        let relative = Path::new(own)
            .strip_prefix(root)
            .map_err(|_| Unusable::NotBelowMount)?;
        if relative.as_os_str().is_empty() || relative.components().any(is_not_normal) {
            return Err(Unusable::NotBelowMount);
        }
        let service = Path::new(mount_point).join(relative);
        Ok(Plan {
            daemon: service.join(DAEMON_LEAF),
            jobs: service.join(JOBS_DIR),
            service,
        })
    }

    /// The cgroup of one job (`job` is the host backend's hex name, no `/`).
    pub fn job(&self, job: &str) -> PathBuf {
        self.jobs.join(job)
    }
}

fn is_not_normal(component: std::path::Component<'_>) -> bool {
    !matches!(component, std::path::Component::Normal(_))
}

/// The cgroup v2 path in `/proc/self/cgroup` (the `0::/path` line).
pub fn own_cgroup(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .filter(|path| path.starts_with('/'))
}

/// The root (inside the hierarchy) and the mount point of the first cgroup2 mount in
/// `/proc/self/mountinfo`: `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE ...`.
pub fn cgroup2_mount(mountinfo: &str) -> Option<(&str, &str)> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut fields = before.split(' ').skip(3);
        let root = fields.next()?;
        let mount_point = fields.next()?;
        // Octal escapes (`\040` for a space) are left alone: a cgroup mount has none.
        (!mount_point.contains('\\')).then_some((root, mount_point))
    })
}

/// `usage_usec` of a `cpu.stat`: present in every cgroup v2, with or without the cpu controller.
pub fn cpu_usage(cpu_stat: &str) -> Option<Duration> {
    cpu_stat.lines().find_map(|line| {
        let micros = line.strip_prefix("usage_usec ")?.trim().parse().ok()?;
        Some(Duration::from_micros(micros))
    })
}

/// A single number file (`memory.peak`, `memory.current`).
pub fn single_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Whether `cgroup.events` says processes are left in the cgroup or below it.
pub fn populated(cgroup_events: &str) -> bool {
    cgroup_events
        .lines()
        .any(|line| line.trim() == "populated 1")
}

/// The pids of a `cgroup.procs`.
pub fn pids(cgroup_procs: &str) -> Vec<i32> {
    cgroup_procs
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// What one job used, read from its cgroup before it is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobUsage {
    /// `cpu.stat` `usage_usec`: user and system time of every process the job ran.
    pub cpu: Option<Duration>,
    /// `memory.peak` (or `memory.current` on kernels before 5.19); `None` without the memory
    /// controller.
    pub memory_peak: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V2: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const MOUNTINFO_HYBRID: &str = "\
35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
37 35 0:32 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
";

    #[test]
    fn the_plan_puts_the_daemon_and_the_jobs_side_by_side_under_the_service() {
        let plan = Plan::from_proc("0::/system.slice/act-runner.service\n", MOUNTINFO_V2).unwrap();
        let service = Path::new("/sys/fs/cgroup/system.slice/act-runner.service");
        assert_eq!(plan.service, service);
        assert_eq!(plan.daemon, service.join("daemon"));
        assert_eq!(plan.jobs, service.join("jobs"));
        assert_eq!(plan.job("00ff"), service.join("jobs/00ff"));
    }

    #[test]
    fn a_hybrid_machine_uses_its_unified_mount() {
        let cgroup = "12:memory:/system.slice/act-runner.service\n1:name=systemd:/system.slice/act-runner.service\n0::/system.slice/act-runner.service\n";
        let plan = Plan::from_proc(cgroup, MOUNTINFO_HYBRID).unwrap();
        assert_eq!(
            plan.service,
            Path::new("/sys/fs/cgroup/unified/system.slice/act-runner.service")
        );
    }

    #[test]
    fn a_mount_of_a_subtree_is_followed() {
        let mountinfo = "36 35 0:31 /payload /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let plan = Plan::from_proc("0::/payload/system.slice/a.service\n", mountinfo).unwrap();
        assert_eq!(
            plan.service,
            Path::new("/sys/fs/cgroup/system.slice/a.service")
        );
    }

    #[test]
    fn what_cannot_hold_job_cgroups_says_why() {
        let v1_only = "4:memory:/x\n1:name=systemd:/x\n";
        assert_eq!(
            Plan::from_proc(v1_only, MOUNTINFO_V2),
            Err(Unusable::NoUnifiedHierarchy)
        );
        let no_mount = "24 30 0:22 / /sys rw - sysfs sysfs rw\n";
        assert_eq!(
            Plan::from_proc("0::/a.service\n", no_mount),
            Err(Unusable::NotMounted)
        );
        assert_eq!(
            Plan::from_proc("0::/\n", MOUNTINFO_V2),
            Err(Unusable::NotBelowMount)
        );
        let subtree = "36 35 0:31 /payload /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            Plan::from_proc("0::/elsewhere/a.service\n", subtree),
            Err(Unusable::NotBelowMount)
        );
        assert_eq!(
            Plan::from_proc("0::/a/../../etc\n", MOUNTINFO_V2),
            Err(Unusable::NotBelowMount)
        );
    }

    #[test]
    fn the_accounting_files_parse() {
        let cpu_stat = "usage_usec 1534000\nuser_usec 1000000\nsystem_usec 534000\n";
        assert_eq!(cpu_usage(cpu_stat), Some(Duration::from_micros(1_534_000)));
        assert_eq!(cpu_usage("user_usec 3\n"), None);
        assert_eq!(single_number("4096\n"), Some(4096));
        assert_eq!(single_number("max\n"), None);
        assert!(populated("populated 1\nfrozen 0\n"));
        assert!(!populated("populated 0\nfrozen 0\n"));
        assert_eq!(pids("12\n345\n\n"), vec![12, 345]);
    }
}
