//! Artifacts through Gitea and `runner.patch_actions` (issue 20), end to end: the daemon against
//! the fake Gitea's artifact v4 service, with the actions of `tests/data/toolkit/` served as the
//! repository `acme/toolkit` (a `file://` default actions URL), on the host and in Docker (the
//! job container on the host's network, so it reaches the fake on 127.0.0.1).

use std::path::{Path, PathBuf};
use std::time::Duration;

use act_runner::client::proto::runner::Result as TaskResult;
use serde_json::Value;
use sha2::Digest;

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::exec_workflows::{DOCKER_TEST_IMAGE, docker_ready};
use crate::support::fake_gitea::{FakeGitea, TaskSpec};

/// `acme/toolkit` as a bare repository under `<dir>/repos`.
pub struct Toolkit {
    dir: tempfile::TempDir,
}

impl Toolkit {
    pub fn new() -> Toolkit {
        let dir = tempfile::tempdir().unwrap();
        crate::remote_actions::bare_repository(
            &toolkit_sources(),
            &dir.path().join("repos/acme/toolkit"),
        );
        Toolkit { dir }
    }

    /// The task's `gitea_default_actions_url`.
    pub fn actions_url(&self) -> String {
        format!("file://{}", self.dir.path().join("repos").display())
    }
}

fn toolkit_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/toolkit")
}

/// The sha256 of a fixture file, as the actions print it.
fn fixture_sha256(relative: &str) -> String {
    hex::encode(sha2::Sha256::digest(
        std::fs::read(toolkit_sources().join(relative)).unwrap(),
    ))
}

/// Which backend a test runs on: the label the runner registers and what the config adds.
struct Backend {
    labels: String,
    config_extra: &'static str,
}

fn host() -> Backend {
    Backend {
        labels: "artifacts:host".into(),
        config_extra: "",
    }
}

fn docker() -> Backend {
    Backend {
        labels: format!("artifacts:docker://{DOCKER_TEST_IMAGE}"),
        config_extra: "container:\n  network: host\n",
    }
}

/// A registered daemon on `backend` with `runner_extra` under `runner:`.
async fn daemon(gitea: &FakeGitea, backend: &Backend, runner_extra: &str) -> (RunnerDir, Daemon) {
    let extra = format!("{runner_extra}{}", backend.config_extra);
    let dir = RunnerDir::register(gitea, &backend.labels, &extra).await;
    let daemon = Daemon::start(&dir, &[]).await;
    (dir, daemon)
}

/// Runs `workflow` as one job of run `run_id` and waits for its end.
async fn run_job(
    gitea: &FakeGitea,
    daemon: &Daemon,
    toolkit: &Toolkit,
    run_id: i64,
    workflow: &str,
) -> (TaskResult, Vec<String>) {
    let spec = TaskSpec::from_workflow(workflow)
        .unwrap()
        .with_run_id(run_id)
        .with_context(
            "gitea_default_actions_url",
            Value::String(toolkit.actions_url()),
        );
    let task_id = gitea.enqueue_task(spec);
    let task = gitea
        .wait_task_final(task_id, Duration::from_secs(180))
        .await
        .unwrap_or_else(|| panic!("task not final; daemon log:\n{}", daemon.log()));
    (task.result, gitea.task_log_lines(task_id))
}

const UPLOAD: &str = r#"on: push
jobs:
  up:
    runs-on: artifacts
    steps:
      - name: make the files
        run: |
          mkdir -p out/nested
          head -c 2500000 /dev/urandom > out/big.bin
          printf 'hello\n' > out/nested/hello.txt
          cd out && find . -type f | sort | xargs sha256sum | sed 's/^/file /'
      - uses: acme/toolkit/client@v1
        with: {mode: upload, name: dist, path: out}
"#;

const DOWNLOAD: &str = r#"on: push
jobs:
  down:
    runs-on: artifacts
    steps:
      - uses: acme/toolkit/client@v1
        with: {mode: list}
      - uses: acme/toolkit/client@v1
        with: {mode: download, name: dist, path: back}
      - run: cd back && find . -type f | sort | xargs sha256sum | sed 's/^/file /'
"#;

fn file_lines(rows: &[String]) -> Vec<&str> {
    rows.iter()
        .filter(|row| row.starts_with("file "))
        .map(String::as_str)
        .collect()
}

