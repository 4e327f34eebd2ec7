//! The keys that change how steps and job containers run, through the daemon on both backends
//! (issue 19, item 3): `runner.allocate_pty` (a step writes to a terminal, and its lines reach the
//! log as they would without one, masked across its streams), `runner.tool_cache_mode` (a file
//! in `RUNNER_TOOL_CACHE` outlives its job with `shared` only) and `container.bind_workdir` (the
//! workspace is a host directory under `/<workdir_parent>/<task id>` while the job runs, gone
//! after it; stale task directories are swept while the runner is idle).
//! Without Docker (or the local test image) these tests fail when `CI` is set, and are skipped
//! with a printed reason otherwise.

use std::path::Path;
use std::time::{Duration, SystemTime};

use act_runner::client::proto::runner::Result as TaskResult;

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::daemon_docker::{IMAGE, docker_ready};
use crate::support::fake_gitea::{FakeGitea, TaskSpec};

/// The two backends, by label.
const HOST: &str = "host-test";
const DOCKER: &str = "docker-test";

fn labels() -> String {
    format!("{HOST}:host,{DOCKER}:docker://{IMAGE}")
}

/// A one-job workflow running `script` on the runner label `label`.
fn workflow(label: &str, script: &str) -> String {
    let indented: String = script
        .lines()
        .map(|line| format!("          {line}\n"))
        .collect();
    format!("on: push\njobs:\n  j:\n    runs-on: {label}\n    steps:\n      - run: |\n{indented}")
}

/// Runs `workflow` as a task and returns its log rows once it succeeded.
async fn run_task(gitea: &FakeGitea, daemon: &Daemon, workflow: &str) -> Vec<String> {
    let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
    let task = gitea
        .wait_task_final(task_id, Duration::from_secs(120))
        .await
        .unwrap_or_else(|| panic!("task not final; daemon log:\n{}", daemon.log()));
    let rows = gitea.task_log_lines(task_id);
    assert_eq!(
        task.result,
        TaskResult::Success,
        "{rows:#?}\n{}",
        daemon.log()
    );
    rows
}

const TERMINAL_STEP: &str = r#"if test -t 0 && test -t 1 && test -t 2; then echo terminal=yes; else echo terminal=no; fi
echo "::add-mask::pty-secret-value"
echo "on stderr pty-secret-value" >&2
printf 'unterminated'"#;

/// Whether `row` looks like the wrapping `sh`'s report (`<32 hex> <status> <0|1>`), which must
/// never reach the log.
fn is_report(row: &str) -> bool {
    let fields: Vec<&str> = row.rsplitn(3, ' ').collect();
    matches!(fields.as_slice(), [written, status, marker]
        if (*written == "0" || *written == "1")
            && status.bytes().all(|byte| byte.is_ascii_digit())
            && marker.len() >= 32
            && marker[marker.len() - 32..].bytes().all(|byte| byte.is_ascii_hexdigit()))
}

