//! The cache benchmark's Rust side (run by `packaging/bench/cache.sh`):
//!
//! - `serve DIR`: a cache server on loopback with the token `bench-token-0001` granted; prints
//!   its URL, serves until stdin closes (the script reads the process's peak RSS).
//! - `transfer URL FILE`: saves FILE through the v1 API as `@actions/cache` does (32 MiB chunks,
//!   4 in flight), restores it to `FILE.restored` (synced), and prints both durations.
//! - `lookups DIR`: fills an index of 100 000 entries, then times v1 lookups over HTTP (exact and
//!   restore-key prefix) and prints p50/p99.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use act_runner::cache::{CacheServer, CacheSettings, Grant, LocalGrants, TaskGrants};
use act_runner::config::Secret;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-token-0001";
const REPO: &str = "bench/repo";
const REF: &str = "refs/heads/main";
const VERSION: &str = "bench-version-0000000000000000000000000000000000000000000000000000";
const CHUNK: u64 = 32 << 20;
const IN_FLIGHT: usize = 4;
const N_ENTRIES: u64 = 100_000;
const N_LOOKUPS: usize = 5_000;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", dir] => serve(dir).await,
        ["transfer", url, file] => transfer(url, file).await,
        ["lookups", dir] => lookups(dir).await,
        _ => Err("usage: cache_bench serve DIR | transfer URL FILE | lookups DIR".into()),
    }
}

async fn start(dir: &str) -> Res<(Arc<CacheServer>, String, CancellationToken)> {
    let settings = CacheSettings {
        dir: dir.into(),
        retention: None,
        repo_size_limit: None,
        size_limit: None,
        sweep_interval: Duration::from_secs(3600),
        min_free_bytes: 0,
        v2: true,
        external_secret: None,
        signed_url_ttl: Duration::from_secs(3600),
        public_url: None,
    };
    let server = CacheServer::open(settings).await?;
    LocalGrants::new(server.grants())
        .grant(Grant {
            token: Secret::new(TOKEN),
            repository: REPO.into(),
            ref_name: REF.into(),
            default_branch: Some("main".into()),
            base_ref: None,
            lifetime: Duration::from_secs(3600),
        })
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    tokio::spawn(server.clone().serve(listener, shutdown.clone()));
    Ok((server, url, shutdown))
}

async fn serve(dir: &str) -> Res<()> {
    let (_server, url, shutdown) = start(dir).await?;
    println!("{url}");
    // Serve until the script closes stdin.
    let _ =
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await;
    shutdown.cancel();
    Ok(())
}

async fn transfer(url: &str, path: &str) -> Res<()> {
    let http = reqwest::Client::new();
    let file = Arc::new(std::fs::File::open(path)?);
    let size = file.metadata()?.len();

    let started = Instant::now();
    let reserve: serde_json::Value = http
        .post(format!("{url}_apis/artifactcache/caches"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "key": "bench-1gib", "version": VERSION, "cacheSize": size }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = reserve["cacheId"].as_u64().ok_or("no cacheId")?;
    let chunk_url = format!("{url}_apis/artifactcache/caches/{id}");
    let starts: Vec<u64> = (0..size).step_by(CHUNK as usize).collect();
    let results: Vec<Res<()>> = futures_util::stream::iter(starts)
        .map(|start| {
            let (http, file, chunk_url) = (http.clone(), file.clone(), chunk_url.clone());
            async move {
                let len = CHUNK.min(size - start);
                let bytes = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0; len as usize];
                    file.read_exact_at(&mut buf, start).map(|()| buf)
                })
                .await??;
                http.patch(&chunk_url)
                    .bearer_auth(TOKEN)
                    .header(
                        "Content-Range",
                        format!("bytes {start}-{}/*", start + len - 1),
                    )
                    .body(bytes)
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    for result in results {
        result?;
    }
    http.post(&chunk_url)
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "size": size }))
        .send()
        .await?
        .error_for_status()?;
    let save = started.elapsed();

    let started = Instant::now();
    let hit: serde_json::Value = http
        .get(format!(
            "{url}_apis/artifactcache/cache?keys=bench-1gib&version={VERSION}"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let location = hit["archiveLocation"]
        .as_str()
        .ok_or("no archiveLocation")?;
    let mut response = http.get(location).send().await?.error_for_status()?;
    // Buffered like a stream-to-file client: each hop of `tokio::fs` to its blocking pool writes
    // 4 MiB, not one small HTTP chunk, so the client does not cap the server's restore rate.
    let mut out = tokio::io::BufWriter::with_capacity(
        4 << 20,
        tokio::fs::File::create(format!("{path}.restored")).await?,
    );
    while let Some(chunk) = response.chunk().await? {
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    out.get_ref().sync_all().await?;
    let restore = started.elapsed();
    println!(
        "save_s={:.3} restore_s={:.3} bytes={size}",
        save.as_secs_f64(),
        restore.as_secs_f64()
    );
    Ok(())
}

async fn lookups(dir: &str) -> Res<()> {
    let (server, url, shutdown) = start(dir).await?;
    let filled = Instant::now();
    server
        .fill_for_benchmark(REPO, REF, "deps-", VERSION, N_ENTRIES)
        .await?;
    eprintln!(
        "index of {N_ENTRIES} entries filled in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    let http = reqwest::Client::new();
    // Keys are `deps-0` to `deps-99999`: a restore-key prefix of two digits (`deps-42`) matches
    // 1 111 entries, one of one digit (`deps-4`) 11 111.
    for (label, width) in [("exact", 0), ("prefix", 2), ("prefix_wide", 1)] {
        let mut times = Vec::with_capacity(N_LOOKUPS);
        for i in 0..N_LOOKUPS {
            let n = rand::random::<u64>() % N_ENTRIES;
            let keys = match width {
                0 => format!("deps-{n}"),
                2 => format!("missing-{i},deps-{}", 10 + n % 90),
                _ => format!("missing-{i},deps-{}", 1 + n % 9),
            };
            let started = Instant::now();
            let response = http
                .get(format!(
                    "{url}_apis/artifactcache/cache?keys={keys}&version={VERSION}"
                ))
                .bearer_auth(TOKEN)
                .send()
                .await?;
            let status = response.status();
            let _ = response.bytes().await?;
            times.push(started.elapsed());
            if status != reqwest::StatusCode::OK {
                return Err(format!("lookup of {keys} answered {status}").into());
            }
        }
        times.sort();
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        println!(
            "lookups_{label}: p50_ms={:.3} p99_ms={:.3} n={N_LOOKUPS} entries={N_ENTRIES}",
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3
        );
    }
    shutdown.cancel();
    Ok(())
}
