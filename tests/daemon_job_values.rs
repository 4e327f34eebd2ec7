//! What a daemon job sees of its task and the runner's settings: the `inputs` context of a
//! `workflow_dispatch` and `workflow_call` task (typed by the workflow's declarations, defaults
//! filled), `runner.set_act_env: false`, and a host-label job naming containers on a runner
//! without Docker (refused, saying why). A host-label job with `container:` on a runner with
//! Docker is in `daemon_docker.rs`.

use act_runner::client::proto::runner::Result as TaskResult;
use serde_json::json;

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::support::fake_gitea::TaskSpec;

const DISPATCH: &str = r#"
on:
  workflow_dispatch:
    inputs:
      target:
        type: choice
        options: [staging, prod]
        default: staging
      dry:
        type: boolean
        default: true
      count:
        type: number
        default: 3
      note:
        type: string
        default: hello
jobs:
  deploy:
    runs-on: host-test
    steps:
      - run: |
          test '${{ inputs.target }}' = prod
          test '${{ toJSON(inputs.dry) }}' = false
          test '${{ toJSON(inputs.count) }}' = 12
          test '${{ inputs.note }}' = hello
          test -z "${ACT:-}"
          echo INPUTS-OK
"#;

const CALLED: &str = r#"
on:
  workflow_call:
    inputs:
      flag:
        type: boolean
      level:
        type: number
        default: 7
jobs:
  called:
    runs-on: host-test
    steps:
      - run: |
          test '${{ toJSON(inputs.flag) }}' = true
          test '${{ toJSON(inputs.level) }}' = 7
"#;

#[tokio::test]
async fn inputs_are_typed_and_defaulted_and_act_env_follows_the_config() {
    bounded(async {
        let gitea = start_fake().await;
        let extra = "  set_act_env: false\n";
        let dir = RunnerDir::register(&gitea, "host-test:host", extra).await;
        let daemon = Daemon::start(&dir, &[]).await;
        let dispatch = TaskSpec::from_workflow(DISPATCH)
            .unwrap()
            .with_context("event_name", json!("workflow_dispatch"))
            .with_context(
                "event",
                json!({ "inputs": { "target": "prod", "dry": "false", "count": "12" } }),
            );
        let dispatch_id = gitea.enqueue_task(dispatch);
        let called = TaskSpec::from_workflow(CALLED)
            .unwrap()
            .with_context("event_name", json!("workflow_call"))
            .with_context("event", json!({ "inputs": { "flag": true } }));
        let called_id = gitea.enqueue_task(called);
        for task_id in [dispatch_id, called_id] {
            let task = daemon.wait_final(&gitea, task_id).await;
            assert_eq!(
                task.result,
                TaskResult::Success,
                "{:#?}",
                gitea.task_log_lines(task_id)
            );
        }
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_host_job_naming_containers_fails_saying_why_without_docker() {
    bounded(async {
        let gitea = start_fake().await;
        // No engine answers there: the daemon runs without Docker.
        let no_docker = "container:\n  docker_host: unix:///nonexistent/docker.sock\n";
        let dir = RunnerDir::register(&gitea, "host-test:host", no_docker).await;
        let daemon = Daemon::start(&dir, &[]).await;
        let container = "on: push\njobs:\n  j:\n    runs-on: host-test\n    container: act-runner-test/debian:12\n    steps:\n      - run: echo STEP-RAN\n";
        let services = "on: push\njobs:\n  j:\n    runs-on: host-test\n    services:\n      db:\n        image: act-runner-test/busybox\n    steps:\n      - run: echo STEP-RAN\n";
        for workflow in [container, services] {
            let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
            let task = daemon.wait_final(&gitea, task_id).await;
            assert_eq!(task.result, TaskResult::Failure);
            let lines = gitea.task_log_lines(task_id);
            assert!(
                lines.iter().any(|line| line.contains("runs no containers")),
                "{lines:#?}"
            );
            assert!(!lines.iter().any(|line| line == "STEP-RAN"), "{lines:#?}");
        }
        daemon.stop().await;
    })
    .await;
}
