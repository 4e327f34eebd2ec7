//! What every cache end-to-end test shares: the real, unmodified `actions/cache` v3.5.0 from
//! `../shared/real-actions/` as a bare git repository `actions/cache` (tag `v3`) served over
//! `file://`, built once per process; a runner registered with a cache section; and the
//! workflows that save and restore a directory through it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use act_runner::client::proto::runner::Result as TaskResult;
use serde_json::json;

use crate::daemon::harness::{Daemon, RunnerDir};
use crate::remote_actions::{copy_tree, git};
use crate::support::fake_gitea::{FakeGitea, TaskSpec};

/// The released tree, as published (see that folder's README): `shared/real-actions/` next to
/// the checkout or next to one of its parents (a worktree sits deeper than the main checkout).
fn real_action_source() -> PathBuf {
    let relative = Path::new("shared/real-actions/actions+cache-v3.5.0");
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .skip(1)
        .map(|dir| dir.join(relative))
        .find(|candidate| candidate.join("action.yml").is_file())
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(relative)
        })
}

/// `file://<dir>`, under which `actions/cache` is a bare repository tagged `v3`.
pub fn actions_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let source = real_action_source();
        assert!(
            source.join("action.yml").is_file(),
            "the real actions/cache is missing at {}",
            source.display()
        );
        // Built once per checkout: in a temporary sibling, then renamed into place, so two test
        // processes never see a half-written repository.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache-e2e-actions-v3.5.0");
        if !root.join("actions/cache/HEAD").is_file() {
            let work = tempfile::tempdir().expect("a scratch directory");
            copy_tree(&source, work.path());
            git(work.path(), &["init", "-q"]);
            git(work.path(), &["add", "-A"]);
            git(work.path(), &["commit", "-q", "-m", "actions/cache v3.5.0"]);
            git(work.path(), &["tag", "v3"]);
            let staging =
                tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a staging directory");
            let bare = staging.path().join("actions/cache");
            git(
                work.path(),
                &[
                    "clone",
                    "-q",
                    "--bare",
                    ".",
                    bare.to_str().expect("UTF-8 path"),
                ],
            );
            // Losing the race to another process leaves its identical copy in place.
            let kept = staging.keep();
            if std::fs::rename(&kept, &root).is_err() {
                let _ = std::fs::remove_dir_all(&kept);
            }
        }
        format!("file://{}", root.display())
    })
}

/// The real action needs `node` on PATH for host jobs: fail loudly without it.
pub fn require_node() {
    let found = Command::new("node")
        .arg("--version")
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "node is not on PATH: host jobs run the real actions/cache with it (tests/setup.d installs Debian's nodejs)"
    );
}

/// Registers a runner whose config holds `cache_section` (YAML lines under `cache:`, then any
/// further top-level sections), with the cache's files in the runner's own directory
/// (`cache.dir: cache`, relative to its cwd).
pub async fn register(gitea: &FakeGitea, labels: &str, cache_section: &str) -> RunnerDir {
    let extra = format!("cache:\n  dir: cache\n{cache_section}");
    RunnerDir::register(gitea, labels, &extra).await
}

/// Where a task runs from: its repository, ref and the default branch of its event payload.
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    pub repository: &'a str,
    pub git_ref: &'a str,
    pub default_branch: &'a str,
}

pub const MAIN: Origin<'static> = Origin {
    repository: "owner/app",
    git_ref: "refs/heads/main",
    default_branch: "main",
};

/// A task of `workflow` from `origin`, with the real action served as the default actions.
pub fn task(workflow: &str, origin: Origin<'_>) -> TaskSpec {
    TaskSpec::from_workflow(workflow)
        .expect("a valid workflow")
        .with_context("gitea_default_actions_url", json!(actions_url()))
        .with_context("repository", json!(origin.repository))
        .with_context("ref", json!(origin.git_ref))
        .with_context(
            "event",
            json!({
                "ref": origin.git_ref,
                "repository": {
                    "full_name": origin.repository,
                    "default_branch": origin.default_branch,
                },
            }),
        )
}

