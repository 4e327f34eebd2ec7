//! `act_runner exec` serves the actions cache to its own jobs: a job saves with the real
//! `actions/cache`, a later job of the same run restores the same bytes, and with `cache.v2`
//! `ACTIONS_RESULTS_URL` is the cache server (no Gitea serves the results API there).

use std::time::Duration;

use super::fixture::{actions_url, require_node};
use crate::exec_workflows::{DOCKER_TEST_IMAGE, docker_ready};
use crate::remote_actions::git;

const WORKFLOW: &str = r#"on: push
jobs:
  save:
    runs-on: ubuntu-latest
    steps:
      - run: |
          mkdir -p cached && echo "exec bytes" > cached/one.txt
          echo "told cache=$ACTIONS_CACHE_URL results=$ACTIONS_RESULTS_URL"
      - uses: actions/cache@v3
        with:
          path: cached
          key: exec-v1
  restore:
    needs: save
    runs-on: ubuntu-latest
    steps:
      - id: cache
        uses: actions/cache@v3
        with:
          path: cached
          key: exec-v1
      - run: echo "restored hit=${{ steps.cache.outputs.cache-hit }} content=$(cat cached/one.txt)"
"#;

/// Runs the workflow with `image_args` (`-i ...`) and returns its output; it must succeed.
async fn exec(image_args: &[&str]) -> String {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let repo = scratch.path().join("repo");
    std::fs::create_dir(&repo).expect("create the repository");
    std::fs::write(repo.join("cache.yml"), WORKFLOW).expect("write the workflow");
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "workflow"]);
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_act_runner"))
        .args(["exec", "-W", "cache.yml", "-C", "."])
        .args(image_args)
        .args(["--default-actions-url", actions_url()])
        .env("XDG_CACHE_HOME", scratch.path().join("xdg-cache"))
        .current_dir(&repo)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("exec finishes")
        .expect("exec runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    text
}

/// The cache and results URLs the save job printed.
fn told(text: &str) -> (&str, &str) {
    let line = text
        .lines()
        .find_map(|line| line.split_once("told cache=").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no URLs printed: {text}"));
    line.split_once(" results=")
        .unwrap_or_else(|| panic!("no results URL: {line}"))
}

#[tokio::test]
async fn exec_saves_and_restores_through_its_own_cache_on_the_host() {
    require_node();
    let text = exec(&["-i", "-self-hosted"]).await;
    assert!(
        text.contains("restored hit=true content=exec bytes"),
        "{text}"
    );
    let (cache, results) = told(&text);
    assert!(cache.starts_with("http://127.0.0.1:"), "{text}");
    assert_eq!(results, cache.trim_end_matches('/'), "{text}");
}

#[tokio::test]
async fn exec_saves_and_restores_through_its_own_cache_in_docker() {
    if !docker_ready() {
        return;
    }
    let text = exec(&["-i", DOCKER_TEST_IMAGE]).await;
    assert!(
        text.contains("restored hit=true content=exec bytes"),
        "{text}"
    );
    let (cache, _) = told(&text);
    assert!(!cache.starts_with("http://127.0.0.1:"), "{text}");
}
