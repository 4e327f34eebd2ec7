//! What host jobs leave behind, through a real daemon and the fake Gitea: a process a step detaches
//! (`setsid`) is killed when the job ends, and after a `kill -9` of the daemon by the next start;
//! a descriptor the daemon was started with never reaches a step.

use std::time::Duration;

use act_runner::client::proto::runner::Result as TaskResult;

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::support::fake_gitea::TaskSpec;

/// A `sleep` argument no other process on the machine has (GNU sleep takes fractions).
fn unique_sleep() -> String {
    format!("1000.{}", rand::random::<u32>())
}

/// Live processes whose command line holds `needle` as one argument (a zombie's reads empty).
fn processes_with_argument(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .split(|byte| *byte == 0)
                .any(|argument| argument == needle.as_bytes())
                .then_some(pid)
        })
        .collect()
}

/// Waits (at most `limit`) until no process has `needle`; true when none is left.
async fn gone_within(needle: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if processes_with_argument(needle).is_empty() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills what a failed test left, so that a failure does not leave sleeps behind for 17 minutes.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in processes_with_argument(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn workflow(script: &str) -> TaskSpec {
    let workflow = format!(
        "on: push\njobs:\n  leave:\n    runs-on: host-test\n    steps:\n      - run: |\n{}\n",
        script
            .lines()
            .map(|line| format!("          {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    TaskSpec::from_workflow(&workflow).unwrap()
}

#[tokio::test]
async fn a_process_a_host_step_detaches_is_killed_when_the_job_ends() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let sleep = unique_sleep();
        let _leftovers = Leftovers(sleep.clone());
        let task_id =
            gitea.enqueue_task(workflow(&format!("setsid sleep {sleep} &\necho started")));
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        assert!(
            gitea
                .task_log_lines(task_id)
                .iter()
                .any(|row| row == "started"),
            "{:#?}",
            gitea.task_log_lines(task_id)
        );
        assert!(
            gone_within(&sleep, Duration::from_secs(10)).await,
            "`setsid sleep {sleep}` outlived its job"
        );
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn after_a_daemon_crash_the_next_start_kills_what_its_jobs_left_running() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let sleep = unique_sleep();
        let _leftovers = Leftovers(sleep.clone());
        let task_id = gitea.enqueue_task(workflow(&format!(
            "setsid sleep {sleep} &\necho started\nsleep {sleep}"
        )));
        daemon.wait_for_line(&gitea, task_id, "started").await;
        daemon.kill_hard().await;
        // Nothing killed them: the step's shell and both sleeps are still there.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            processes_with_argument(&sleep).len(),
            2,
            "the test needs both sleeps alive after the crash"
        );

        let restarted = Daemon::start(&dir, &[]).await;
        assert!(
            gone_within(&sleep, Duration::from_secs(30)).await,
            "the restarted daemon left the crashed job's processes running:\n{}",
            restarted.log()
        );
        assert!(
            restarted
                .log()
                .contains("earlier run of this runner left running"),
            "{}",
            restarted.log()
        );
        // Polling (past the delivery of the crashed run's task) before the SIGTERM: a daemon still
        // starting would die of it.
        restarted.wait_final(&gitea, task_id).await;
        let next = gitea.enqueue_task(workflow("echo next"));
        assert_eq!(
            restarted.wait_final(&gitea, next).await.result,
            TaskResult::Success
        );
        restarted.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_host_step_sees_no_descriptor_the_daemon_was_started_with() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let marker = dir.path().join("inherited-marker");
        std::fs::write(&marker, "an admin's shell had this open").unwrap();
        let daemon =
            Daemon::start_after_shell(&dir, &format!("exec 7<'{}'", marker.display())).await;
        let task_id = gitea.enqueue_task(workflow(
            "for fd in /proc/$$/fd/*; do echo \"fd ${fd##*/} -> $(readlink \"$fd\")\"; done",
        ));
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        let rows = gitea.task_log_lines(task_id);
        let listed: Vec<&String> = rows.iter().filter(|row| row.starts_with("fd ")).collect();
        assert!(
            listed.iter().any(|row| row.starts_with("fd 0 ")),
            "the step listed no descriptors: {rows:#?}"
        );
        assert!(
            listed.iter().all(|row| !row.contains("inherited-marker")),
            "the step inherited the daemon's descriptor: {listed:#?}"
        );
        daemon.stop().await;
    })
    .await;
}