#[tokio::test]
async fn allocate_pty_gives_steps_a_terminal_on_both_backends_and_the_same_log_lines() {
    if !docker_ready().await {
        return;
    }
    bounded(async {
        for (allocate_pty, expected) in [(true, "terminal=yes"), (false, "terminal=no")] {
            let gitea = start_fake().await;
            let extra = format!("  allocate_pty: {allocate_pty}\n");
            let dir = RunnerDir::register(&gitea, &labels(), &extra).await;
            let daemon = Daemon::start(&dir, &[]).await;
            for label in [HOST, DOCKER] {
                let rows = run_task(&gitea, &daemon, &workflow(label, TERMINAL_STEP)).await;
                let context = format!("{label}, allocate_pty: {allocate_pty}: {rows:#?}");
                assert!(rows.iter().any(|row| row == expected), "{context}");
                // No `\r` from the terminal's line ends, the mask holds on the merged stream, and
                // a last line without its newline stays whole, without the exec's report.
                assert!(rows.iter().all(|row| !row.contains('\r')), "{context}");
                assert!(rows.iter().any(|row| row == "on stderr ***"), "{context}");
                assert!(
                    rows.iter().all(|row| !row.contains("pty-secret-value")),
                    "{context}"
                );
                assert!(rows.iter().any(|row| row == "unterminated"), "{context}");
                assert!(!rows.iter().any(|row| is_report(row)), "{context}");
            }
            let log = daemon.log();
            assert!(
                !log.contains("runner.allocate_pty"),
                "a warning about the key:\n{log}"
            );
            daemon.stop().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_shared_tool_cache_outlives_the_job_on_both_backends_and_none_does_not() {
    if !docker_ready().await {
        return;
    }
    bounded(async {
        let name = format!("act-runner-test-{}", uuid::Uuid::new_v4().simple());
        let write = format!("mkdir -p \"$RUNNER_TOOL_CACHE\"\necho kept > \"$RUNNER_TOOL_CACHE/{name}\"");
        // The second job also removes the file: the shared volume is the engine's, not this test's.
        let read = format!(
            "if test -e \"$RUNNER_TOOL_CACHE/{name}\"; then echo tool-cache=kept; else echo tool-cache=own; fi\nrm -f \"$RUNNER_TOOL_CACHE/{name}\""
        );
        for (mode, expected) in [("shared", "tool-cache=kept"), ("none", "tool-cache=own")] {
            let gitea = start_fake().await;
            let extra = format!("  tool_cache_mode: {mode}\n");
            let dir = RunnerDir::register(&gitea, &labels(), &extra).await;
            let daemon = Daemon::start(&dir, &[]).await;
            for label in [HOST, DOCKER] {
                run_task(&gitea, &daemon, &workflow(label, &write)).await;
                let rows = run_task(&gitea, &daemon, &workflow(label, &read)).await;
                assert!(
                    rows.iter().any(|row| row == expected),
                    "{label}, tool_cache_mode: {mode}: {rows:#?}"
                );
            }
            if mode == "shared" {
                assert!(dir.path().join("work/tool_cache").is_dir(), "no shared host tool cache");
            }
            let log = daemon.log();
            assert!(!log.contains("runner.tool_cache_mode"), "a warning about the key:\n{log}");
            daemon.stop().await;
        }
    })
    .await;
}

/// Sets the modification time of `dir` to `age` ago.
fn age_dir(dir: &Path, age: Duration) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::File::open(dir)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

async fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
}

#[tokio::test]
async fn bind_workdir_puts_the_workspace_on_the_host_for_the_task_only() {
    if !docker_ready().await {
        return;
    }
    bounded(async {
        let bound = tempfile::tempdir().unwrap();
        let parent = bound.path().display().to_string();
        // What a crashed runner left: a task directory long unused, and a stranger's.
        let stale_task = bound.path().join("12345");
        let stranger = bound.path().join("not-a-task");
        age_dir(&stale_task.join("owner/repo"), Duration::from_secs(7200));
        age_dir(&stale_task, Duration::from_secs(7200));
        age_dir(&stranger, Duration::from_secs(7200));

        let gitea = start_fake().await;
        let extra = format!(
            "  workdir_cleanup_age: 1h\ncontainer:\n  bind_workdir: true\n  workdir_parent: {parent}\n"
        );
        let dir = RunnerDir::register(&gitea, &labels(), &extra).await;
        let daemon = Daemon::start(&dir, &[]).await;
        assert!(
            wait_for(Duration::from_secs(30), || !stale_task.exists()).await,
            "the stale task directory was not swept:\n{}",
            daemon.log()
        );
        assert!(stranger.exists(), "a directory that is no task's was removed");

        // The job writes into its workspace and waits for the test to answer through the host.
        let script = format!(
            "case \"$GITHUB_WORKSPACE\" in {parent}/*/owner/repo) ;; *) echo \"workspace: $GITHUB_WORKSPACE\"; exit 1 ;; esac\necho from-job > from-job\nfor i in $(seq 1 600); do test -e from-test && exit 0; sleep 0.1; done\nexit 1"
        );
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(&workflow(DOCKER, &script)).unwrap());
        let task_dir = bound.path().join(task_id.to_string());
        let workspace = task_dir.join("owner/repo");
        assert!(
            wait_for(Duration::from_secs(90), || workspace.join("from-job").exists()).await,
            "the job's file never appeared on the host; rows: {:#?}\n{}",
            gitea.task_log_lines(task_id),
            daemon.log()
        );
        std::fs::write(workspace.join("from-test"), "from-test").unwrap();
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Success, "{:#?}", gitea.task_log_lines(task_id));
        assert!(
            wait_for(Duration::from_secs(30), || !task_dir.exists()).await,
            "{} is left after the task:\n{}",
            task_dir.display(),
            daemon.log()
        );
        let log = daemon.log();
        assert!(!log.contains("container.bind_workdir"), "a warning about the key:\n{log}");
        daemon.stop().await;
    })
    .await;
}
