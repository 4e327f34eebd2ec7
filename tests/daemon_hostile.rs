//! A hostile or broken server, end to end (issue 22): a task payload the daemon cannot turn into a
//! job is reported as failed and frees its slot, so the next task runs and SIGTERM is quick.
//! One runner of capacity 1 per test: a wedged slot shows as a second task that never runs.

use std::time::Duration;

use act_runner::client::proto::runner::Result as TaskResult;

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::support::fake_gitea::TaskSpec;

const NEXT: &str =
    "on: push\njobs:\n  next:\n    runs-on: host-test\n    steps:\n      - run: echo next\n";

/// Sends `payload` as a task, expects it to fail with a row containing `reason`, then expects a
/// good task to run on the same (single) slot and the daemon to stop promptly.
async fn bad_payload_frees_the_slot(payload: Vec<u8>, reason: &str) {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "  capacity: 1\n").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let bad = gitea.enqueue_task(TaskSpec::from_payload(payload, &["host-test"]));
        let task = daemon.wait_final(&gitea, bad).await;
        assert_eq!(task.result, TaskResult::Failure);
        let rows = gitea.task_log_lines(bad);
        assert!(
            rows.iter().any(|row| row.contains(reason)),
            "no row says {reason:?}: {rows:#?}"
        );
        let next = gitea.enqueue_task(TaskSpec::from_workflow(NEXT).unwrap());
        let task = daemon.wait_final(&gitea, next).await;
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        let stopping = std::time::Instant::now();
        daemon.stop().await;
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "SIGTERM took {:?}",
            stopping.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn a_payload_nested_deeper_than_the_parser_allows_frees_the_slot() {
    let depth = 10_000;
    let payload = format!(
        "jobs:\n  deep:\n    runs-on: host-test\n    x: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    bad_payload_frees_the_slot(payload.into_bytes(), "not valid YAML").await;
}

#[tokio::test]
async fn a_payload_with_a_huge_scalar_frees_the_slot() {
    let payload = format!(
        "jobs:\n  big:\n    runs-on: host-test\n    x: {}\n",
        "a".repeat(20 * 1024 * 1024)
    );
    bad_payload_frees_the_slot(payload.into_bytes(), "larger than").await;
}

#[tokio::test]
async fn a_payload_of_invalid_utf8_frees_the_slot() {
    let mut payload = b"jobs:\n  bad:\n    runs-on: host-test\n    name: ".to_vec();
    payload.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28, b'\n']);
    bad_payload_frees_the_slot(payload, "not valid YAML").await;
}

#[tokio::test]
async fn a_payload_without_a_job_frees_the_slot() {
    bad_payload_frees_the_slot(b"on: push\njobs: {}\n".to_vec(), "exactly one job").await;
}

#[tokio::test]
async fn a_payload_with_two_jobs_frees_the_slot() {
    let payload = "on: push\njobs:\n  a:\n    runs-on: host-test\n  b:\n    runs-on: host-test\n";
    bad_payload_frees_the_slot(payload.as_bytes().to_vec(), "exactly one job").await;
}

/// Issue 22: a job output holding a secret is not sent to Gitea; the log says which was skipped.
#[tokio::test]
async fn a_job_output_holding_a_secret_is_dropped_with_a_warning() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  out:\n    runs-on: host-test\n    outputs:\n      leaked: v-${{ secrets.MY_SECRET }}\n      plain: ${{ steps.s.outputs.plain }}\n    steps:\n      - id: s\n        run: echo plain=fine >> \"$GITHUB_OUTPUT\"\n";
        let task_id = gitea.enqueue_task(
            TaskSpec::from_workflow(workflow)
                .unwrap()
                .with_secret("MY_SECRET", "hunter2-secret"),
        );
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        assert_eq!(
            gitea.task_outputs(task_id),
            [("plain".to_string(), "fine".to_string())]
        );
        let rows = gitea.task_log_lines(task_id);
        assert!(
            rows.iter()
                .any(|row| row.contains("Skip output 'leaked' since it may contain secret.")),
            "{rows:#?}"
        );
        daemon.stop().await;
    })
    .await;
}
