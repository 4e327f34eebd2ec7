//! Bad input and faults: each is a clear 4xx, and nothing is stored.

use super::*;

/// Asserts that no entry exists and the response said why (a JSON `message`).
async fn assert_nothing_stored(harness: &Harness) {
    assert_eq!(harness.server.list(None).await.unwrap(), Vec::new());
}

#[tokio::test]
async fn a_chunk_past_the_reserved_size_is_refused() {
    let harness = Harness::start_on_main().await;
    let id = harness.reserved("token-main-1", "k", 4).await;
    assert_eq!(
        harness.patch("token-main-1", id, 2, b"abc".to_vec()).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        harness.commit("token-main-1", id, 4).await,
        StatusCode::BAD_REQUEST
    );
    assert_nothing_stored(&harness).await;
}

#[tokio::test]
async fn negative_reversed_or_overlapping_ranges_are_refused() {
    let harness = Harness::start_on_main().await;
    let id = harness.reserved("token-main-1", "k", 10).await;
    for range in ["bytes -1-3/*", "bytes 5-2/*", "bytes 0-3"] {
        let response = harness
            .request(
                reqwest::Method::PATCH,
                &format!("_apis/artifactcache/caches/{id}"),
                "token-main-1",
            )
            .header("Content-Range", range)
            .body(b"abcd".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{range}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("Content-Range"),
            "{body}"
        );
    }
    assert_eq!(
        harness
            .patch("token-main-1", id, 0, b"abcdef".to_vec())
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        harness.patch("token-main-1", id, 4, b"xyz".to_vec()).await,
        StatusCode::BAD_REQUEST
    );
    // A body shorter than its range is refused and leaves the range free for a retry.
    let short = harness
        .request(
            reqwest::Method::PATCH,
            &format!("_apis/artifactcache/caches/{id}"),
            "token-main-1",
        )
        .header("Content-Range", "bytes 6-9/*")
        .body(b"gh".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        harness.commit("token-main-1", id, 10).await,
        StatusCode::BAD_REQUEST
    );
    assert_nothing_stored(&harness).await;
    assert_eq!(
        harness.patch("token-main-1", id, 6, b"ghij".to_vec()).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        harness.commit("token-main-1", id, 10).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        harness.restore("token-main-1", &["k"]).await.unwrap().1,
        b"abcdefghij"
    );
}

#[tokio::test]
async fn a_commit_of_the_wrong_size_is_refused() {
    let harness = Harness::start_on_main().await;
    let id = harness.reserved("token-main-1", "k", 4).await;
    assert_eq!(
        harness.patch("token-main-1", id, 0, b"abcd".to_vec()).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        harness.commit("token-main-1", id, 3).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        harness.commit("token-main-1", id, 5).await,
        StatusCode::BAD_REQUEST
    );
    assert_nothing_stored(&harness).await;

    // Without a size at reserve, the bytes written still have to match.
    let (status, body) = harness.reserve("token-main-1", "unsized", None).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["cacheId"].as_u64().unwrap();
    assert_eq!(
        harness.patch("token-main-1", id, 0, b"ab".to_vec()).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        harness.commit("token-main-1", id, 3).await,
        StatusCode::BAD_REQUEST
    );
    assert_nothing_stored(&harness).await;
}

