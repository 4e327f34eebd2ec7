//! Remote actions without the internet: the action sources in `tests/data/actions/` become bare git
//! repositories `acme/<name>` in a temporary directory, served as `file://` and by `git daemon`,
//! and the workflows in `tests/workflows/remote/` run through `act_runner exec` against them with
//! `--default-actions-url` on the host and the docker backend.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::exec_workflows::{DOCKER_TEST_IMAGE, docker_ready, run_workflow_with, workflows_dir};

/// The bare repositories and the action cache of one test.
struct Fixture {
    dir: tempfile::TempDir,
    /// `acme/node-action` at `v1`.
    node_action_sha: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/actions");
        let mut node_action_sha = String::new();
        for entry in std::fs::read_dir(&sources).unwrap() {
            let source = entry.unwrap().path();
            if !source.is_dir() {
                continue;
            }
            let name = source.file_name().unwrap().to_string_lossy().into_owned();
            let sha = bare_repository(&source, &dir.path().join("repos/acme").join(&name));
            if name == "node-action" {
                node_action_sha = sha;
            }
        }
        assert_eq!(node_action_sha.len(), 40);
        Fixture {
            dir,
            node_action_sha,
        }
    }

    fn file_url(&self) -> String {
        format!("file://{}", self.dir.path().join("repos").display())
    }

    fn cache_home(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// Runs `tests/workflows/remote/<name>` with the actions at `url`.
    fn run(&self, name: &str, backend: &str, url: &str) -> Result<(), String> {
        let path = workflows_dir().join("remote").join(name);
        let short = format!("SHORT={}", &self.node_action_sha[..7]);
        let full = format!("FULL={}", self.node_action_sha);
        let image_args: Vec<&str> = match backend {
            "host" => vec!["-i", "-self-hosted"],
            _ => vec!["-i", DOCKER_TEST_IMAGE],
        };
        let mut args = image_args;
        args.extend([
            "--default-actions-url",
            url,
            "--var",
            &short,
            "--var",
            &full,
        ]);
        let cache_home = self.cache_home();
        let env = [("XDG_CACHE_HOME", cache_home.to_str().unwrap())];
        run_workflow_with(&path, backend, &args, &env)
            .map_err(|problem| format!("{name} ({backend}): {problem}"))
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A bare repository at `bare` holding `source` as one commit on `main`, tagged `v1` (annotated).
pub fn bare_repository(source: &Path, bare: &Path) -> String {
    let work = tempfile::tempdir().unwrap();
    copy_tree(source, work.path());
    git(work.path(), &["init", "-q"]);
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "action"]);
    git(work.path(), &["tag", "-a", "v1", "-m", "v1"]);
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    git(
        work.path(),
        &["clone", "-q", "--bare", ".", bare.to_str().unwrap()],
    );
    git(work.path(), &["rev-parse", "HEAD"])
}

pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `git daemon` serving the fixture's repositories on a free local port; killed on drop.
struct GitDaemon {
    child: Child,
    url: String,
}

