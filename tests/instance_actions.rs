//! Actions from the task's own Gitea (issue 19, item 6): the fake Gitea serves a private action
//! over git smart HTTP to the task token only; a second host (another loopback address) serves a
//! public one and records what it was sent. The daemon must fetch the private action with the
//! token, given to `git` through its environment (never its arguments), and send the token nowhere
//! else: not to the second host, not into a log, not into the action cache.

use std::path::Path;

use act_runner::client::proto::runner::Result as TaskResult;
use serde_json::json;

use crate::daemon::harness::{Daemon, REGISTRATION_TOKEN, RunnerDir, bounded};
use crate::remote_actions::bare_repository;
use crate::support::fake_gitea::git_http::{GitHttp, GitHttpServer};
use crate::support::fake_gitea::{FakeGitea, FakeOptions, TaskSpec};

/// A composite action printing `<label> action ran` (and its input, when given).
fn action_source(dir: &Path, label: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let action = format!(
        "name: {label}\ndescription: test\ninputs:\n  word:\n    default: none\nruns:\n  using: composite\n  steps:\n    - shell: sh\n      run: echo \"{label} action ran with ${{{{ inputs.word }}}}\"\n"
    );
    std::fs::write(dir.join("action.yml"), action).unwrap();
}

/// A `git` in front of the real one that records its arguments and whether the configuration it
/// was given turns TLS verification off for `url`.
fn git_wrapper(dir: &Path, url: &str) -> std::path::PathBuf {
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = dir.join("git-calls.log");
    let script = format!(
        "#!/bin/sh\necho \"argv: $*\" >> '{record}'\necho \"sslverify: $('{real}' config --get-urlmatch http.sslverify '{url}/o/r')\" >> '{record}'\nexec '{real}' \"$@\"\n",
        record = record.display(),
        real = real.trim(),
    );
    let wrapper = bin.join("git");
    std::fs::write(&wrapper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Every file name and file content under `dir`, as text.
fn tree_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        text.push_str(&entry.path().to_string_lossy());
        text.push('\n');
        if entry.file_type().is_file() {
            text.push_str(&String::from_utf8_lossy(
                &std::fs::read(entry.path()).unwrap_or_default(),
            ));
        }
    }
    text
}

