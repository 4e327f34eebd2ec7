//! The keys that write files or run scripts on the runner's behalf, end to end through a daemon
//! and the fake Gitea: `log.job.*` (a masked local copy of each task's log, modes, cap,
//! retention), `runner.post_task_script` (+ `_timeout`: its environment, its output in the
//! runner's log, the group kill), and `runner.hooks.job_started` / `job_completed` (and their
//! `ACTIONS_RUNNER_HOOK_JOB_*` fallback in `runner.envs`) on the host and inside a Docker job
//! container.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use act_runner::client::proto::runner::Result as TaskResult;

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::daemon_docker::{IMAGE as DOCKER_IMAGE, docker_ready};
use crate::support::fake_gitea::{FakeGitea, TaskSpec};

/// Adds `lines` (indented for `log.job:`) to the runner's config.
fn set_log_job(dir: &RunnerDir, lines: &str) {
    let path = dir.config_path();
    let config = std::fs::read_to_string(&path).unwrap();
    let config = config.replacen(
        "log:\n  level: info\n",
        &format!("log:\n  level: info\n  job:\n{lines}"),
        1,
    );
    assert!(config.contains("  job:\n"), "{config}");
    std::fs::write(&path, config).unwrap();
}

/// Appends a top-level section to the runner's config.
fn append_config(dir: &RunnerDir, text: &str) {
    let path = dir.config_path();
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str(text);
    std::fs::write(&path, config).unwrap();
}

/// Writes an executable script.
fn script(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Waits (at most 30 s) until `check` holds.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..300 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The one task log in `logs`, once its trailer is written.
async fn finished_copy(logs: &Path, task_id: i64) -> (PathBuf, String) {
    let name_end = format!("-task-{task_id}.log");
    let find = || {
        std::fs::read_dir(logs)
            .ok()?
            .flatten()
            .map(|entry| entry.path())
            .find(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.ends_with(&name_end))
            })
    };
    let trailer = format!("[runner] task {task_id} finished: ");
    let done = eventually(|| {
        find().is_some_and(|path| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .contains(&trailer)
        })
    })
    .await;
    assert!(
        done,
        "no finished copy of task {task_id} in {}",
        logs.display()
    );
    let path = find().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

/// A line's content after its `2026-12-07T10:20:31.250Z ` stamp.
fn content(line: &str) -> &str {
    line.split_once(' ').map_or("", |(_, rest)| rest)
}

async fn run_task(
    gitea: &FakeGitea,
    daemon: &Daemon,
    spec: TaskSpec,
) -> (i64, TaskResult, Vec<String>) {
    let task_id = gitea.enqueue_task(spec);
    let task = daemon.wait_final(gitea, task_id).await;
    (task_id, task.result, gitea.task_log_lines(task_id))
}