impl GitDaemon {
    fn start(fixture: &Fixture) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = fixture.dir.path().join("repos");
        // `git daemon` would run `git-daemon` as a child that outlives a kill of `git`: start it
        // directly, with no inherited output (a leftover would hold the test's pipes open).
        let exec_path = git(fixture.dir.path(), &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", base.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(&base)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon must be installed (the git package provides it)");
        let give_up = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < give_up,
                "git daemon did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        GitDaemon {
            child,
            url: format!("git://127.0.0.1:{port}"),
        }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn check(results: Vec<Result<(), String>>) {
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

const HOST_AND_DOCKER: [&str; 6] = [
    "node-pre-post.yml",
    "composite-nested.yml",
    "composite-depth.yml",
    "short-sha.yml",
    "full-sha.yml",
    "reusable-nested.yml",
];

#[test]
fn remote_actions_run_on_the_host_backend() {
    let fixture = Fixture::new();
    let url = fixture.file_url();
    check(
        HOST_AND_DOCKER
            .iter()
            .map(|name| fixture.run(name, "host", &url))
            .collect(),
    );
}

#[test]
fn a_full_sha_in_the_cache_is_used_without_fetching() {
    let fixture = Fixture::new();
    fixture
        .run("full-sha.yml", "host", &fixture.file_url())
        .unwrap();
    let cached = std::fs::read_dir(fixture.cache_home().join("act"))
        .unwrap()
        .count();
    assert_eq!(cached, 1, "one checkout in the action cache");
    // Nothing can be fetched from here: the run must use the cached checkout.
    fixture
        .run(
            "full-sha.yml",
            "host",
            "file:///nonexistent/act-runner-actions",
        )
        .unwrap();
}

#[test]
fn remote_actions_are_fetched_over_the_git_protocol() {
    let fixture = Fixture::new();
    let daemon = GitDaemon::start(&fixture);
    check(vec![
        fixture.run("node-pre-post.yml", "host", &daemon.url),
        fixture.run("composite-nested.yml", "host", &daemon.url),
    ]);
}

#[test]
fn remote_and_docker_actions_run_on_the_docker_backend() {
    if !docker_ready() {
        return;
    }
    let fixture = Fixture::new();
    let url = fixture.file_url();
    let mut results: Vec<Result<(), String>> = HOST_AND_DOCKER
        .iter()
        .map(|name| fixture.run(name, "docker", &url))
        .collect();
    results.push(fixture.run("docker-actions.yml", "docker", &url));
    check(results);
}

/// The daemon takes the default actions URL from the task (`gitea_default_actions_url`) and keeps
/// the fetched action under `host.workdir_parent`, named by `sha256(uses)`.
#[tokio::test]
async fn the_daemon_fetches_from_the_tasks_default_actions_url() {
    use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
    use crate::support::fake_gitea::TaskSpec;
    use act_runner::client::proto::runner::Result as TaskResult;
    use sha2::Digest;

    let fixture = Fixture::new();
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  remote:\n    runs-on: host-test\n    steps:\n      - uses: acme/node-action@v1\n        with:\n          who: daemon\n          marker: daemon\n";
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap().with_context(
            "gitea_default_actions_url",
            serde_json::Value::String(fixture.file_url()),
        ));
        let task = daemon.wait_final(&gitea, task_id).await;
        let lines = gitea.task_log_lines(task_id);
        assert_eq!(task.result, TaskResult::Success, "{lines:#?}\n{}", daemon.log());
        for wanted in ["pre ran for daemon", "main ran for daemon at v1", "post ran for daemon"] {
            assert!(lines.iter().any(|line| line.contains(wanted)), "{wanted}: {lines:#?}");
        }
        let key = hex::encode(sha2::Sha256::digest(b"acme/node-action@v1"));
        assert!(dir.path().join("work").join(key).join("action.yml").is_file());
        daemon.stop().await;
    })
    .await;
}

/// `cache.offline_mode` (about action checkouts, not the actions cache): an action missing from
/// the action cache is refused with the reason, and a cached one is used as it is, though its
/// ref is a tag and the actions URL leads nowhere.
#[tokio::test]
async fn offline_mode_uses_cached_action_checkouts_and_never_fetches() {
    use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
    use crate::support::fake_gitea::TaskSpec;
    use act_runner::client::proto::runner::Result as TaskResult;
    use sha2::Digest;

    let fixture = Fixture::new();
    bounded(async {
        let gitea = start_fake().await;
        let offline = "cache:\n  offline_mode: true\n";
        let dir = RunnerDir::register(&gitea, "host-test:host", offline).await;
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow = "on: push\njobs:\n  remote:\n    runs-on: host-test\n    steps:\n      - uses: acme/node-action@v1\n        with:\n          who: offline\n          marker: offline\n";
        let run = |actions_url: String| {
            let spec = TaskSpec::from_workflow(workflow).unwrap().with_context(
                "gitea_default_actions_url",
                serde_json::Value::String(actions_url),
            );
            let task_id = gitea.enqueue_task(spec);
            let daemon = &daemon;
            let gitea = &gitea;
            async move {
                let task = daemon.wait_final(gitea, task_id).await;
                (task.result, gitea.task_log_lines(task_id))
            }
        };

        let (result, lines) = run(fixture.file_url()).await;
        assert_eq!(result, TaskResult::Failure, "{lines:#?}");
        assert!(
            lines.iter().any(|line| line.contains("offline mode forbids fetching it")),
            "{lines:#?}"
        );

        let key = hex::encode(sha2::Sha256::digest(b"acme/node-action@v1"));
        let checkout = dir.path().join("work").join(key);
        let source = format!("{}/acme/node-action", fixture.file_url());
        git(fixture.dir.path(), &["clone", "-q", &source, checkout.to_str().unwrap()]);
        let (result, lines) = run("file:///nonexistent/act-runner-actions".into()).await;
        assert_eq!(result, TaskResult::Success, "{lines:#?}\n{}", daemon.log());
        assert!(
            lines.iter().any(|line| line.contains("main ran for offline at v1")),
            "{lines:#?}"
        );
        daemon.stop().await;
    })
    .await;
}