#[tokio::test]
async fn actions_on_the_instance_are_fetched_with_the_task_token_and_it_goes_nowhere_else() {
    bounded(async {
        let repos = tempfile::tempdir().unwrap();
        let sources = tempfile::tempdir().unwrap();
        action_source(&sources.path().join("private"), "private");
        action_source(&sources.path().join("public"), "public");
        bare_repository(
            &sources.path().join("private"),
            &repos.path().join("instance/acme/private-action"),
        );
        bare_repository(
            &sources.path().join("public"),
            &repos.path().join("elsewhere/acme/public-action"),
        );
        let gitea = FakeGitea::start(FakeOptions {
            git_root: Some(repos.path().join("instance")),
            ..FakeOptions::default()
        })
        .await
        .unwrap();
        gitea.add_registration_token(REGISTRATION_TOKEN);
        let elsewhere = GitHttpServer::start(
            "127.0.0.2:0".parse().unwrap(),
            GitHttp::new(&repos.path().join("elsewhere"), None),
        )
        .await;

        let dir = RunnerDir::register(&gitea, "host-test:host", "  insecure: true\n").await;
        let bin = git_wrapper(dir.path(), &gitea.connect_url());
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let daemon = Daemon::start_with_env(&dir, &[], &[("PATH", &path)]).await;
        let workflow = format!(
            "on: push\njobs:\n  use:\n    runs-on: host-test\n    steps:\n      - uses: acme/private-action@v1\n        with:\n          word: bare\n      - uses: {instance}/acme/private-action@main\n        with:\n          word: absolute\n      - uses: {elsewhere}/acme/public-action@v1\n",
            instance = gitea.connect_url(),
            elsewhere = elsewhere.url(),
        );
        let task_id = gitea.enqueue_task(
            TaskSpec::from_workflow(&workflow)
                .unwrap()
                .with_context("gitea_default_actions_url", json!(gitea.connect_url())),
        );
        let task = daemon.wait_final(&gitea, task_id).await;
        let rows = gitea.task_log_lines(task_id);
        assert_eq!(
            task.result,
            TaskResult::Success,
            "{rows:#?}\n{}",
            daemon.log()
        );
        for expected in [
            "private action ran with bare",
            "private action ran with absolute",
            "public action ran with none",
        ] {
            assert!(rows.iter().any(|row| row == expected), "{expected}: {rows:#?}");
        }
        let token = gitea.task_token(task_id).unwrap();
        let authorized = gitea
            .git_requests()
            .iter()
            .filter(|(_, header)| {
                crate::support::fake_gitea::git_http::basic_token(header).as_deref() == Some(token.as_str())
            })
            .count();
        assert!(authorized >= 2, "{:#?}", gitea.git_requests());
        let sent_elsewhere = elsewhere.git.requests();
        assert!(!sent_elsewhere.is_empty(), "the second host was asked");
        assert!(
            sent_elsewhere.iter().all(|(_, header)| header.is_empty()),
            "the second host got credentials: {sent_elsewhere:#?}"
        );

        let calls = std::fs::read_to_string(dir.path().join("git-calls.log")).unwrap();
        assert!(
            calls.contains("sslverify: false"),
            "runner.insecure did not reach git: {calls}"
        );
        daemon.stop().await;
        let encoded = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
        };
        for (what, text) in [
            ("git's arguments", calls),
            ("the task log", rows.join("\n")),
            // The daemon's log, its spool and the action cache are all in there.
            ("the runner directory", tree_text(dir.path())),
        ] {
            assert!(!text.contains(&token), "the token is in {what}");
            assert!(!text.contains(&encoded), "the encoded token is in {what}");
        }
    })
    .await;
}

