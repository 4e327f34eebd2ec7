//! Benchmark: `/metrics` scrape latency with 200 concurrent scrapers, on an idle registry and while
//! the registry is updated hot (simulated running jobs), printing p50, p99 and max for both.
//!
//! Run with `packaging/bench/scrape-latency.sh` (or `cargo run --release --example scrape_latency`).
//! Scrapers, updaters and the server share one process and the machine's cores, as a scrape on a
//! busy runner host would; each scrape opens its own connection, the worst case for the server.
//!
//! The `floor` phase runs the same scrapers against a bare responder in the same process (accept,
//! read the head, write a fixed response of the exposition's size, close): the cost of the client,
//! the loopback TCP and the scheduling, which no server can go below. Each line ends with the load
//! average, since the machine's cores may be shared.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use act_runner::client::Method;
use act_runner::metrics::{
    FetchOutcome, JobOutcome, Metrics, MetricsServer, ReportResult, RunnerInfo, ServerLimits,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

const N_SCRAPERS: usize = 200;
const SCRAPES_PER_SCRAPER: usize = 25;
const N_UPDATERS: usize = 8;
const SCRAPE_LIMIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() {
    let metrics = Metrics::new(RunnerInfo {
        name: "bench".into(),
        capacity: N_UPDATERS,
        readiness_grace: Duration::from_secs(30),
    });
    let listener = act_runner::metrics::bind("127.0.0.1:0".parse().expect("a literal address"))
        .expect("bind a loopback port");
    let server = MetricsServer::new(listener, metrics.clone(), ServerLimits::HARDENED)
        .expect("serve the listener");
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let server_task = tokio::spawn(server.run(shutdown.clone()));

    // Warm-up: connections, allocator, page cache of /proc.
    let _ = run_scrapers(addr, 20, 5).await;

    // The cost of one exposition, without HTTP or concurrency.
    let n_renders = 1000;
    let started = Instant::now();
    let mut n_bytes = 0;
    for _ in 0..n_renders {
        n_bytes = metrics.render().expect("the registry renders").len();
    }
    println!(
        "render: {:.1} us per exposition of {n_bytes} bytes",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(n_renders)
    );
    let single = run_scrapers(addr, 1, 200).await;
    report("single", &single, None);
    println!(
        "{N_SCRAPERS} concurrent scrapers, {SCRAPES_PER_SCRAPER} scrapes each, one connection per scrape:"
    );

    let floor_addr = serve_bare(n_bytes);
    let _ = run_scrapers(floor_addr, 20, 5).await;
    let floor = run_scrapers(floor_addr, N_SCRAPERS, SCRAPES_PER_SCRAPER).await;
    report("floor", &floor, None);

    let idle = run_scrapers(addr, N_SCRAPERS, SCRAPES_PER_SCRAPER).await;
    report("idle", &idle, None);

    let stop = Arc::new(AtomicBool::new(false));
    let n_updates = Arc::new(AtomicU64::new(0));
    let updaters: Vec<_> = (0..N_UPDATERS)
        .map(|_| {
            tokio::spawn(simulate_job(
                metrics.clone(),
                stop.clone(),
                n_updates.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    let hot = run_scrapers(addr, N_SCRAPERS, SCRAPES_PER_SCRAPER).await;
    let updates_per_second =
        n_updates.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for updater in updaters {
        let _ = updater.await;
    }
    report("hot", &hot, Some(updates_per_second));

    shutdown.cancel();
    let _ = timeout(Duration::from_secs(10), server_task).await;
}

/// One simulated running job: fetches, log and state reports, buffer changes, job ends, as fast
/// as the runtime lets it (far hotter than a real job, whose reports come every second or so).
async fn simulate_job(metrics: Metrics, stop: Arc<AtomicBool>, n_updates: Arc<AtomicU64>) {
    let mut round: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..100 {
            round += 1;
            metrics.report_log(ReportResult::Success, Duration::from_millis(round % 700));
            metrics.report_state(ReportResult::Success, Duration::from_millis(round % 300));
            metrics.log_buffer_rows((round % 500) as usize);
            metrics.fetch_observed(FetchOutcome::Empty, Some(Duration::from_millis(round % 90)));
            if round.is_multiple_of(50) {
                metrics.client_error(Method::UpdateLog);
                metrics.job_started();
                metrics.job_finished(JobOutcome::Success, Duration::from_secs(round % 4000));
            }
        }
        n_updates.fetch_add(100 * 4, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
}

/// Latencies of every scrape, from `n_scrapers` concurrent tasks.
async fn run_scrapers(addr: SocketAddr, n_scrapers: usize, n_each: usize) -> Vec<Duration> {
    let tasks: Vec<_> = (0..n_scrapers)
        .map(|_| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(n_each);
                for _ in 0..n_each {
                    let started = Instant::now();
                    match timeout(SCRAPE_LIMIT, scrape(addr)).await {
                        Ok(Ok(())) => latencies.push(started.elapsed()),
                        Ok(Err(err)) => eprintln!("scrape failed: {err}"),
                        Err(_) => eprintln!("scrape timed out after {SCRAPE_LIMIT:?}"),
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n_scrapers * n_each);
    for task in tasks {
        all.extend(task.await.unwrap_or_default());
    }
    all
}

async fn scrape(addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::with_capacity(16 * 1024);
    stream.read_to_end(&mut response).await?;
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("status other than 200"));
    }
    Ok(())
}

/// The bare responder of the `floor` phase: a fixed `200` response with a body of `n_bytes`, no
/// HTTP library and no render. Serves until the process exits.
fn serve_bare(n_bytes: usize) -> SocketAddr {
    // The server's own `bind`, for the same listen backlog (tokio's `bind` asks for 128 only).
    let listener = act_runner::metrics::bind("127.0.0.1:0".parse().expect("a literal address"))
        .expect("bind a loopback port");
    listener
        .set_nonblocking(true)
        .expect("a fresh socket can be non-blocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("a runtime is running");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let mut response =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {n_bytes}\r\nconnection: close\r\n\r\n")
            .into_bytes();
    response.resize(response.len() + n_bytes, b'#');
    let response: Arc<[u8]> = response.into();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await; // EMFILE: do not spin
                continue;
            };
            let response = Arc::clone(&response);
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut head = Vec::with_capacity(256);
                let mut chunk = [0u8; 256];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

fn report(phase: &str, latencies: &[Duration], updates_per_second: Option<f64>) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let quantile = |q: f64| -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let idx = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[idx].as_secs_f64() * 1000.0
    };
    let updates = updates_per_second
        .map(|rate| format!(" updates_per_s={rate:.0}"))
        .unwrap_or_default();
    // The 1, 5 and 15 minute load averages.
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    println!(
        "{phase:>6}: scrapes={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}{updates} load={load}",
        sorted.len(),
        quantile(0.50),
        quantile(0.99),
        quantile(1.0),
    );
}