#[tokio::test]
async fn log_job_dir_keeps_the_masked_rows_gitea_got_in_a_private_file() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let logs = dir.path().join("state/job-logs");
        set_log_job(&dir, &format!("    dir: {}\n", logs.display()));
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  build:\n    runs-on: host-test\n    steps:\n      - run: echo \"the secret is ${{ secrets.DEPLOY_KEY }}\"\n      - run: |\n          echo '::add-mask::runtime-mask-value'\n          echo 'then runtime-mask-value'\n";
        let spec = TaskSpec::from_workflow(workflow)
            .unwrap()
            .with_secret("DEPLOY_KEY", "s3cr3t-deploy-value");
        let (task_id, result, rows) = run_task(&gitea, &daemon, spec).await;
        assert_eq!(result, TaskResult::Success, "{}", daemon.log());
        let (path, text) = finished_copy(&logs, task_id).await;
        assert_eq!(mode(&logs), 0o700, "log.job.dir");
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        assert!(!text.contains("s3cr3t-deploy-value") && !text.contains("runtime-mask-value"), "{text}");
        assert!(text.contains("the secret is ***") && text.contains("then ***"), "{text}");
        let copied: Vec<&str> = text
            .lines()
            .map(content)
            .filter(|line| !line.starts_with("[runner] "))
            .collect();
        assert_eq!(copied, rows, "the copy holds exactly the rows Gitea got");
        let last = text.lines().last().unwrap();
        assert_eq!(content(last), format!("[runner] task {task_id} finished: success"));
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn log_job_max_size_caps_a_copy_and_retention_removes_old_ones_at_the_next_task() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let logs = dir.path().join("job-logs");
        std::fs::create_dir(&logs).unwrap();
        let expired = logs.join("20000101-000000-task-1.log");
        let recent_name = {
            let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(60)).to_string();
            let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
            format!("{}-{}-task-2.log", &digits[..8], &digits[8..])
        };
        let recent = logs.join(recent_name);
        let unrelated = logs.join("notes.txt");
        for path in [&expired, &recent, &unrelated] {
            std::fs::write(path, "kept?\n").unwrap();
        }
        set_log_job(&dir, &format!("    dir: {}\n    retention: 1h\n    max_size: 2KB\n", logs.display()));
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  build:\n    runs-on: host-test\n    steps:\n      - run: for n in $(seq 1 300); do echo \"line $n of a long log\"; done\n";
        let (task_id, result, rows) = run_task(&gitea, &daemon, TaskSpec::from_workflow(workflow).unwrap()).await;
        assert_eq!(result, TaskResult::Success, "{}", daemon.log());
        assert!(rows.iter().any(|row| row == "line 300 of a long log"), "Gitea still gets every row");
        let (path, text) = finished_copy(&logs, task_id).await;
        assert!(!expired.exists(), "a copy older than log.job.retention is removed");
        assert!(recent.exists() && unrelated.exists());
        let size = std::fs::metadata(&path).unwrap().len();
        // The cap, plus the truncation line and the trailer past it.
        assert!(size <= 2048 + 200, "{size} bytes:\n{text}");
        let truncated = "[runner] truncated: log.job.max_size of 2048 bytes reached";
        assert_eq!(text.lines().filter(|line| content(line) == truncated).count(), 1, "{text}");
        assert!(!text.contains("line 300 of a long log"), "{text}");
        assert_eq!(
            content(text.lines().last().unwrap()),
            format!("[runner] task {task_id} finished: success")
        );
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_post_task_script_runs_after_each_task_with_the_runner_envs_and_the_task() {
    bounded(async {
        let gitea = start_fake().await;
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("env.txt");
        let post = script(
            &scratch.path().join("post.sh"),
            &format!("#!/bin/sh\n/usr/bin/env > {}\necho post-task-says-hello\necho to-stderr >&2\nexit 2\n", out.display()),
        );
        let extra = format!(
            "  post_task_script: {}\n  post_task_script_timeout: 30s\n  envs:\n    CUSTOM: from-runner\n",
            post.display()
        );
        let dir = RunnerDir::register(&gitea, "host-test:host", &extra).await;
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  build:\n    runs-on: host-test\n    steps:\n      - run: exit 3\n";
        let (task_id, result, _) = run_task(&gitea, &daemon, TaskSpec::from_workflow(workflow).unwrap()).await;
        assert_eq!(result, TaskResult::Failure);
        assert!(
            eventually(|| daemon.log().contains("the post-task script failed")).await,
            "{}",
            daemon.log()
        );
        let env = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = env.lines().collect();
        for expected in [
            format!("GITEA_TASK_ID={task_id}"),
            "GITEA_JOB_RESULT=failure".to_string(),
            "GITEA_REPOSITORY=owner/repo".to_string(),
            format!("GITEA_RUN_ID={task_id}"),
            "CUSTOM=from-runner".to_string(),
        ] {
            assert!(lines.contains(&expected.as_str()), "no {expected}:\n{env}");
        }
        let work = dir.path().join("work");
        let workspace = lines
            .iter()
            .find_map(|line| line.strip_prefix("GITEA_WORKSPACE="))
            .unwrap_or_else(|| panic!("no GITEA_WORKSPACE:\n{env}"));
        assert!(Path::new(workspace).starts_with(&work), "{workspace}");
        assert!(!lines.iter().any(|line| line.starts_with("PATH=")), "only runner.envs:\n{env}");
        let log = daemon.log();
        assert!(log.contains("post-task-says-hello") && log.contains("to-stderr"), "{log}");
        assert!(!gitea.task_log_lines(task_id).iter().any(|row| row.contains("post-task-says-hello")));
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_post_task_script_past_its_timeout_is_killed_with_its_children_and_the_slot_freed() {
    bounded(async {
        let gitea = start_fake().await;
        let scratch = tempfile::tempdir().unwrap();
        let pid_file = scratch.path().join("child.pid");
        let post = script(
            &scratch.path().join("post.sh"),
            &format!("#!/bin/sh\n/bin/sleep 120 &\necho $! > {}\nwait\n", pid_file.display()),
        );
        let extra = format!("  capacity: 1\n  post_task_script: {}\n  post_task_script_timeout: 1s\n", post.display());
        let dir = RunnerDir::register(&gitea, "host-test:host", &extra).await;
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  build:\n    runs-on: host-test\n    steps:\n      - run: echo one\n";
        let (_, first, _) = run_task(&gitea, &daemon, TaskSpec::from_workflow(workflow).unwrap()).await;
        assert_eq!(first, TaskResult::Success);
        // With one slot, the next task only starts once the script was killed.
        let (_, second, _) = run_task(&gitea, &daemon, TaskSpec::from_workflow(workflow).unwrap()).await;
        assert_eq!(second, TaskResult::Success);
        assert!(daemon.log().contains("the post-task script timed out and was killed"), "{}", daemon.log());
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
        let gone = eventually(|| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.is_empty() || stat.contains(") Z ")
        })
        .await;
        assert!(gone, "the script's background child {pid} outlived the timeout");
        daemon.stop().await;
    })
    .await;
}

/// Hook scripts in `dir`: the started one exports a variable and masks a value, the completed
/// one prints what the job exported and fails with `completed_exit`.
fn hook_scripts(dir: &Path, completed_exit: i32) -> (PathBuf, PathBuf) {
    let started = script(
        &dir.join("started.sh"),
        "echo \"started hook in $GITHUB_WORKSPACE\"\necho '::add-mask::hook-masked-value'\necho 'FROM_HOOK=hook-was-here' >> \"$GITHUB_ENV\"\necho started hook ran\n",
    );
    let completed = script(
        &dir.join("completed.sh"),
        &format!("echo \"completed hook saw ${{FROM_HOOK:-nothing}}\"\nexit {completed_exit}\n"),
    );
    (started, completed)
}

const HOOKED_STEPS: &str = "    steps:\n      - run: echo \"step sees $FROM_HOOK\"\n      - run: echo 'print hook-masked-value'\n";

fn position(rows: &[String], line: &str) -> usize {
    rows.iter()
        .position(|row| row == line)
        .unwrap_or_else(|| panic!("no row {line:?}: {rows:#?}"))
}

#[tokio::test]
async fn job_hooks_run_on_the_host_before_the_first_step_and_after_the_last() {
    bounded(async {
        let gitea = start_fake().await;
        let scratch = tempfile::tempdir().unwrap();
        let (started, completed) = hook_scripts(scratch.path(), 0);
        let extra = format!(
            "  hooks:\n    job_started: {}\n    job_completed: {}\n",
            started.display(),
            completed.display()
        );
        let dir = RunnerDir::register(&gitea, "host-test:host", &extra).await;
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = format!("on: push\njobs:\n  build:\n    runs-on: host-test\n{HOOKED_STEPS}");
        let (_, result, rows) =
            run_task(&gitea, &daemon, TaskSpec::from_workflow(&workflow).unwrap()).await;
        assert_eq!(result, TaskResult::Success, "{rows:#?}");
        let group = position(&rows, &format!("::group::Run '{}'", started.display()));
        let announced = position(
            &rows,
            "A job started hook has been configured by the runner administrator",
        );
        let shell = position(&rows, "shell: bash -e {0}");
        let ran = position(&rows, "started hook ran");
        let step = position(&rows, "step sees hook-was-here");
        let completed_at = position(&rows, "completed hook saw hook-was-here");
        assert!(
            group < announced
                && announced < shell
                && shell < ran
                && ran < step
                && step < completed_at,
            "{rows:#?}"
        );
        let workspace = dir.path().join("work");
        assert!(
            rows.iter().any(|row| row
                .strip_prefix("started hook in ")
                .is_some_and(|path| Path::new(path).starts_with(&workspace))),
            "the hook sees the job's env: {rows:#?}"
        );
        assert!(
            rows.iter().any(|row| row == "print ***"),
            "the hook's add-mask holds: {rows:#?}"
        );
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_failing_started_hook_from_runner_envs_fails_the_job_before_its_steps() {
    bounded(async {
        let gitea = start_fake().await;
        let scratch = tempfile::tempdir().unwrap();
        let failing = script(&scratch.path().join("started"), "#!/bin/sh\necho refusing this job\nexit 4\n");
        let (_, completed) = hook_scripts(scratch.path(), 0);
        let extra = format!(
            "  envs:\n    ACTIONS_RUNNER_HOOK_JOB_STARTED: {}\n    ACTIONS_RUNNER_HOOK_JOB_COMPLETED: {}\n",
            failing.display(),
            completed.display()
        );
        let dir = RunnerDir::register(&gitea, "host-test:host", &extra).await;
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  build:\n    runs-on: host-test\n    steps:\n      - run: echo should-not-run\n      - if: always()\n        run: echo always-runs\n";
        let (_, result, rows) = run_task(&gitea, &daemon, TaskSpec::from_workflow(workflow).unwrap()).await;
        assert_eq!(result, TaskResult::Failure, "{rows:#?}");
        position(&rows, "refusing this job");
        position(&rows, &format!("::error::The job started hook '{}' failed", failing.display()));
        assert!(!rows.iter().any(|row| row == "should-not-run"), "{rows:#?}");
        position(&rows, "always-runs");
        position(&rows, "completed hook saw nothing");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn job_hooks_run_inside_the_docker_job_container_and_a_failing_completed_hook_fails_the_job()
{
    if !docker_ready().await {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let scratch = tempfile::tempdir().unwrap();
        let hooks = scratch.path().join("hooks");
        std::fs::create_dir(&hooks).unwrap();
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        hook_scripts(&hooks, 5);
        let extra = "  hooks:\n    job_started: /hooks/started.sh\n    job_completed: /hooks/completed.sh\n";
        let dir = RunnerDir::register(&gitea, &format!("docker-test:docker://{DOCKER_IMAGE}"), extra).await;
        append_config(
            &dir,
            &format!(
                "container:\n  options: -v {hooks}:/hooks:ro\n  valid_volumes:\n    - {hooks}\n",
                hooks = hooks.display()
            ),
        );
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = format!("on: push\njobs:\n  build:\n    runs-on: docker-test\n{HOOKED_STEPS}");
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(&workflow).unwrap());
        let task = gitea
            .wait_task_final(task_id, Duration::from_secs(180))
            .await
            .unwrap_or_else(|| panic!("task not final; daemon log:\n{}", daemon.log()));
        let rows = gitea.task_log_lines(task_id);
        assert_eq!(task.result, TaskResult::Failure, "{rows:#?}\n{}", daemon.log());
        // The job container's workspace; the hook's path exists only in that container, too.
        let in_container = position(&rows, "started hook in /workspace/owner/repo");
        let step = position(&rows, "step sees hook-was-here");
        let completed = position(&rows, "completed hook saw hook-was-here");
        assert!(in_container < step && step < completed, "{rows:#?}");
        position(&rows, "print ***");
        position(&rows, "::error::The job completed hook '/hooks/completed.sh' failed");
        daemon.stop().await;
    })
    .await;
}