/// A fake Gitea serving `owner/repo` with `called` as `.gitea/workflows/called.yml`, and a host
/// daemon registered to it; the repository's sha.
async fn serve_called_workflow(
    repos: &Path,
    called: &str,
) -> (FakeGitea, RunnerDir, Daemon, String) {
    let source = tempfile::tempdir().unwrap();
    let workflows = source.path().join(".gitea/workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    std::fs::write(workflows.join("called.yml"), called).unwrap();
    let sha = bare_repository(source.path(), &repos.join("owner/repo"));
    let gitea = FakeGitea::start(FakeOptions {
        git_root: Some(repos.to_path_buf()),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    gitea.add_registration_token(REGISTRATION_TOKEN);
    let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
    let daemon = Daemon::start(&dir, &[]).await;
    (gitea, dir, daemon, sha)
}

/// Item 7 with the daemon: a task whose job `uses:` a workflow of its own (private) repository is
/// run runner-side, the workflow fetched from the instance at `github.sha` with the task token;
/// inputs, inherited secrets and outputs reach where they belong.
#[tokio::test]
async fn a_reusable_workflow_of_the_tasks_own_repository_runs_inside_the_task() {
    bounded(async {
        let repos = tempfile::tempdir().unwrap();
        let called = "on:\n  workflow_call:\n    inputs:\n      name:\n        type: string\n    outputs:\n      greeting:\n        value: ${{ jobs.greet.outputs.greeting }}\njobs:\n  greet:\n    runs-on: host-test\n    outputs:\n      greeting: ${{ steps.make.outputs.greeting }}\n    steps:\n      - id: make\n        run: |\n          echo \"called ran for ${{ inputs.name }} with ${{ secrets.MY_SECRET }}\"\n          echo \"greeting=hello ${{ inputs.name }}\" >> \"$GITHUB_OUTPUT\"\n  after:\n    needs: greet\n    runs-on: host-test\n    steps:\n      - run: test \"${{ needs.greet.outputs.greeting }}\" = \"hello daemon\"\n";
        let (gitea, _dir, daemon, sha) = serve_called_workflow(repos.path(), called).await;
        let caller = "on: push\njobs:\n  call:\n    runs-on: host-test\n    uses: ./.gitea/workflows/called.yml\n    with:\n      name: daemon\n    secrets: inherit\n";
        let task_id = gitea.enqueue_task(
            TaskSpec::from_workflow(caller)
                .unwrap()
                .with_secret("MY_SECRET", "hunter2-secret")
                .with_context("sha", json!(sha)),
        );
        let task = daemon.wait_final(&gitea, task_id).await;
        let rows = gitea.task_log_lines(task_id);
        assert_eq!(
            task.result,
            TaskResult::Success,
            "{rows:#?}\n{}",
            daemon.log()
        );
        assert!(
            rows.iter().any(|row| row == "called ran for daemon with ***"),
            "{rows:#?}"
        );
        assert!(rows.iter().all(|row| !row.contains("hunter2-secret")));
        assert_eq!(
            gitea.task_outputs(task_id),
            [("greeting".to_string(), "hello daemon".to_string())]
        );
        let steps = task.final_state.unwrap().steps;
        assert_eq!(steps.len(), 2, "one step per called job's step");
        assert!(
            steps
                .iter()
                .all(|step| step.result == TaskResult::Success as i32)
        );
        daemon.stop().await;
    })
    .await;
}

/// Gitea names a task's steps from its payload's `steps:`, so a job that `uses:` a workflow has
/// none there (the fake, like Gitea, creates no step row for it): every called step, of every
/// matrix leg and nested call, shows in the log as a group named after it, its output inside
/// and its result after, and the step ranges the runner reports cover exactly those rows.
#[tokio::test]
async fn every_leg_of_a_called_matrix_job_names_its_steps_in_the_log() {
    bounded(async {
        let repos = tempfile::tempdir().unwrap();
        let called = "on: workflow_call\njobs:\n  build:\n    runs-on: host-test\n    strategy:\n      matrix:\n        n: [1, 2, 3]\n    steps:\n      - name: greet\n        run: echo \"leg ${{ matrix.n }} greets\"\n      - run: echo \"leg ${{ matrix.n }} ends\"\n";
        let (gitea, _dir, daemon, sha) = serve_called_workflow(repos.path(), called).await;
        let caller = "on: push\njobs:\n  call:\n    runs-on: host-test\n    uses: ./.gitea/workflows/called.yml\n";
        let task_id = gitea.enqueue_task(
            TaskSpec::from_workflow(caller)
                .unwrap()
                .with_context("sha", json!(sha)),
        );
        let task = daemon.wait_final(&gitea, task_id).await;
        let rows = gitea.task_log_lines(task_id);
        assert_eq!(task.result, TaskResult::Success, "{rows:#?}\n{}", daemon.log());
        assert!(task.steps.is_empty(), "Gitea holds no step of a `uses:` job");
        let steps = task.final_state.unwrap().steps;
        assert_eq!(steps.len(), 6, "two steps for each of three legs: {steps:#?}");
        for (step, (leg, name, says)) in steps.iter().zip(
            (1..=3).flat_map(|n| [(n, "greet", "greets"), (n, "Run echo \"leg ${{ matrix.n }} ends\"", "ends")]),
        ) {
            let title = format!("build ({leg}/3): {name}");
            let first = step.log_index as usize;
            let ran: Vec<&str> = rows[first..first + step.log_length as usize]
                .iter()
                .map(String::as_str)
                .collect();
            assert_eq!(
                ran,
                [
                    format!("::group::{title}").as_str(),
                    format!("leg {leg} {says}").as_str(),
                    "::endgroup::",
                    format!("✅ Success - {title}").as_str(),
                ],
                "{rows:#?}"
            );
            assert_eq!(step.result, TaskResult::Success as i32);
        }
        daemon.stop().await;
    })
    .await;
}
