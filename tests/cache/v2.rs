//! The v2 twirp `CacheService` with the toolkit's JSON (proto field names, int64 as strings) and
//! the signed upload URL taking the Azure-blob style PUTs of `BlockBlobClient.uploadFile`.

use super::*;

const TWIRP: &str = "twirp/github.actions.results.api.v1.CacheService/";

impl Harness {
    /// One twirp call; the status and the JSON body.
    async fn twirp(
        &self,
        token: &str,
        method: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let response = self
            .request(reqwest::Method::POST, &format!("{TWIRP}{method}"), token)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// CreateCacheEntry; the signed upload URL.
    async fn create_entry(&self, token: &str, key: &str) -> String {
        let (status, body) = self
            .twirp(
                token,
                "CreateCacheEntry",
                serde_json::json!({ "key": key, "version": VERSION }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["ok"], true);
        body["signed_upload_url"].as_str().unwrap().to_owned()
    }

    async fn finalize(&self, token: &str, key: &str, size: u64) -> (StatusCode, serde_json::Value) {
        self.twirp(
            token,
            "FinalizeCacheEntryUpload",
            serde_json::json!({ "key": key, "version": VERSION, "size_bytes": size.to_string() }),
        )
        .await
    }

    /// GetCacheEntryDownloadURL then a plain GET: the matched key and bytes, or None.
    async fn restore_v2(
        &self,
        token: &str,
        key: &str,
        restore_keys: &[&str],
    ) -> Option<(String, Vec<u8>)> {
        let (status, body) = self
            .twirp(
                token,
                "GetCacheEntryDownloadURL",
                serde_json::json!({ "key": key, "restore_keys": restore_keys, "version": VERSION }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["ok"] != true {
            return None;
        }
        let url = body["signed_download_url"].as_str().unwrap();
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Some((
            body["matched_key"].as_str().unwrap().to_owned(),
            response.bytes().await.unwrap().to_vec(),
        ))
    }

    /// An Azure-style PUT to a signed upload URL with extra query parameters.
    async fn put(&self, url: &str, extra_query: &str, body: Vec<u8>) -> StatusCode {
        let url = if extra_query.is_empty() {
            url.to_owned()
        } else {
            format!("{url}&{extra_query}")
        };
        self.http
            .put(url)
            .header("x-ms-blob-type", "BlockBlob")
            .header("x-ms-version", "2024-11-04")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    }
}

#[tokio::test]
async fn blocks_staged_out_of_order_and_a_block_list_save_an_entry_the_v2_restore_finds() {
    let harness = Harness::start_on_main().await;
    let url = harness.create_entry("token-main-1", "v2-linux-1").await;
    assert!(url.starts_with(&harness.url), "{url}");
    let blocks = [
        ("QUFBQQ==", random_bytes(70_000)),
        ("QkJCQg==", random_bytes(5)),
        ("Q0NDQw==", random_bytes(1000)),
    ];
    for (block_id, bytes) in blocks.iter().rev() {
        let status = harness
            .put(
                &url,
                &format!("comp=block&blockid={}", urlencode(block_id)),
                bytes.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let list: String = blocks
        .iter()
        .map(|(id, _)| format!("<Latest>{id}</Latest>"))
        .collect();
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><BlockList>{list}</BlockList>"#
    );
    assert_eq!(
        harness.put(&url, "comp=blocklist", xml.into_bytes()).await,
        StatusCode::CREATED
    );
    let data: Vec<u8> = blocks.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
    let (status, body) = harness
        .finalize("token-main-1", "v2-linux-1", data.len() as u64)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ok"], true);
    assert!(body["entry_id"].as_str().unwrap().parse::<u64>().unwrap() > 0);

    let (key, bytes) = harness
        .restore_v2("token-main-1", "v2-linux-2", &["v2-linux-"])
        .await
        .unwrap();
    assert_eq!(key, "v2-linux-1");
    assert!(bytes == data, "restored bytes differ");
    // The v1 API sees the same entry.
    assert_eq!(
        harness
            .restore("token-main-1", &["v2-linux-1"])
            .await
            .unwrap()
            .1,
        data
    );
}

#[tokio::test]
async fn a_single_put_saves_an_entry() {
    let harness = Harness::start_on_main().await;
    let url = harness.create_entry("token-main-1", "single").await;
    assert_eq!(
        harness.put(&url, "", b"one shot".to_vec()).await,
        StatusCode::CREATED
    );
    let (status, _) = harness.finalize("token-main-1", "single", 8).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        harness
            .restore_v2("token-main-1", "single", &[])
            .await
            .unwrap()
            .1,
        b"one shot"
    );
}

#[tokio::test]
async fn a_v2_lookup_of_another_version_misses() {
    let harness = Harness::start_on_main().await;
    let url = harness.create_entry("token-main-1", "deps-1").await;
    assert_eq!(
        harness.put(&url, "", b"bytes".to_vec()).await,
        StatusCode::CREATED
    );
    let (status, _) = harness.finalize("token-main-1", "deps-1", 5).await;
    assert_eq!(status, StatusCode::OK);
    let lookup = |version: &'static str| {
        let body =
            serde_json::json!({ "key": "deps-1", "restore_keys": ["deps-"], "version": version });
        harness.twirp("token-main-1", "GetCacheEntryDownloadURL", body)
    };
    let (status, body) = lookup("another-version").await;
    assert_eq!(
        (status, &body["ok"]),
        (StatusCode::OK, &serde_json::json!(false)),
        "{body}"
    );
    assert!(body.get("signed_download_url").is_none(), "{body}");
    let (_, body) = lookup(VERSION).await;
    assert_eq!(body["matched_key"], "deps-1", "{body}");
}

#[tokio::test]
async fn a_v2_restore_while_another_job_uploads_the_key_misses_until_the_finalize() {
    let harness = Harness::start_on_main().await;
    let url = harness.create_entry("token-main-1", "pending").await;
    assert_eq!(
        harness.put(&url, "", b"written".to_vec()).await,
        StatusCode::CREATED
    );
    assert_eq!(
        harness.restore_v2("token-main-1", "pending", &[]).await,
        None
    );
    let (status, _) = harness.finalize("token-main-1", "pending", 7).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        harness.restore_v2("token-main-1", "pending", &[]).await,
        Some(("pending".to_owned(), b"written".to_vec()))
    );
}

#[tokio::test]
async fn v2_refusals_use_twirp_error_codes() {
    let harness = Harness::start_on_main().await;
    let url = harness.create_entry("token-main-1", "busy").await;

    let (status, body) = harness
        .twirp(
            "token-main-1",
            "CreateCacheEntry",
            serde_json::json!({ "key": "busy", "version": VERSION }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_exists"))
    );

    assert_eq!(
        harness.put(&url, "", b"abc".to_vec()).await,
        StatusCode::CREATED
    );
    let (status, body) = harness.finalize("token-main-1", "busy", 4).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_argument"))
    );
    let (status, body) = harness.finalize("token-main-1", "never-created", 3).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = harness
        .twirp(
            "token-unknown",
            "GetCacheEntryDownloadURL",
            serde_json::json!({ "key": "busy", "version": VERSION }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    let (status, body) = harness
        .twirp("token-main-1", "DeleteCacheEntry", serde_json::json!({}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("bad_route"))
    );
    assert_eq!(harness.restore_v2("token-main-1", "busy", &[]).await, None);
    assert_eq!(harness.server.list(None).await.unwrap(), Vec::new());
}

#[tokio::test]
async fn a_forged_upload_url_or_an_unstaged_block_is_refused() {
    let harness = Harness::start_on_main().await;
    let url = harness.create_entry("token-main-1", "guarded").await;
    let forged = url.replace("sig=", "sig=ff");
    assert_eq!(
        harness.put(&forged, "", b"evil".to_vec()).await,
        StatusCode::FORBIDDEN
    );
    let unsigned = url.split('?').next().unwrap().to_owned();
    assert_eq!(
        harness
            .http
            .put(unsigned)
            .body("evil")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let xml = "<BlockList><Latest>bm9wZQ==</Latest></BlockList>";
    assert_eq!(
        harness.put(&url, "comp=blocklist", xml.into()).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        harness.put(&url, "comp=appendblock", b"x".to_vec()).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(harness.server.list(None).await.unwrap(), Vec::new());
}

#[tokio::test]
async fn v2_is_absent_when_switched_off() {
    let harness = Harness::start_with(|settings| settings.v2 = false).await;
    harness.grant("token-main-1", REPO, MAIN).await;
    let (status, _) = harness
        .twirp(
            "token-main-1",
            "CreateCacheEntry",
            serde_json::json!({ "key": "k", "version": VERSION }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
