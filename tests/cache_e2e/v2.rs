//! The cache service v2 through the daemon, with a client of our own
//! (`tests/data/cache/v2-client.mjs`, what `@actions/cache` 4.x sends) run by the jobs: on the
//! host, a save restores the same bytes in the same repository, restore keys match by prefix,
//! another repository misses, and a feature branch's save stays invisible to the default branch;
//! in Docker job containers (their own network, so the signed blob URLs must carry the address
//! the job used), a save restores the same bytes.

use super::fixture::{MAIN, Origin, register, run, task};
use crate::daemon::harness::{Daemon, bounded, start_fake};
use crate::exec_workflows::DOCKER_TEST_IMAGE;

/// A step's script lines that write the client into the job's working directory: the file is
/// on the host, a job container sees only what its steps write.
fn write_client() -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cache/v2-client.mjs");
    let source = std::fs::read_to_string(&path).expect("read the v2 client");
    let mut lines = String::from("          cat > v2-client.mjs <<'CLIENT_EOF'\n");
    for line in source.lines() {
        if !line.is_empty() {
            lines.push_str("          ");
            lines.push_str(line);
        }
        lines.push('\n');
    }
    lines.push_str("          CLIENT_EOF\n");
    lines
}

fn save(runs_on: &str, key: &str) -> String {
    format!(
        r#"on: push
jobs:
  save:
    runs-on: {runs_on}
    steps:
      - run: |
{client}          seq 1 3000 > blob.bin
          node v2-client.mjs save '{key}' blob.bin
"#,
        client = write_client()
    )
}

fn restore(runs_on: &str, key: &str, restore_keys: &str) -> String {
    format!(
        r#"on: push
jobs:
  restore:
    runs-on: {runs_on}
    steps:
      - run: |
{client}          node v2-client.mjs restore '{key}' {restore_keys}
"#,
        client = write_client()
    )
}

fn value<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines.iter().find_map(|line| line.strip_prefix(prefix))
}

#[tokio::test]
async fn a_v2_client_saves_restores_and_is_scoped_like_v1() {
    super::fixture::require_node();
    bounded(async {
        let gitea = start_fake().await;
        let dir = register(&gitea, "host-test:host", "  v2: true\n").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let on = "host-test";
        let lines = run(&gitea, &daemon, task(&save(on, "v2-deps-1"), MAIN)).await;
        assert_eq!(value(&lines, "v2-saved="), Some("yes"), "{lines:#?}");

        let lines = run(&gitea, &daemon, task(&restore(on, "v2-deps-1", ""), MAIN)).await;
        assert_eq!(value(&lines, "v2-hit="), Some("yes"), "{lines:#?}");
        assert_eq!(
            value(&lines, "v2-digest="),
            Some(super::fixture::numbers_digest().as_str())
        );

        let prefix = restore(on, "v2-deps-9", "v2-deps-");
        let lines = run(&gitea, &daemon, task(&prefix, MAIN)).await;
        assert_eq!(
            value(&lines, "v2-matched="),
            Some("v2-deps-1"),
            "{lines:#?}"
        );

        let other = Origin {
            repository: "owner/other",
            ..MAIN
        };
        let foreign = restore(on, "v2-deps-1", "v2-");
        let lines = run(&gitea, &daemon, task(&foreign, other)).await;
        assert_eq!(value(&lines, "v2-hit="), Some("no"), "{lines:#?}");

        let feature = Origin {
            git_ref: "refs/heads/feature",
            ..MAIN
        };
        let from_main = restore(on, "v2-deps-1", "");
        let lines = run(&gitea, &daemon, task(&from_main, feature)).await;
        assert_eq!(value(&lines, "v2-hit="), Some("yes"), "{lines:#?}");
        run(&gitea, &daemon, task(&save(on, "v2-feature"), feature)).await;
        let poisoned = restore(on, "v2-feature", "");
        let lines = run(&gitea, &daemon, task(&poisoned, MAIN)).await;
        assert_eq!(value(&lines, "v2-hit="), Some("no"), "{lines:#?}");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_v2_client_saves_and_restores_in_docker_job_containers() {
    if !crate::exec_workflows::docker_ready() {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let labels = format!("docker-test:docker://{DOCKER_TEST_IMAGE}");
        let dir = register(&gitea, &labels, "  v2: true\n").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let on = "docker-test";
        let lines = run(&gitea, &daemon, task(&save(on, "v2-docker-1"), MAIN)).await;
        assert_eq!(value(&lines, "v2-saved="), Some("yes"), "{lines:#?}");
        let lines = run(&gitea, &daemon, task(&restore(on, "v2-docker-1", ""), MAIN)).await;
        assert_eq!(value(&lines, "v2-hit="), Some("yes"), "{lines:#?}");
        assert_eq!(
            value(&lines, "v2-digest="),
            Some(super::fixture::numbers_digest().as_str()),
            "{lines:#?}"
        );
        daemon.stop().await;
    })
    .await;
}
