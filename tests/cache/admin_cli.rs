//! `act_runner cache list` and `act_runner cache delete KEY | --repo R | KEY --repo R` through
//! the real binary, on a cache directory a server filled and released.

use std::path::Path;

use super::*;

/// `act_runner -c <empty config> cache <args> --dir <dir>`: exit success, stdout, and stdout
/// with stderr (the log).
async fn cache_command(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let config = dir.join("empty-config.yaml");
    std::fs::write(&config, "log:\n  level: info\n").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_act_runner"))
        .arg("-c")
        .arg(&config)
        .arg("cache")
        .args(args)
        .arg("--dir")
        .arg(dir.join("cache"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(LIMIT, output).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let text = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    (output.status.success(), stdout, text)
}

/// The (repository, key) pairs `cache list` prints, sorted.
async fn listed(dir: &Path, args: &[&str]) -> Vec<(String, String)> {
    let (ok, stdout, text) = cache_command(dir, &[&["list"], args].concat()).await;
    assert!(ok, "{text}");
    let mut rows: Vec<(String, String)> = stdout
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut columns = line.split_whitespace();
            let repository = columns.next()?.to_owned();
            let _ref = columns.next()?;
            Some((repository, columns.next()?.to_owned()))
        })
        .collect();
    rows.sort();
    rows
}

/// `pairs` as [`listed`] returns them: owned and sorted.
fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = pairs
        .iter()
        .map(|(repo, key)| (repo.to_string(), key.to_string()))
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn cache_list_and_delete_by_key_repository_or_both() {
    let harness = Harness::start_on_main().await;
    harness.grant("token-other", "owner/other", MAIN).await;
    harness.save("token-main-1", "deps-a", b"1", 1).await;
    harness.save("token-main-1", "deps-b", b"22", 2).await;
    harness.save("token-other", "deps-a", b"333", 3).await;
    harness.save("token-other", "deps-c", b"4444", 4).await;
    let settings = harness.server.settings().clone();
    let dir = harness.stop().await;
    // The commands refuse a directory a server still holds; wait until the harness let go.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while CacheServer::open(settings.clone()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the index stayed locked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(
        listed(dir.path(), &[]).await,
        rows(&[
            (REPO, "deps-a"),
            (REPO, "deps-b"),
            ("owner/other", "deps-a"),
            ("owner/other", "deps-c")
        ])
    );
    assert_eq!(
        listed(dir.path(), &["--repo", "owner/other"]).await,
        rows(&[("owner/other", "deps-a"), ("owner/other", "deps-c")])
    );

    let (ok, _, text) = cache_command(dir.path(), &["delete", "deps-a", "--repo", REPO]).await;
    assert!(ok && text.contains("deleted 1 entries"), "{text}");
    assert_eq!(
        listed(dir.path(), &[]).await,
        rows(&[
            (REPO, "deps-b"),
            ("owner/other", "deps-a"),
            ("owner/other", "deps-c")
        ])
    );
    // A key alone: in every repository.
    let (ok, _, text) = cache_command(dir.path(), &["delete", "deps-a"]).await;
    assert!(ok && text.contains("deleted 1 entries"), "{text}");
    let (ok, _, text) = cache_command(dir.path(), &["delete", "--repo", "owner/other"]).await;
    assert!(ok && text.contains("deleted 1 entries"), "{text}");
    assert_eq!(listed(dir.path(), &[]).await, rows(&[(REPO, "deps-b")]));

    // Neither a key nor a repository: refused, nothing deleted.
    let (ok, _, text) = cache_command(dir.path(), &["delete"]).await;
    assert!(
        !ok && text.contains("needs a KEY, --repo, or both"),
        "{text}"
    );
    assert_eq!(listed(dir.path(), &[]).await, rows(&[(REPO, "deps-b")]));
}
