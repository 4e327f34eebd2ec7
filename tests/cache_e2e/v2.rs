//! The cache service v2 through the daemon, with a client of our own
//! (`tests/data/cache/v2-client.mjs`, what `@actions/cache` 4.x sends) run by host jobs:
//! a save restores the same bytes in the same repository, restore keys match by prefix, another
//! repository misses, and a feature branch's save stays invisible to the default branch.

use super::fixture::{MAIN, Origin, register, run, task};
use crate::daemon::harness::{Daemon, bounded, start_fake};

fn client() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cache/v2-client.mjs")
        .display()
        .to_string()
}

fn save(key: &str) -> String {
    format!(
        r#"on: push
jobs:
  save:
    runs-on: host-test
    steps:
      - run: |
          seq 1 3000 > blob.bin
          node '{client}' save '{key}' blob.bin
"#,
        client = client()
    )
}

fn restore(key: &str, restore_keys: &str) -> String {
    format!(
        r#"on: push
jobs:
  restore:
    runs-on: host-test
    steps:
      - run: node '{client}' restore '{key}' {restore_keys}
"#,
        client = client()
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
        let lines = run(&gitea, &daemon, task(&save("v2-deps-1"), MAIN)).await;
        assert_eq!(value(&lines, "v2-saved="), Some("yes"), "{lines:#?}");

        let lines = run(&gitea, &daemon, task(&restore("v2-deps-1", ""), MAIN)).await;
        assert_eq!(value(&lines, "v2-hit="), Some("yes"), "{lines:#?}");
        assert_eq!(
            value(&lines, "v2-digest="),
            Some(super::fixture::numbers_digest().as_str())
        );

        let lines = run(
            &gitea,
            &daemon,
            task(&restore("v2-deps-9", "v2-deps-"), MAIN),
        )
        .await;
        assert_eq!(
            value(&lines, "v2-matched="),
            Some("v2-deps-1"),
            "{lines:#?}"
        );

        let other = Origin {
            repository: "owner/other",
            ..MAIN
        };
        let lines = run(&gitea, &daemon, task(&restore("v2-deps-1", "v2-"), other)).await;
        assert_eq!(value(&lines, "v2-hit="), Some("no"), "{lines:#?}");

        let feature = Origin {
            git_ref: "refs/heads/feature",
            ..MAIN
        };
        let lines = run(&gitea, &daemon, task(&restore("v2-deps-1", ""), feature)).await;
        assert_eq!(value(&lines, "v2-hit="), Some("yes"), "{lines:#?}");
        run(&gitea, &daemon, task(&save("v2-feature"), feature)).await;
        let lines = run(&gitea, &daemon, task(&restore("v2-feature", ""), MAIN)).await;
        assert_eq!(value(&lines, "v2-hit="), Some("no"), "{lines:#?}");
        daemon.stop().await;
    })
    .await;
}