#[tokio::test]
async fn a_10_kb_key_or_a_key_with_dot_dot_slash_is_refused() {
    let harness = Harness::start_on_main().await;
    let long_key = "k".repeat(10 * 1024);
    for key in [
        long_key.as_str(),
        "../../etc/passwd",
        "a/../../b",
        "comma,key",
    ] {
        let (status, body) = harness.reserve("token-main-1", key, Some(1)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("cache key"),
            "{body}"
        );
        // A v1 lookup splits keys at commas, so that key reads as two valid ones there.
        if !key.contains(',') {
            let (status, _) = harness.lookup("token-main-1", &[key], VERSION).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
        }
    }
    assert_nothing_stored(&harness).await;
    let tmp = harness.dir.path().join("cache/tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
}

#[tokio::test]
async fn an_unknown_or_foreign_id_is_404() {
    let harness = Harness::start_on_main().await;
    harness.grant("token-other", "owner/other", MAIN).await;
    assert_eq!(
        harness.patch("token-main-1", 999, 0, b"a".to_vec()).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        harness.commit("token-main-1", 999, 1).await,
        StatusCode::NOT_FOUND
    );
    let id = harness.reserved("token-main-1", "mine", 1).await;
    assert_eq!(
        harness.patch("token-other", id, 0, b"a".to_vec()).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        harness.commit("token-other", id, 1).await,
        StatusCode::NOT_FOUND
    );
    let response = harness
        .request(
            reqwest::Method::PATCH,
            "_apis/artifactcache/caches/not-a-number",
            "token-main-1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_nothing_stored(&harness).await;
}

#[tokio::test]
async fn a_missing_or_revoked_credential_is_401() {
    let harness = Harness::start_on_main().await;
    harness.save("token-main-1", "k", b"bytes", 5).await;

    let anonymous = harness
        .http
        .get(format!(
            "{}_apis/artifactcache/cache?keys=k&version={VERSION}",
            harness.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = harness.lookup("token-never-granted", &["k"], VERSION).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    LocalGrants::new(harness.server.grants())
        .revoke(&Secret::new("token-main-1"))
        .await
        .unwrap();
    let (status, body) = harness.lookup("token-main-1", &["k"], VERSION).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!body.to_string().contains("token-main-1"), "{body}");
    let (status, _) = harness.reserve("token-main-1", "k2", Some(1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(harness.server.list(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_forged_signed_url_is_403() {
    let harness = Harness::start_on_main().await;
    harness.save("token-main-1", "k", b"bytes", 5).await;
    let (_, body) = harness.lookup("token-main-1", &["k"], VERSION).await;
    let location = body["archiveLocation"].as_str().unwrap().to_owned();

    let (path, query) = location.split_once('?').unwrap();
    let (prefix, id) = path.rsplit_once('/').unwrap();
    let id: u64 = id.parse().unwrap();
    let other_id = format!("{prefix}/{}?{query}", id + 1);
    let forged_sig = format!("{path}?{}", query.replace("sig=", "sig=00"));
    let stretched = {
        let exp: u64 = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("exp="))
            .unwrap()
            .parse()
            .unwrap();
        location.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3600))
    };
    for url in [path.to_owned(), other_id, forged_sig, stretched] {
        let response = harness.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{url}");
    }
    // A task token does not replace the signature.
    let response = harness
        .http
        .get(path)
        .bearer_auth("token-main-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_expired_signed_url_is_403() {
    let harness = Harness::start_with(|settings| settings.signed_url_ttl = Duration::ZERO).await;
    harness.grant("token-main-1", REPO, MAIN).await;
    harness.save("token-main-1", "k", b"bytes", 5).await;
    let (_, body) = harness.lookup("token-main-1", &["k"], VERSION).await;
    let response = harness
        .http
        .get(body["archiveLocation"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn an_upload_cut_off_by_a_restart_leaves_no_entry_and_no_temp_file() {
    let harness = Harness::start_on_main().await;
    harness.save("token-main-1", "kept", b"committed", 3).await;
    let id = harness.reserved("token-main-1", "cut", 8).await;
    assert_eq!(
        harness.patch("token-main-1", id, 0, b"half".to_vec()).await,
        StatusCode::NO_CONTENT
    );
    let mut settings = settings(&harness.dir);
    settings.dir = harness.dir.path().join("cache");
    let dir = harness.stop().await;
    // An orphan blob, as a crash between the rename and the index insert would leave.
    std::fs::write(dir.path().join("cache/blobs/424242"), b"orphan").unwrap();

    let harness = Harness::serve(dir, settings).await;
    harness.grant("token-main-1", REPO, MAIN).await;
    assert_eq!(harness.restore("token-main-1", &["cut"]).await, None);
    assert_eq!(
        harness.restore("token-main-1", &["kept"]).await.unwrap().1,
        b"committed"
    );
    assert_eq!(
        std::fs::read_dir(harness.dir.path().join("cache/tmp"))
            .unwrap()
            .count(),
        0
    );
    assert!(!harness.dir.path().join("cache/blobs/424242").exists());
    // New ids never reuse one seen on disk.
    let (_, body) = harness.reserve("token-main-1", "after", Some(1)).await;
    assert!(body["cacheId"].as_u64().unwrap() > 424242, "{body}");
}
