//! The cache engine over real sockets: a [`CacheServer`] on loopback, driven the way
//! `@actions/cache` drives it (v1 REST and v2 twirp plus Azure-style blob PUTs), with bad input,
//! eviction, recovery and the grant endpoints. The daemon's wiring is tested elsewhere.

use std::sync::Arc;
use std::time::Duration;

use act_runner::cache::{CacheServer, CacheSettings, Grant, LocalGrants, TaskGrants};
use act_runner::config::Secret;
use futures_util::StreamExt;
use reqwest::StatusCode;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod admin_cli;
mod evict;
mod faults;
mod grants;
mod journal;
mod v1;
mod v2;

/// Bound for one request or one whole save/restore in these tests.
const LIMIT: Duration = Duration::from_secs(30);
/// The version the toolkit would send (a SHA-256 of paths and compression).
const VERSION: &str = "4b0c2b1e9c8d7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a21";
const REPO: &str = "owner/repo";
const MAIN: &str = "refs/heads/main";
const FEATURE: &str = "refs/heads/feature";

/// A server on loopback with its own directory, and a client.
struct Harness {
    url: String,
    server: Arc<CacheServer>,
    http: reqwest::Client,
    dir: Arc<TempDir>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// Settings for a test server: no disk floor, so a nearly full test disk does not refuse.
fn settings(dir: &TempDir) -> CacheSettings {
    CacheSettings {
        dir: dir.path().join("cache"),
        retention: None,
        repo_size_limit: None,
        size_limit: None,
        sweep_interval: Duration::from_secs(3600),
        min_free_bytes: 0,
        v2: true,
        external_secret: Some(Secret::new("external-secret-for-tests")),
        signed_url_ttl: Duration::from_secs(600),
        public_url: None,
    }
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    /// A server where `token-main-1` may read and write `REPO` on `MAIN`, where most tests begin.
    async fn start_on_main() -> Harness {
        let harness = Harness::start().await;
        harness.grant("token-main-1", REPO, MAIN).await;
        harness
    }

    async fn start_with(adjust: impl FnOnce(&mut CacheSettings)) -> Harness {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut settings = settings(&dir);
        adjust(&mut settings);
        Harness::serve(dir, settings).await
    }

    /// Opens a server on `dir` (again, for recovery tests).
    async fn serve(dir: Arc<TempDir>, settings: CacheSettings) -> Harness {
        let server = CacheServer::open(settings).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let serving = server.clone();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            serving.serve(listener, stop).await.unwrap();
        });
        Harness {
            url,
            server,
            http: reqwest::Client::builder().timeout(LIMIT).build().unwrap(),
            dir,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops serving and waits for the server to return.
    async fn stop(mut self) -> Arc<TempDir> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
        }
        self.dir.clone()
    }

    /// Grants `token` for `repository` at `ref_name`, with `main` as the default branch.
    async fn grant(&self, token: &str, repository: &str, ref_name: &str) {
        LocalGrants::new(self.server.grants())
            .grant(grant_for(token, repository, ref_name))
            .await
            .unwrap();
    }

    fn request(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("Accept", "application/json;api-version=6.0-preview.1")
    }

    /// v1 reserve; the status and the body.
    async fn reserve(
        &self,
        token: &str,
        key: &str,
        size: Option<u64>,
    ) -> (StatusCode, serde_json::Value) {
        let mut body = serde_json::json!({ "key": key, "version": VERSION });
        if let Some(size) = size {
            body["cacheSize"] = size.into();
        }
        let response = self
            .request(reqwest::Method::POST, "_apis/artifactcache/caches", token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// A v1 reserve that must succeed; the new entry's `cacheId`.
    async fn reserved(&self, token: &str, key: &str, size: u64) -> u64 {
        let (status, body) = self.reserve(token, key, Some(size)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["cacheId"].as_u64().unwrap()
    }

    /// v1 chunk upload of `data` at `start`.
    async fn patch(&self, token: &str, id: u64, start: u64, data: Vec<u8>) -> StatusCode {
        let end = start + data.len() as u64 - 1;
        self.request(
            reqwest::Method::PATCH,
            &format!("_apis/artifactcache/caches/{id}"),
            token,
        )
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", format!("bytes {start}-{end}/*"))
        .body(data)
        .send()
        .await
        .unwrap()
        .status()
    }

    /// v1 commit.
    async fn commit(&self, token: &str, id: u64, size: u64) -> StatusCode {
        self.request(
            reqwest::Method::POST,
            &format!("_apis/artifactcache/caches/{id}"),
            token,
        )
        .json(&serde_json::json!({ "size": size }))
        .send()
        .await
        .unwrap()
        .status()
    }

    /// A whole v1 save as the toolkit does it: reserve, `chunk`-byte chunks with 4 in flight
    /// (sent last first, so they arrive out of order), commit.
    async fn save(&self, token: &str, key: &str, data: &[u8], chunk: usize) -> u64 {
        let id = self.reserved(token, key, data.len() as u64).await;
        let mut chunks: Vec<(u64, Vec<u8>)> = data
            .chunks(chunk)
            .enumerate()
            .map(|(idx, bytes)| ((idx * chunk) as u64, bytes.to_vec()))
            .collect();
        chunks.reverse();
        let statuses: Vec<StatusCode> = futures_util::stream::iter(chunks)
            .map(|(start, bytes)| self.patch(token, id, start, bytes))
            .buffer_unordered(4)
            .collect()
            .await;
        assert!(
            statuses
                .iter()
                .all(|status| *status == StatusCode::NO_CONTENT),
            "{statuses:?}"
        );
        assert_eq!(
            self.commit(token, id, data.len() as u64).await,
            StatusCode::NO_CONTENT
        );
        id
    }

    /// v1 lookup; the status and the body (Null on 204).
    async fn lookup(
        &self,
        token: &str,
        keys: &[&str],
        version: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut url =
            reqwest::Url::parse(&format!("{}_apis/artifactcache/cache", self.url)).unwrap();
        url.query_pairs_mut()
            .append_pair("keys", &keys.join(","))
            .append_pair("version", version);
        let response = self.http.get(url).bearer_auth(token).send().await.unwrap();
        let status = response.status();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// A whole v1 restore: the matched key and the bytes, or None on a miss. The download
    /// carries no credential, as the toolkit's does not.
    async fn restore(&self, token: &str, keys: &[&str]) -> Option<(String, Vec<u8>)> {
        let (status, body) = self.lookup(token, keys, VERSION).await;
        if status == StatusCode::NO_CONTENT {
            return None;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["result"], "hit");
        let location = body["archiveLocation"].as_str().unwrap();
        let response = self.http.get(location).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.bytes().await.unwrap().to_vec();
        Some((body["cacheKey"].as_str().unwrap().to_owned(), bytes))
    }
}

/// A grant of `token` for `repository` at `ref_name` for an hour, with `main` as the default
/// branch.
pub fn grant_for(token: &str, repository: &str, ref_name: &str) -> Grant {
    Grant {
        token: Secret::new(token),
        repository: repository.into(),
        ref_name: ref_name.into(),
        default_branch: Some("main".into()),
        base_ref: None,
        lifetime: Duration::from_secs(3600),
    }
}

/// `len` bytes that differ from one call to the next.
fn random_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random::<u8>()).collect()
}