/// A job on `runs_on` that writes a directory of known bytes and saves it under `key` with the
/// real action (its post step saves).
fn save_workflow(runs_on: &str, key: &str) -> String {
    format!(
        r#"on: push
jobs:
  save:
    runs-on: {runs_on}
    steps:
      - name: produce
        run: |
          mkdir -p cached/deep
          printf 'cached bytes for {key}\n' > cached/one.txt
          seq 1 3000 > cached/deep/numbers.txt
          sha256sum cached/one.txt cached/deep/numbers.txt > sums.txt
          echo "saved sums: $(cat sums.txt | sha256sum | cut -c1-16)"
      - name: cache
        uses: actions/cache@v3
        with:
          path: cached
          key: {key}
"#
    )
}

/// A job that restores `key` (and `restore_keys`, one per line) and prints what it found:
/// `cache-hit=<output>` and `restored=<yes|no>` plus the bytes' digest when restored.
fn restore_workflow(runs_on: &str, key: &str, restore_keys: &str) -> String {
    let restore_keys = if restore_keys.is_empty() {
        String::new()
    } else {
        format!("          restore-keys: {restore_keys}\n")
    };
    format!(
        r#"on: push
jobs:
  restore:
    runs-on: {runs_on}
    steps:
      - name: cache
        id: cache
        uses: actions/cache@v3
        with:
          path: cached
          key: {key}
{restore_keys}      - name: look
        run: |
          echo "cache-hit=${{{{ steps.cache.outputs.cache-hit }}}}"
          if [ -f cached/one.txt ]; then
            echo "restored=yes"
            echo "content=$(cat cached/one.txt)"
            echo "numbers=$(sha256sum < cached/deep/numbers.txt | cut -c1-16)"
          else
            echo "restored=no"
          fi
"#
    )
}

/// The digest `seq 1 3000` gives, as `restore_workflow` prints it.
pub fn numbers_digest() -> String {
    use sha2::Digest as _;
    let text: String = (1..=3000).map(|n| format!("{n}\n")).collect();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))[..16].to_owned()
}

/// Runs one task to its end and returns its log lines; it must succeed.
pub async fn run(gitea: &FakeGitea, daemon: &Daemon, spec: TaskSpec) -> Vec<String> {
    let task_id = gitea.enqueue_task(spec);
    let task = gitea
        .wait_task_final(task_id, Duration::from_secs(120))
        .await
        .unwrap_or_else(|| panic!("task {task_id} not final; daemon log:\n{}", daemon.log()));
    let lines = gitea.task_log_lines(task_id);
    assert_eq!(
        task.result,
        TaskResult::Success,
        "task {task_id}: {lines:#?}\ndaemon log:\n{}",
        daemon.log()
    );
    lines
}

/// Where a test's save and restore jobs go: a daemon, the fake Gitea it polls, and the label
/// its jobs run on.
pub struct Jobs<'a> {
    gitea: &'a FakeGitea,
    daemon: &'a Daemon,
    runs_on: &'a str,
}

impl<'a> Jobs<'a> {
    pub fn new(gitea: &'a FakeGitea, daemon: &'a Daemon, runs_on: &'a str) -> Jobs<'a> {
        Jobs {
            gitea,
            daemon,
            runs_on,
        }
    }

    /// Saves a directory under `key` with the real action, as a job from `origin`.
    pub async fn save(&self, key: &str, origin: Origin<'_>) {
        let workflow = save_workflow(self.runs_on, key);
        run(self.gitea, self.daemon, task(&workflow, origin)).await;
    }

    /// Restores `key` (or by a `restore_keys` prefix) as a job from `origin`: what it found, and
    /// its log lines for the assertion messages.
    pub async fn restore(
        &self,
        key: &str,
        restore_keys: &str,
        origin: Origin<'_>,
    ) -> (Restored, Vec<String>) {
        let workflow = restore_workflow(self.runs_on, key, restore_keys);
        let lines = run(self.gitea, self.daemon, task(&workflow, origin)).await;
        (restored(&lines), lines)
    }
}

/// What a restore job printed.
pub struct Restored {
    pub hit: bool,
    pub restored: bool,
    pub content: Option<String>,
    pub numbers: Option<String>,
}

fn restored(lines: &[String]) -> Restored {
    let value = |prefix: &str| {
        lines
            .iter()
            .find_map(|line| line.strip_prefix(prefix).map(str::to_owned))
    };
    Restored {
        hit: value("cache-hit=").as_deref() == Some("true"),
        restored: value("restored=").as_deref() == Some("yes"),
        content: value("content="),
        numbers: value("numbers="),
    }
}
