//! The daemon end to end: `act_runner register`, then `act_runner daemon` as a real process against
//! the fake Gitea, with host-backend labels (`name:host`) where Docker is not the point.
//! Docker runs are in `daemon_docker.rs`; delivery under faults, outages and `kill -9` in
//! `daemon_faults.rs`.

pub mod harness;

use std::time::Duration;

use act_runner::client::proto::runner::Result as TaskResult;

use crate::support::fake_gitea::TaskSpec;
use harness::{Daemon, RunnerDir, bounded, start_fake};

const THREE_STEPS: &str = r#"
name: CI
on: push
jobs:
  build:
    runs-on: host-test
    outputs:
      version: ${{ steps.produce.outputs.version }}
    steps:
      - name: first
        run: |
          echo "first line one"
          echo "first line two"
      - name: produce
        id: produce
        run: |
          echo "version=1.2.3" >> "$GITHUB_OUTPUT"
          echo "produced"
      - name: third
        run: echo "third says ${{ secrets.MY_SECRET }}"
"#;

#[tokio::test]
async fn a_task_with_steps_reports_logs_step_ranges_outputs_and_success() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let task_id = gitea.enqueue_task(
            TaskSpec::from_workflow(THREE_STEPS)
                .unwrap()
                .with_secret("MY_SECRET", "hunter2-secret"),
        );
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());

        let lines = gitea.task_log_lines(task_id);
        let rows: Vec<String> = gitea
            .task_logs(task_id)
            .into_iter()
            .map(|row| row.content)
            .collect();
        assert!(rows.iter().any(|row| row == "first line one"), "{lines:#?}");
        assert!(
            rows.iter().all(|row| !row.contains("hunter2-secret")),
            "a secret leaked: {rows:#?}"
        );
        assert!(rows.iter().any(|row| row == "third says ***"), "{rows:#?}");
        let final_state = task.final_state.clone().unwrap();
        assert_eq!(final_state.steps.len(), 3);
        assert!(final_state.stopped_at.is_some());
        let step_rows = |step_idx: usize| -> Vec<String> {
            let step = &final_state.steps[step_idx];
            let start = step.log_index as usize;
            rows[start..start + step.log_length as usize].to_vec()
        };
        assert!(
            step_rows(0).contains(&"first line one".to_string()),
            "{:?}",
            step_rows(0)
        );
        assert!(step_rows(0).contains(&"first line two".to_string()));
        assert!(
            step_rows(1).contains(&"produced".to_string()),
            "{:?}",
            step_rows(1)
        );
        assert!(step_rows(2).contains(&"third says ***".to_string()));
        assert!(
            final_state
                .steps
                .iter()
                .all(|step| step.result == TaskResult::Success as i32)
        );
        assert!(gitea.log_archived(task_id));
        assert_eq!(
            gitea.task_outputs(task_id),
            [("version".to_string(), "1.2.3".to_string())]
        );
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_failing_step_fails_the_task() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  test:\n    runs-on: host-test\n    steps:\n      - run: echo before\n      - run: exit 3\n      - run: echo never\n";
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Failure);
        let steps = task.final_state.unwrap().steps;
        assert_eq!(steps[0].result, TaskResult::Success as i32);
        assert_eq!(steps[1].result, TaskResult::Failure as i32);
        assert_ne!(steps[2].result, TaskResult::Success as i32);
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_cancel_from_the_server_stops_the_job_within_two_seconds() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "  state_report_interval: 1s\n").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let marker = dir.path().join("still-running");
        let workflow = format!(
            "on: push\njobs:\n  long:\n    runs-on: host-test\n    steps:\n      - run: |\n          echo started\n          for i in $(seq 1 600); do touch {marker}; sleep 0.1; done\n",
            marker = marker.display()
        );
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(&workflow).unwrap());
        daemon.wait_for_line(&gitea, task_id, "started").await;
        let cancelled_at = std::time::Instant::now();
        assert!(gitea.cancel_task(task_id));
        // The step stops touching the marker once the job is cancelled.
        let stopped = loop {
            let _ = std::fs::remove_file(&marker);
            tokio::time::sleep(Duration::from_millis(300)).await;
            if !marker.exists() {
                break cancelled_at.elapsed();
            }
            assert!(cancelled_at.elapsed() < Duration::from_secs(10), "the job kept running");
        };
        assert!(stopped <= Duration::from_secs(2) + Duration::from_millis(300), "stopped after {stopped:?}");
        let task = gitea
            .wait_task_final(task_id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(task.result, TaskResult::Cancelled);
        assert!(
            gitea
                .wait_until(Duration::from_secs(30), |gitea| gitea.log_archived(task_id))
                .await,
            "the cancelled task's log was not finished: {}",
            daemon.log()
        );
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn once_exits_zero_after_one_job() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let workflow =
            "on: push\njobs:\n  one:\n    runs-on: host-test\n    steps:\n      - run: echo one\n";
        let first = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
        let second = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
        let mut daemon = Daemon::start(&dir, &["--once"]).await;
        let status = daemon.wait_exit(Duration::from_secs(60)).await;
        assert_eq!(status, Some(0), "{}", daemon.log());
        assert_eq!(gitea.task_state(first).unwrap().result, TaskResult::Success);
        assert!(
            gitea.task_state(second).unwrap().runner_id.is_none(),
            "a second task was taken"
        );
    })
    .await;
}

