//! Limits and eviction: refused at reserve when an entry cannot fit, least recently used first
//! otherwise, retention by last access, and the free-disk floor.

use act_runner::cache::{DeleteSelector, EvictReason};

use super::*;

fn evictions(harness: &Harness, reason: EvictReason) -> u64 {
    harness
        .server
        .stats()
        .evictions
        .iter()
        .find(|(counted, _)| *counted == reason)
        .map_or(0, |(_, n)| *n)
}

/// The keys of the stored entries (of `repository`, or of all).
async fn stored_keys(harness: &Harness, repository: Option<&str>) -> Vec<String> {
    let entries = harness.server.list(repository).await.unwrap();
    entries.into_iter().map(|entry| entry.key).collect()
}

#[tokio::test]
async fn an_entry_larger_than_a_limit_is_refused_at_reserve_with_the_limit_named() {
    let harness = Harness::start_with(|settings| {
        settings.repo_size_limit = Some(100);
        settings.size_limit = Some(1000);
    })
    .await;
    harness.grant("token-main-1", REPO, MAIN).await;
    let (status, body) = harness.reserve("token-main-1", "big", Some(101)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cache.repo_size_limit"),
        "{body}"
    );
    // Without a size at reserve, the limit stops the bytes instead.
    let (_, body) = harness.reserve("token-main-1", "unsized", None).await;
    let id = body["cacheId"].as_u64().unwrap();
    assert_eq!(
        harness.patch("token-main-1", id, 0, vec![0; 101]).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(harness.server.list(None).await.unwrap(), Vec::new());
}

#[tokio::test]
async fn past_the_repository_limit_the_least_recently_used_entry_goes() {
    let harness = Harness::start_with(|settings| settings.repo_size_limit = Some(250)).await;
    harness.grant("token-main-1", REPO, MAIN).await;
    harness.grant("token-other", "owner/other", MAIN).await;
    harness.save("token-main-1", "first", &[1; 100], 50).await;
    harness.save("token-main-1", "second", &[2; 100], 50).await;
    harness
        .save("token-other", "elsewhere", &[3; 200], 50)
        .await;
    // Restoring `first` makes `second` the least recently used.
    assert!(harness.restore("token-main-1", &["first"]).await.is_some());
    harness.save("token-main-1", "third", &[3; 100], 50).await;

    assert_eq!(stored_keys(&harness, Some(REPO)).await, ["first", "third"]);
    assert_eq!(
        harness
            .server
            .list(Some("owner/other"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(evictions(&harness, EvictReason::RepoSizeLimit), 1);
    assert_eq!(harness.server.stats().bytes, 400);
}

#[tokio::test]
async fn past_the_total_limit_the_least_recently_used_entry_of_any_repository_goes() {
    let harness = Harness::start_with(|settings| settings.size_limit = Some(250)).await;
    harness.grant("token-main-1", REPO, MAIN).await;
    harness.grant("token-other", "owner/other", MAIN).await;
    harness.save("token-other", "oldest", &[1; 100], 50).await;
    harness.save("token-main-1", "newer", &[2; 100], 50).await;
    harness.save("token-main-1", "newest", &[3; 100], 50).await;
    assert_eq!(
        harness.server.list(Some("owner/other")).await.unwrap(),
        Vec::new()
    );
    assert_eq!(evictions(&harness, EvictReason::SizeLimit), 1);
}

#[tokio::test]
async fn the_sweep_removes_entries_not_accessed_within_the_retention() {
    let harness =
        Harness::start_with(|settings| settings.retention = Some(Duration::from_millis(300))).await;
    harness.grant("token-main-1", REPO, MAIN).await;
    harness.save("token-main-1", "stale", b"x", 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    harness.save("token-main-1", "fresh", b"y", 1).await;
    harness.server.sweep().await.unwrap();
    assert_eq!(stored_keys(&harness, None).await, ["fresh"]);
    assert_eq!(evictions(&harness, EvictReason::Retention), 1);
    assert!(!harness.dir.path().join("cache/blobs/1").exists());
}

#[tokio::test]
async fn below_the_free_disk_floor_entries_are_evicted_and_new_ones_refused() {
    let harness = Harness::start_on_main().await;
    harness.save("token-main-1", "victim", b"bytes", 5).await;
    let dir = harness.stop().await;
    let mut settings = settings(&dir);
    // More than any disk has free: every entry must go, and nothing new fits.
    settings.min_free_bytes = u64::MAX / 4;
    let harness = Harness::serve(dir, settings).await;
    harness.grant("token-main-1", REPO, MAIN).await;
    harness.server.sweep().await.unwrap();
    assert_eq!(harness.server.list(None).await.unwrap(), Vec::new());
    assert_eq!(evictions(&harness, EvictReason::DiskFloor), 1);
    let (status, body) = harness.reserve("token-main-1", "new", Some(5)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("must stay free"),
        "{body}"
    );
}

#[tokio::test]
async fn the_admin_lists_and_deletes_by_key_or_repository() {
    let harness = Harness::start_on_main().await;
    harness.grant("token-other", "owner/other", MAIN).await;
    harness.save("token-main-1", "a", b"1", 1).await;
    harness.save("token-main-1", "b", b"2", 1).await;
    harness.save("token-other", "a", b"3", 1).await;
    let listed = harness.server.list(None).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(
        (
            listed[0].repository.as_str(),
            listed[0].scope.as_str(),
            listed[0].size
        ),
        ("owner/other", MAIN, 1)
    );

    let removed = harness
        .server
        .delete(DeleteSelector::Key {
            repository: Some(REPO.into()),
            key: "a".into(),
        })
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(harness.restore("token-other", &["a"]).await.is_some());
    assert_eq!(
        harness
            .server
            .delete(DeleteSelector::Repository("owner/other".into()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(stored_keys(&harness, None).await, ["b"]);
    assert_eq!(evictions(&harness, EvictReason::Deleted), 2);
}
