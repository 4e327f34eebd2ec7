//! Delivery beyond upstream, end to end: with 30 % of UpdateLog and UpdateTask calls failing or
//! never answered plus a 60 s full outage in the middle of a job, every row arrives exactly once
//! and in order and the result arrives; after `kill -9` of the daemon mid-job and a restart, the
//! spooled rows and the final state arrive before the restarted daemon takes new work, and a
//! SIGTERM while it delivers them still stops it.

use std::time::Duration;

use act_runner::client::Method;
use act_runner::client::proto::runner::Result as TaskResult;
use nix::sys::signal::Signal;

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::support::fake_gitea::{Faults, InjectedError, TaskSpec};

/// `row 1` … `row N`, one every `pause` seconds.
fn counting_workflow(n_rows: usize, pause: &str, progress: &std::path::Path) -> String {
    format!(
        "on: push\njobs:\n  count:\n    runs-on: host-test\n    steps:\n      - run: |\n          for i in $(seq 1 {n_rows}); do echo \"row $i\"; echo $i > {progress}; sleep {pause}; done\n",
        progress = progress.display()
    )
}

/// The step's counter; the shell truncates the file before writing, so an empty read is retried.
async fn read_progress(path: &std::path::Path) -> usize {
    for _ in 0..100 {
        if let Ok(n) = std::fs::read_to_string(path)
            .unwrap_or_default()
            .trim()
            .parse()
        {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no progress in {}", path.display());
}

fn numbered_rows(rows: &[String]) -> Vec<usize> {
    rows.iter()
        .filter_map(|row| row.strip_prefix("row "))
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[tokio::test]
async fn faults_and_a_sixty_second_outage_lose_and_duplicate_no_row() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let n_rows = 2_000;
        let workflow = counting_workflow(n_rows, "0.05", &dir.path().join("progress"));
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(&workflow).unwrap());
        assert!(
            gitea
                .wait_until(Duration::from_secs(30), |gitea| gitea
                    .task_logs(task_id)
                    .len()
                    > 50)
                .await,
            "no rows arrived: {}",
            daemon.log()
        );
        let faults = Faults {
            error_rate: 0.15,
            error: InjectedError::GiteaInternal,
            timeout_rate: 0.15,
            ..Faults::default()
        };
        gitea.set_faults(Method::UpdateLog, faults.clone());
        gitea.set_faults(Method::UpdateTask, faults);
        gitea.outage(Duration::from_secs(20), Duration::from_secs(60));
        let task = gitea
            .wait_task_final(task_id, Duration::from_secs(240))
            .await
            .unwrap_or_else(|| panic!("no final state; daemon log:\n{}", daemon.log()));
        assert_eq!(task.result, TaskResult::Success);
        let rows: Vec<String> = gitea
            .task_logs(task_id)
            .into_iter()
            .map(|row| row.content)
            .collect();
        let numbers = numbered_rows(&rows);
        assert_eq!(
            numbers,
            (1..=n_rows).collect::<Vec<_>>(),
            "rows lost, duplicated or reordered"
        );
        assert!(gitea.log_archived(task_id));
        gitea.clear_faults();
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn kill_nine_mid_job_then_restart_delivers_the_spool_and_the_final_state() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let progress = dir.path().join("progress");
        let workflow = counting_workflow(100_000, "0.01", &progress);
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(&workflow).unwrap());
        assert!(
            gitea
                .wait_until(Duration::from_secs(30), |gitea| gitea.task_logs(task_id).len() > 20)
                .await,
            "no rows arrived: {}",
            daemon.log()
        );
        // Gitea goes away, rows pile up in the spool, then the daemon dies hard.
        gitea.set_faults(Method::UpdateLog, Faults::always(InjectedError::Unavailable));
        gitea.set_faults(Method::UpdateTask, Faults::always(InjectedError::Unavailable));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let printed = read_progress(&progress).await;
        // Everything printed a second before the kill has left the pipe and reached the spool.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before_kill = gitea.task_logs(task_id).len();
        daemon.kill_hard().await;
        assert!(dir.spool_dir().join(task_id.to_string()).exists(), "no spool for the task");
        gitea.clear_faults();

        // A task waiting in the queue must not be taken before the leftover is delivered.
        let next = gitea.enqueue_task(
            TaskSpec::from_workflow("on: push\njobs:\n  next:\n    runs-on: host-test\n    steps:\n      - run: echo next\n").unwrap(),
        );
        let restarted = Daemon::start(&dir, &[]).await;
        let task = gitea
            .wait_task_final(task_id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("no final state after restart:\n{}", restarted.log()));
        assert_eq!(task.result, TaskResult::Failure);
        let rows: Vec<String> = gitea.task_logs(task_id).into_iter().map(|row| row.content).collect();
        let numbers = numbered_rows(&rows);
        assert!(numbers.len() > before_kill.saturating_sub(30), "{} rows before, {} after", before_kill, numbers.len());
        assert!(numbers.len() >= printed, "rows printed before the kill were lost: {} < {printed}", numbers.len());
        assert_eq!(numbers, (1..=numbers.len()).collect::<Vec<_>>(), "rows duplicated or reordered");
        assert!(rows.last().is_some_and(|row| row.contains("runner stopped")) || rows.iter().any(|row| row.contains("runner stopped")));
        assert!(gitea.log_archived(task_id));
        let next_task = gitea.wait_task_final(next, Duration::from_secs(60)).await.unwrap();
        assert_eq!(next_task.result, TaskResult::Success);
        assert!(!dir.spool_dir().join(task_id.to_string()).exists(), "the delivered spool is removed");
        restarted.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_sigterm_while_a_leftover_report_is_in_flight_stops_the_daemon_even_when_it_arrives() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let task_id = gitea.enqueue_task(
            TaskSpec::from_workflow("on: push\njobs:\n  long:\n    runs-on: host-test\n    steps:\n      - run: echo started; sleep 600\n").unwrap(),
        );
        daemon.wait_for_line(&gitea, task_id, "started").await;
        daemon.kill_hard().await;
        // Every report call of the restarted daemon is still in flight when the SIGTERM comes, and
        // then succeeds (2 s: under the client's 3 s call deadline).
        gitea.set_faults(Method::UpdateLog, Faults::latency(Duration::from_secs(2)));
        gitea.set_faults(Method::UpdateTask, Faults::latency(Duration::from_secs(2)));
        let mut restarted = Daemon::start(&dir, &[]).await;
        let delivering = async {
            while !restarted.log().contains("delivering reports left by an earlier run") {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), delivering)
            .await
            .unwrap_or_else(|_| panic!("no leftover delivery:\n{}", restarted.log()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        restarted.signal(Signal::SIGTERM);
        let status = restarted.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(status, Some(0), "the daemon kept running:\n{}", restarted.log());
    })
    .await;
}
