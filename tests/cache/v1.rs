//! The v1 REST API driven as `@actions/cache` drives it: out-of-order parallel chunks, prefix
//! restore, version mismatch, concurrent reserve, restore during a write, repository and ref
//! scoping, Range downloads.

use super::*;

#[tokio::test]
async fn a_save_in_parallel_out_of_order_chunks_restores_the_same_bytes() {
    let harness = Harness::start_on_main().await;
    let data = random_bytes(1_000_003);
    harness
        .save("token-main-1", "npm-linux-abc", &data, 64 * 1024)
        .await;

    let (key, restored) = harness
        .restore("token-main-1", &["npm-linux-abc"])
        .await
        .unwrap();
    assert_eq!(key, "npm-linux-abc");
    assert!(restored == data, "restored bytes differ");
    let stats = harness.server.stats();
    assert_eq!((stats.entries, stats.bytes), (1, data.len() as u64));
}

#[tokio::test]
async fn restore_keys_match_by_prefix_and_the_newest_entry_wins() {
    let harness = Harness::start_on_main().await;
    harness
        .save("token-main-1", "deps-linux-old", b"old", 2)
        .await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    harness
        .save("token-main-1", "deps-linux-new", b"new", 2)
        .await;
    harness
        .save("token-main-1", "deps-macos-x", b"mac", 2)
        .await;

    let (key, bytes) = harness
        .restore("token-main-1", &["deps-linux-missing", "deps-linux-"])
        .await
        .unwrap();
    assert_eq!(
        (key.as_str(), bytes.as_slice()),
        ("deps-linux-new", &b"new"[..])
    );
    // The first key is exact, never a prefix.
    assert_eq!(
        harness.restore("token-main-1", &["deps-linux-"]).await,
        None
    );
}

#[tokio::test]
async fn a_different_version_misses_with_204() {
    let harness = Harness::start_on_main().await;
    harness.save("token-main-1", "k", b"bytes", 5).await;
    let other_version = "0".repeat(64);
    let (status, _) = harness.lookup("token-main-1", &["k"], &other_version).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_second_reserve_of_a_key_being_written_or_saved_is_refused_with_409() {
    let harness = Harness::start_on_main().await;
    harness.grant("token-main-2", REPO, MAIN).await;
    let (first, second) = tokio::join!(
        harness.reserve("token-main-1", "same", Some(4)),
        harness.reserve("token-main-2", "same", Some(4)),
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
    let (winner, body) = if first.0 == StatusCode::CREATED {
        ("token-main-1", first.1)
    } else {
        ("token-main-2", second.1)
    };
    let id = body["cacheId"].as_u64().unwrap();
    assert!(id > 0, "the toolkit treats cacheId 0 as no id");
    assert_eq!(
        harness.patch(winner, id, 0, b"abcd".to_vec()).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(harness.commit(winner, id, 4).await, StatusCode::NO_CONTENT);

    let (status, body) = harness.reserve("token-main-2", "same", Some(4)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["message"].as_str().unwrap().contains("already exists"),
        "{body}"
    );
}

#[tokio::test]
async fn a_restore_while_another_job_writes_the_key_misses_until_the_commit() {
    let harness = Harness::start_on_main().await;
    let id = harness.reserved("token-main-1", "in-flight", 8).await;
    assert_eq!(
        harness.patch("token-main-1", id, 4, b"5678".to_vec()).await,
        StatusCode::NO_CONTENT
    );

    assert_eq!(harness.restore("token-main-1", &["in-flight"]).await, None);

    assert_eq!(
        harness.patch("token-main-1", id, 0, b"1234".to_vec()).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        harness.commit("token-main-1", id, 8).await,
        StatusCode::NO_CONTENT
    );
    let (_, bytes) = harness
        .restore("token-main-1", &["in-flight"])
        .await
        .unwrap();
    assert_eq!(bytes, b"12345678");
}

#[tokio::test]
async fn another_repository_never_sees_an_entry() {
    let harness = Harness::start_on_main().await;
    harness.grant("token-other", "owner/other", MAIN).await;
    harness
        .save("token-main-1", "shared-name", b"secret bytes", 4)
        .await;
    assert_eq!(harness.restore("token-other", &["shared-name"]).await, None);
    assert_eq!(
        harness.restore("token-other", &["shared-", "s"]).await,
        None
    );
}

#[tokio::test]
async fn a_feature_branch_restores_main_but_its_own_save_stays_invisible_to_main() {
    let harness = Harness::start_on_main().await;
    harness.grant("token-feature", REPO, FEATURE).await;
    harness
        .save("token-main-1", "build-", b"from main", 4)
        .await;

    let (_, bytes) = harness.restore("token-feature", &["build-"]).await.unwrap();
    assert_eq!(bytes, b"from main");

    harness
        .save("token-feature", "feature-only", b"from feature", 4)
        .await;
    assert_eq!(
        harness.restore("token-main-1", &["feature-only"]).await,
        None
    );
    let (_, bytes) = harness
        .restore("token-feature", &["feature-only"])
        .await
        .unwrap();
    assert_eq!(bytes, b"from feature");
    // The feature branch writes its own entry of a key main already has, and reads its own first.
    harness
        .save("token-feature", "build-", b"feature build", 4)
        .await;
    assert_eq!(
        harness
            .restore("token-feature", &["build-"])
            .await
            .unwrap()
            .1,
        b"feature build"
    );
    assert_eq!(
        harness
            .restore("token-main-1", &["build-"])
            .await
            .unwrap()
            .1,
        b"from main"
    );
}

#[tokio::test]
async fn a_download_honours_a_range_header() {
    let harness = Harness::start_on_main().await;
    harness
        .save("token-main-1", "ranged", b"0123456789", 3)
        .await;
    let (_, body) = harness.lookup("token-main-1", &["ranged"], VERSION).await;
    let location = body["archiveLocation"].as_str().unwrap();
    assert!(location.starts_with(&harness.url), "{location}");

    let response = harness
        .http
        .get(location)
        .header("Range", "bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()["content-range"], "bytes 2-5/10");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"2345");

    let response = harness
        .http
        .get(location)
        .header("Range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn the_debug_listing_names_entries_of_the_key_in_readable_scopes() {
    let harness = Harness::start_on_main().await;
    harness.save("token-main-1", "listed", b"x", 1).await;
    let response = harness
        .request(
            reqwest::Method::GET,
            "_apis/artifactcache/caches?key=listed",
            "token-main-1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["totalCount"], 1);
    assert_eq!(body["artifactCaches"][0]["scope"], MAIN);
}
