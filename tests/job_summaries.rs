//! Job summaries (issue 20): with the `job-summary` capability declared, the daemon sends each
//! step's `GITHUB_STEP_SUMMARY` to the fake Gitea after the steps, one PUT per step with its
//! index, masked, cut to 1 MiB with a marker; an unreachable endpoint costs the job at most the
//! bounded phase and leaves its result alone; without the capability nothing is sent.

use std::time::{Duration, Instant};

use act_runner::client::proto::runner::Result as TaskResult;

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::support::fake_gitea::{FakeGitea, TaskSpec};

async fn start(capabilities: Option<&str>) -> (FakeGitea, RunnerDir, Daemon) {
    let gitea = start_fake().await;
    gitea.set_declare_capabilities(capabilities);
    let dir = RunnerDir::register(&gitea, "summaries:host", "").await;
    let daemon = Daemon::start(&dir, &[]).await;
    (gitea, dir, daemon)
}

const TWO_STEPS: &str = r###"on: push
jobs:
  build:
    runs-on: summaries
    steps:
      - run: |
          echo "# Build" >> "$GITHUB_STEP_SUMMARY"
          echo "token ${{ secrets.DEPLOY_KEY }}" >> "$GITHUB_STEP_SUMMARY"
      - run: echo no summary here
      - run: echo "## Tests passed" >> "$GITHUB_STEP_SUMMARY"
"###;

#[tokio::test]
async fn a_summary_written_by_two_steps_arrives_one_put_per_step() {
    bounded(async {
        let (gitea, _dir, daemon) = start(Some("job-summary")).await;
        let spec = TaskSpec::from_workflow(TWO_STEPS)
            .unwrap()
            .with_run_id(41)
            .with_secret("DEPLOY_KEY", "hunter2-secret");
        let task_id = gitea.enqueue_task(spec);
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        let puts = gitea.step_summaries();
        let shown: Vec<(i64, String)> = puts
            .iter()
            .map(|put| {
                (
                    put.step_idx,
                    String::from_utf8_lossy(&put.body).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (0, "# Build\ntoken ***\n".to_string()),
                (2, "## Tests passed\n".to_string())
            ],
            "{}",
            daemon.log()
        );
        for put in &puts {
            assert_eq!(
                (put.task_id, put.run_id, put.job_id),
                (task_id, 41, task_id + 10_000)
            );
            assert!(put.content_type.starts_with("text/markdown"), "{put:?}");
        }
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_3_mib_summary_arrives_cut_to_1_mib_with_the_marker() {
    bounded(async {
        let (gitea, _dir, daemon) = start(Some("cancelling,job-summary")).await;
        let workflow = "on: push\njobs:\n  big:\n    runs-on: summaries\n    steps:\n      - run: head -c 3145728 /dev/zero | tr '\\0' 'x' >> \"$GITHUB_STEP_SUMMARY\"\n";
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        let puts = gitea.step_summaries();
        assert_eq!(puts.len(), 1, "{}", daemon.log());
        let body = String::from_utf8(puts[0].body.clone()).unwrap();
        assert!(body.len() <= 1024 * 1024, "{} bytes", body.len());
        assert!(body.len() > 1024 * 1024 - 200, "{} bytes", body.len());
        assert!(body.starts_with("xxxx"));
        assert!(
            body.ends_with("**This step summary was truncated: a step's summary may hold at most 1 MiB.**\n"),
            "{}",
            &body[body.len() - 120..]
        );
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_summary_endpoint_costs_at_most_the_bounded_phase() {
    bounded(async {
        let (gitea, _dir, daemon) = start(Some("job-summary")).await;
        gitea.set_summaries_hang(true);
        let workflow = "on: push\njobs:\n  slow:\n    runs-on: summaries\n    steps:\n      - run: echo '# hi' >> \"$GITHUB_STEP_SUMMARY\"\n      - run: echo done\n";
        let started = Instant::now();
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
        let task = gitea
            .wait_task_final(task_id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("not final: {}", daemon.log()));
        let elapsed = started.elapsed();
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        // The phase is 15 s; the job itself takes about a second.
        assert!(elapsed < Duration::from_secs(22), "{elapsed:?}");
        assert!(elapsed >= Duration::from_secs(14), "the endpoint was not tried: {elapsed:?}");
        assert!(gitea.summary_requests() >= 1);
        assert!(gitea.step_summaries().is_empty());
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn without_the_capability_no_summary_is_sent() {
    bounded(async {
        let (gitea, _dir, daemon) = start(None).await;
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(TWO_STEPS).unwrap());
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        assert_eq!(gitea.summary_requests(), 0);
        daemon.stop().await;
    })
    .await;
}
