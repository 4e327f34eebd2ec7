//! The cgroup steps against plain directories standing in for cgroupfs (the files a cgroup
//! directory has are created by hand; `rmdir` of a real cgroup takes them along, here it fails).

use std::process::{Command, Stdio};

use super::*;

fn plan_in(root: &Path) -> Plan {
    let service = root.join("act-runner.service");
    Plan {
        daemon: service.join(plan::DAEMON_LEAF),
        jobs: service.join(plan::JOBS_DIR),
        service,
    }
}

fn write(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

#[test]
fn set_up_moves_the_daemon_into_its_leaf_and_enables_memory_for_the_jobs() {
    let root = tempfile::tempdir().unwrap();
    let plan = plan_in(root.path());
    write(
        &plan.service.join("cgroup.controllers"),
        "cpu memory pids\n",
    );
    write(&plan.service.join("cgroup.subtree_control"), "");
    write(&plan.daemon.join("cgroup.procs"), "");
    write(&plan.jobs.join("cgroup.subtree_control"), "");

    let cgroups = JobCgroups::set_up_in(plan.clone(), 4242).unwrap();
    assert_eq!(
        std::fs::read_to_string(plan.daemon.join("cgroup.procs")).unwrap(),
        "4242"
    );
    assert!(cgroups.accounts_memory());
    for dir in [&plan.service, &plan.jobs] {
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap(),
            "+memory"
        );
    }
    let job = cgroups.create("00ab").unwrap();
    assert_eq!(job, plan.jobs.join("00ab"));
    assert!(job.is_dir());
}

#[test]
fn without_the_memory_controller_the_jobs_are_not_memory_accounted() {
    let root = tempfile::tempdir().unwrap();
    let plan = plan_in(root.path());
    write(&plan.service.join("cgroup.controllers"), "\n");
    write(&plan.daemon.join("cgroup.procs"), "");
    let cgroups = JobCgroups::set_up_in(plan, 1).unwrap();
    assert!(!cgroups.accounts_memory());
}

#[test]
fn set_up_fails_where_the_daemon_cannot_move() {
    let root = tempfile::tempdir().unwrap();
    // No cgroup.procs in the leaf: not a cgroup, and nothing is created in its place.
    let plan = plan_in(root.path());
    std::fs::create_dir(&plan.service).unwrap();
    let error = JobCgroups::set_up_in(plan.clone(), 1).unwrap_err();
    assert!(
        error.to_string().starts_with("cannot move the runner into"),
        "{error}"
    );
    assert!(!plan.daemon.join("cgroup.procs").exists());
}

#[test]
fn finishing_a_job_kills_what_is_left_without_cgroup_kill_and_reads_its_usage() {
    let root = tempfile::tempdir().unwrap();
    let plan = plan_in(root.path());
    let cgroups = JobCgroups { plan, memory: true };
    let dir = cgroups.plan.job("00cd");
    let mut left = Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    write(&dir.join("cgroup.procs"), &format!("{}\n", left.id()));
    write(&dir.join("cgroup.events"), "populated 0\nfrozen 0\n");
    write(
        &dir.join("cpu.stat"),
        "usage_usec 2500000\nuser_usec 2000000\n",
    );
    write(&dir.join("memory.peak"), "10485760\n");

    let usage = cgroups.finish("00cd");
    assert_eq!(
        usage,
        JobUsage {
            cpu: Some(Duration::from_millis(2500)),
            memory_peak: Some(10 * 1024 * 1024),
        }
    );
    assert!(
        left.wait().unwrap().code().is_none(),
        "the process left in the cgroup was killed by a signal"
    );
}

#[test]
fn a_job_cgroup_with_cgroup_kill_is_killed_through_it() {
    let root = tempfile::tempdir().unwrap();
    let cgroups = JobCgroups {
        plan: plan_in(root.path()),
        memory: false,
    };
    let dir = cgroups.plan.job("00ef");
    write(&dir.join("cgroup.kill"), "");
    write(&dir.join("cpu.stat"), "usage_usec 7\n");
    write(&dir.join("memory.peak"), "4096\n");
    let usage = cgroups.finish("00ef");
    assert_eq!(
        std::fs::read_to_string(dir.join("cgroup.kill")).unwrap(),
        "1"
    );
    assert_eq!(usage.cpu, Some(Duration::from_micros(7)));
    assert_eq!(
        usage.memory_peak, None,
        "the memory controller is not enabled"
    );
}

#[test]
fn stale_job_cgroups_are_removed() {
    let root = tempfile::tempdir().unwrap();
    let cgroups = JobCgroups {
        plan: plan_in(root.path()),
        memory: false,
    };
    std::fs::create_dir_all(cgroups.plan.job("0001").join("nested")).unwrap();
    std::fs::create_dir_all(cgroups.plan.job("0002")).unwrap();
    assert_eq!(cgroups.remove_stale(), 2);
    assert_eq!(std::fs::read_dir(&cgroups.plan.jobs).unwrap().count(), 0);
}
