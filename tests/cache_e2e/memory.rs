//! The server's memory stays bounded however large the entry: `act_runner cache-server` takes
//! one 96 MiB chunk and serves it back, and its peak resident set grows by less than a quarter
//! of that over its idle peak. A server that held the body in memory would grow by all of it.
//! (The absolute target, 48 MB peak for 1 GiB, is the release benchmark's:
//! `packaging/bench/cache.sh`; a debug build idles near 35 MB.)

use std::time::Duration;

use act_runner::cache::{RemoteGrants, TaskGrants as _};
use act_runner::config::Secret;

use super::free_port;
use super::shared::{CacheServer, SECRET};
use crate::daemon::harness::bounded;

const ENTRY_BYTES: usize = 96 << 20;
/// The most the peak resident set may grow while the entry passes through.
const GROWTH_LIMIT_KB: u64 = (ENTRY_BYTES / 4 / 1024) as u64;

/// `VmHWM` (the peak resident set) of process `pid`, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

#[tokio::test]
async fn a_96_mib_entry_passes_through_the_server_in_bounded_memory() {
    bounded(async {
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let server = CacheServer::start(scratch.path(), free_port()).await;
        let pid = server.pid().expect("the server runs");
        let grants =
            RemoteGrants::new(&server.url(), Secret::new(SECRET)).expect("a control-plane client");
        let token = "large-entry-task-token";
        let grant = crate::cache::grant_for(token, "owner/app", "refs/heads/main");
        grants.grant(grant).await.expect("grant the token");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a client");
        let api = format!("{}_apis/artifactcache/", server.url());
        let idle_kb = peak_rss_kb(pid);

        let id = server
            .reserve(&http, token, "large", ENTRY_BYTES as u64)
            .await;
        let body: Vec<u8> = (0..ENTRY_BYTES).map(|at| (at % 251) as u8).collect();
        http.patch(format!("{api}caches/{id}"))
            .bearer_auth(token)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("bytes 0-{}/*", ENTRY_BYTES - 1))
            .body(body)
            .send()
            .await
            .expect("upload the chunk")
            .error_for_status()
            .expect("the chunk is accepted");
        http.post(format!("{api}caches/{id}"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "size": ENTRY_BYTES }))
            .send()
            .await
            .expect("commit")
            .error_for_status()
            .expect("the commit is accepted");

        let found: serde_json::Value = http
            .get(format!("{api}cache?keys=large&version=v1"))
            .bearer_auth(token)
            .send()
            .await
            .expect("look up")
            .json()
            .await
            .expect("a hit");
        let location = found["archiveLocation"].as_str().expect("a download URL");
        let mut download = http
            .get(location)
            .send()
            .await
            .expect("download")
            .error_for_status()
            .expect("the download is served");
        let (mut received, mut mismatches) = (0usize, 0usize);
        while let Some(chunk) = download.chunk().await.expect("a body chunk") {
            mismatches += chunk
                .iter()
                .enumerate()
                .filter(|(at, byte)| **byte != ((received + at) % 251) as u8)
                .count();
            received += chunk.len();
        }
        assert_eq!((received, mismatches), (ENTRY_BYTES, 0));

        let peak_kb = peak_rss_kb(pid);
        assert!(
            peak_kb.saturating_sub(idle_kb) < GROWTH_LIMIT_KB,
            "the server peaked at {peak_kb} kB (idle {idle_kb} kB) for a {ENTRY_BYTES}-byte entry"
        );
        server.kill_hard().await;
    })
    .await;
}
