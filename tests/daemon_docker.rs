//! The daemon with the Docker backend, end to end against the real engine: a task whose `runs-on`
//! maps to `docker://act-runner-test/debian:12` runs its steps in a job container and reports
//! SUCCESS with its rows; orphaned containers of this runner are removed at start.
//! Without Docker (or the local test image) these tests fail when `CI` is set, and are skipped
//! with a printed reason otherwise.

use std::time::Duration;

use act_runner::client::proto::runner::Result as TaskResult;

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::support::fake_gitea::TaskSpec;

pub const IMAGE: &str = "act-runner-test/debian:12";

/// True when Docker and the test image are there; otherwise fails under `CI`, else says why.
pub async fn docker_ready() -> bool {
    let inspect = tokio::process::Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let ready = matches!(
        tokio::time::timeout(Duration::from_secs(30), inspect).await,
        Ok(Ok(status)) if status.success()
    );
    let reason = format!("Docker or the image {IMAGE} is missing (tests/support/images/build.sh)");
    crate::support::require(ready, &reason)
}

pub async fn docker(args: &[&str]) -> String {
    let output = tokio::process::Command::new("docker").args(args).output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("docker answers")
        .expect("docker runs");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test]
async fn a_docker_task_runs_in_a_job_container_and_succeeds() {
    if !docker_ready().await {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, &format!("docker-test:docker://{IMAGE}"), "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  build:\n    runs-on: docker-test\n    steps:\n      - name: where\n        run: |\n          echo \"in container: $(test -f /.dockerenv && echo yes)\"\n          cat /etc/debian_version\n      - name: second\n        run: echo second step\n";
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
        let task = gitea
            .wait_task_final(task_id, Duration::from_secs(180))
            .await
            .unwrap_or_else(|| panic!("task not final; daemon log:\n{}", daemon.log()));
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        let rows: Vec<String> = gitea.task_logs(task_id).into_iter().map(|row| row.content).collect();
        assert!(rows.iter().any(|row| row == "in container: yes"), "{rows:#?}");
        assert!(rows.iter().any(|row| row == "second step"), "{rows:#?}");
        let steps = task.final_state.unwrap().steps;
        assert_eq!(steps.len(), 2);
        let second = &steps[1];
        let second_rows = &rows[second.log_index as usize..(second.log_index + second.log_length) as usize];
        assert!(second_rows.iter().any(|row| row == "second step"), "{second_rows:?}");
        daemon.stop().await;
        let left = docker(&["ps", "-aq", "--filter", &format!("label=act-runner.task-id={task_id}")]).await;
        assert!(left.is_empty(), "job containers left behind: {left}");
    })
    .await;
}

#[tokio::test]
async fn orphaned_containers_of_this_runner_are_removed_at_start() {
    if !docker_ready().await {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, &format!("docker-test:docker://{IMAGE}"), "").await;
        let registration: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(".runner")).unwrap())
                .unwrap();
        let uuid = registration["uuid"].as_str().unwrap().to_string();
        let orphan = docker(&[
            "run",
            "-d",
            "--label",
            &format!("com.gitea.runner.uuid={uuid}"),
            "--label",
            "act-runner.task-id=999999",
            IMAGE,
            "sleep",
            "300",
        ])
        .await;
        let stranger = docker(&[
            "run",
            "-d",
            "--label",
            "com.gitea.runner.uuid=someone-else",
            "--label",
            "act-runner.task-id=999999",
            IMAGE,
            "sleep",
            "300",
        ])
        .await;
        assert!(!orphan.is_empty() && !stranger.is_empty());
        let daemon = Daemon::start(&dir, &[]).await;
        let mut removed = false;
        for _ in 0..100 {
            if docker(&[
                "ps",
                "-aq",
                "--no-trunc",
                "--filter",
                &format!("id={orphan}"),
            ])
            .await
            .is_empty()
            {
                removed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let stranger_alive = !docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("id={stranger}"),
        ])
        .await
        .is_empty();
        docker(&["rm", "-f", &stranger]).await;
        docker(&["rm", "-f", &orphan]).await;
        assert!(removed, "the orphan was not removed: {}", daemon.log());
        assert!(stranger_alive, "another runner's container was removed");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_host_label_job_with_a_container_runs_in_docker_with_the_runners_proxy() {
    if !docker_ready().await {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let labels = format!("host-test:host,docker-test:docker://{IMAGE}");
        let dir = RunnerDir::register(&gitea, &labels, "").await;
        let env = [
            ("HTTPS_PROXY", "http://proxy.invalid:3128"),
            ("no_proxy", "internal.invalid"),
        ];
        let daemon = Daemon::start_with_env(&dir, &[], &env).await;
        let workflow = format!(
            "on: push\njobs:\n  proxied:\n    runs-on: host-test\n    container: {IMAGE}\n    steps:\n      - run: |\n          test -n '${{{{ job.container.id }}}}'\n          case \"$GITHUB_WORKSPACE\" in /workspace/*) ;; *) exit 1 ;; esac\n          test \"$HTTPS_PROXY\" = http://proxy.invalid:3128\n          test \"$no_proxy\" = internal.invalid\n"
        );
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(&workflow).unwrap());
        let task = gitea
            .wait_task_final(task_id, Duration::from_secs(180))
            .await
            .unwrap_or_else(|| panic!("task not final; daemon log:\n{}", daemon.log()));
        assert_eq!(
            task.result,
            TaskResult::Success,
            "{:#?}",
            gitea.task_log_lines(task_id)
        );
        daemon.stop().await;
    })
    .await;
}

/// Issue 23: a runner whose labels are all `host` keeps no spare Docker networks, even though
/// the engine answers (it is probed for jobs no label matches).
#[tokio::test]
async fn a_host_only_runner_creates_no_docker_network() {
    if !docker_ready().await {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-only:host", "").await;
        let registration: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(".runner")).unwrap())
                .unwrap();
        let uuid = registration["uuid"].as_str().unwrap().to_string();
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  build:\n    runs-on: host-only\n    steps:\n      - run: echo on the host\n";
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        // Spares are created at start and after each job: give them time to show up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let filter = format!("label=com.gitea.runner.uuid={uuid}");
        let networks = docker(&["network", "ls", "-q", "--filter", &filter]).await;
        daemon.stop().await;
        assert!(networks.is_empty(), "networks of a host-only runner: {networks}");
    })
    .await;
}