/// A job uploads a directory; a later job of the same run lists and downloads it byte for byte;
/// a job of another run neither lists nor downloads it.
async fn artifacts_cross_jobs_of_one_run_only(backend: Backend) {
    bounded(async {
        let gitea = start_fake().await;
        let toolkit = Toolkit::new();
        let (_dir, daemon) = daemon(&gitea, &backend, "").await;

        let (result, uploaded) = run_job(&gitea, &daemon, &toolkit, 700, UPLOAD).await;
        assert_eq!(
            result,
            TaskResult::Success,
            "{uploaded:#?}\n{}",
            daemon.log()
        );
        let made = file_lines(&uploaded);
        assert_eq!(made.len(), 2, "{uploaded:#?}");
        assert!(
            uploaded
                .iter()
                .any(|row| row.starts_with("uploaded artifact dist: id ")),
            "{uploaded:#?}"
        );
        assert_eq!(gitea.artifacts(700).len(), 1);

        let (result, downloaded) = run_job(&gitea, &daemon, &toolkit, 700, DOWNLOAD).await;
        assert_eq!(
            result,
            TaskResult::Success,
            "{downloaded:#?}\n{}",
            daemon.log()
        );
        assert!(
            downloaded.iter().any(|row| row == "artifacts: dist"),
            "{downloaded:#?}"
        );
        assert!(
            downloaded
                .iter()
                .any(|row| row == "downloaded artifact dist: 2 files"),
            "{downloaded:#?}"
        );
        assert_eq!(file_lines(&downloaded), made, "the same bytes came back");

        let (result, other_run) = run_job(&gitea, &daemon, &toolkit, 701, DOWNLOAD).await;
        assert_eq!(result, TaskResult::Failure, "{other_run:#?}");
        assert!(
            other_run.iter().any(|row| row == "artifacts: "),
            "{other_run:#?}"
        );
        assert!(
            other_run
                .iter()
                .any(|row| row.contains("Artifact not found for name: dist")),
            "{other_run:#?}"
        );
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn v4_artifacts_cross_jobs_of_one_run_only_on_the_host() {
    artifacts_cross_jobs_of_one_run_only(host()).await;
}

#[tokio::test]
async fn v4_artifacts_cross_jobs_of_one_run_only_in_docker() {
    if docker_ready() {
        artifacts_cross_jobs_of_one_run_only(docker()).await;
    }
}

/// Each shape of the toolkit uploads through its gate; the untouched bundle runs as published.
const SHAPES: &str = r#"on: push
jobs:
  shapes:
    runs-on: artifacts
    env:
      ACTIONS_CACHE_SERVICE_V2: "true"
    steps:
      - run: mkdir -p out && echo shaped > out/one.txt
      - uses: acme/toolkit/tsc@v1
        continue-on-error: true
        with: {name: from-tsc, path: out}
      - uses: acme/toolkit/webpack@v1
        continue-on-error: true
        with: {name: from-webpack, path: out}
      - uses: acme/toolkit/esbuild@v1
        continue-on-error: true
        with: {name: from-esbuild, path: out}
      - uses: acme/toolkit/untouched@v1
"#;

const GATE_FILES: [&str; 4] = [
    "tsc/node_modules/@actions/artifact/lib/internal/shared/config.js",
    "tsc/node_modules/@actions/cache/lib/internal/config.js",
    "webpack/dist/index.js",
    "esbuild/dist/index.js",
];

/// The sha256 each action printed for `file`.
fn printed_sha256<'a>(rows: &'a [String], file: &str) -> &'a str {
    let prefix = format!("bundle sha256 {file}: ");
    rows.iter()
        .find_map(|row| row.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no sha256 of {file}: {rows:#?}"))
}

const UNTOUCHED_NOTE: &str = "runner.patch_actions: acme/toolkit/untouched@v1 holds the actions toolkit in no shape this runner knows; it runs as published";

async fn patched_bundles_upload(backend: Backend) {
    bounded(async {
        let gitea = start_fake().await;
        let toolkit = Toolkit::new();
        let (_dir, daemon) = daemon(&gitea, &backend, "").await;
        let (result, rows) = run_job(&gitea, &daemon, &toolkit, 800, SHAPES).await;
        assert_eq!(result, TaskResult::Success, "{rows:#?}\n{}", daemon.log());
        let mut names: Vec<String> = gitea
            .artifacts(800)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["from-esbuild", "from-tsc", "from-webpack"],
            "{rows:#?}"
        );
        assert!(!rows.iter().any(|row| row.contains("GHES")), "{rows:#?}");
        let v2 = rows
            .iter()
            // v2 at the runner's own cache server (`ACTIONS_CACHE_URL`), not at Gitea's results URL.
            .filter(|row| {
                row.strip_prefix("cache service: v2 http://")
                    .is_some_and(|url| !url.starts_with(&gitea.connect_addr().to_string()))
            })
            .count();
        assert_eq!(v2, 3, "{rows:#?}");
        for file in GATE_FILES {
            assert_ne!(
                printed_sha256(&rows, file),
                fixture_sha256(file),
                "{file} ran as published"
            );
        }
        let untouched = "untouched/dist/index.js";
        assert_eq!(printed_sha256(&rows, untouched), fixture_sha256(untouched));
        assert_eq!(
            rows.iter().filter(|row| *row == UNTOUCHED_NOTE).count(),
            1,
            "{rows:#?}"
        );
        // The checkout in the action cache is still the published one.
        let (result, again) = run_job(&gitea, &daemon, &toolkit, 801, SHAPES).await;
        assert_eq!(result, TaskResult::Success, "{again:#?}");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn patched_toolkit_bundles_upload_on_the_host() {
    patched_bundles_upload(host()).await;
}

#[tokio::test]
async fn patched_toolkit_bundles_upload_in_docker() {
    if docker_ready() {
        patched_bundles_upload(docker()).await;
    }
}

#[tokio::test]
async fn with_patch_actions_false_bundles_run_exactly_as_published() {
    bounded(async {
        let gitea = start_fake().await;
        let toolkit = Toolkit::new();
        let (_dir, daemon) = daemon(&gitea, &host(), "  patch_actions: false\n").await;
        let (result, rows) = run_job(&gitea, &daemon, &toolkit, 900, SHAPES).await;
        assert_eq!(result, TaskResult::Success, "{rows:#?}\n{}", daemon.log());
        for file in GATE_FILES.iter().chain(["untouched/dist/index.js"].iter()) {
            assert_eq!(printed_sha256(&rows, file), fixture_sha256(file), "{file}");
        }
        let refusals = rows
            .iter()
            .filter(|row| row.contains("not currently supported on GHES"))
            .count();
        assert_eq!(refusals, 3, "{rows:#?}");
        assert!(gitea.artifacts(900).is_empty());
        assert!(
            !rows
                .iter()
                .any(|row| row.starts_with("runner.patch_actions")),
            "{rows:#?}"
        );
        daemon.stop().await;
    })
    .await;
}