#[tokio::test]
async fn sigterm_with_zero_grace_cancels_the_job_and_still_reports_it() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let mut daemon = Daemon::start(&dir, &[]).await;
        // Issue 23: the steps a cancelled job still runs on GitHub (`always()`, `cancelled()`)
        // run here too; the others are skipped.
        let workflow = "on: push\njobs:\n  long:\n    runs-on: host-test\n    steps:\n      - run: |\n          echo started\n          sleep 300\n      - run: echo NOT-RUN\n      - if: always()\n        run: echo ALWAYS-RAN\n      - if: cancelled()\n        run: echo CANCELLED-RAN\n      - if: failure()\n        run: echo FAILURE-NOT-RUN\n";
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
        daemon.wait_for_line(&gitea, task_id, "started").await;
        daemon.signal(nix::sys::signal::Signal::SIGTERM);
        let status = daemon.wait_exit(Duration::from_secs(60)).await;
        assert_eq!(status, Some(0), "{}", daemon.log());
        let task = gitea.task_state(task_id).unwrap();
        assert_eq!(task.result, TaskResult::Cancelled, "{}", daemon.log());
        assert!(gitea.log_archived(task_id));
        let rows = gitea.task_log_lines(task_id);
        for (line, ran) in [
            ("NOT-RUN", false),
            ("ALWAYS-RAN", true),
            ("CANCELLED-RAN", true),
            ("FAILURE-NOT-RUN", false),
        ] {
            assert_eq!(rows.iter().any(|row| row == line), ran, "{line}: {rows:#?}");
        }
    })
    .await;
}

#[tokio::test]
async fn shutdown_grace_lets_a_short_job_finish() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "  shutdown_timeout: 30s\n").await;
        let mut daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  short:\n    runs-on: host-test\n    steps:\n      - run: |\n          echo started\n          sleep 3\n          echo done\n";
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
        daemon.wait_for_line(&gitea, task_id, "started").await;
        daemon.signal(nix::sys::signal::Signal::SIGTERM);
        let status = daemon.wait_exit(Duration::from_secs(60)).await;
        assert_eq!(status, Some(0), "{}", daemon.log());
        assert_eq!(gitea.task_state(task_id).unwrap().result, TaskResult::Success);
    })
    .await;
}

#[tokio::test]
async fn a_runner_gitea_no_longer_knows_exits_77() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        dir.corrupt_token();
        let mut daemon = Daemon::start(&dir, &[]).await;
        let status = daemon.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(status, Some(77), "{}", daemon.log());
    })
    .await;
}

#[tokio::test]
async fn jobs_see_the_capabilities_gitea_declared() {
    bounded(async {
        let gitea = start_fake().await;
        gitea.set_declare_capabilities(Some("job-summary"));
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  env:\n    runs-on: host-test\n    steps:\n      - run: echo \"capabilities=$GITEA_ACTIONS_CAPABILITIES gitea_actions=$GITEA_ACTIONS\"\n";
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        let lines = gitea.task_log_lines(task_id);
        assert!(
            lines
                .iter()
                .any(|line| line == "capabilities=job-summary gitea_actions=true"),
            "{lines:#?}"
        );
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn idle_polls_remove_stale_host_job_directories() {
    bounded(async {
        let gitea = start_fake().await;
        let extra = "  workdir_cleanup_age: 1h\n  idle_cleanup_interval: 1s\n";
        let dir = RunnerDir::register(&gitea, "host-test:host", extra).await;
        let work = dir.path().join("work");
        let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        let make = |name: &str| {
            let path = work.join(name);
            std::fs::create_dir_all(path.join("workspace")).unwrap();
            path
        };
        let stale = make("0123456789abcdef");
        let fresh = make("fedcba9876543210");
        let not_a_job = make("keep-this-dir-ok");
        for old in [&stale, &not_a_job] {
            std::fs::File::open(old)
                .unwrap()
                .set_modified(two_hours_ago)
                .unwrap();
        }
        let daemon = Daemon::start(&dir, &[]).await;
        // The daemon logs the removal after it happened: wait for the line too, not only the dir.
        let removed = gitea
            .wait_until(Duration::from_secs(20), |_| {
                !stale.exists() && daemon.log().contains("removed a stale host job directory")
            })
            .await;
        assert!(removed, "the stale job directory stayed: {}", daemon.log());
        assert!(fresh.exists() && not_a_job.exists(), "{}", daemon.log());
        assert!(
            daemon.log().contains("removed a stale host job directory"),
            "{}",
            daemon.log()
        );
        daemon.stop().await;
    })
    .await;
}
