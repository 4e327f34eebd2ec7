//! The metrics server over real sockets: endpoints, bounded labels, Slowloris resistance, and the
//! exposition checked by Prometheus's own tools (promtool, a real server scraping on loopback).

use std::net::SocketAddr;
use std::time::Duration;

use act_runner::client::Method;
use act_runner::metrics::labels::allowed_values;
use act_runner::metrics::{
    FetchOutcome, JobOutcome, LabelValue, Metrics, MetricsError, MetricsServer, ReloadResult,
    ReportResult, RunnerInfo, ServerLimits,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

mod daemon_run;
mod prometheus;

const RUNNER_NAME: &str = "runner-under-test";
/// Bound for one test's whole conversation with the server.
const TEST_LIMIT: Duration = Duration::from_secs(30);

fn new_metrics() -> Metrics {
    Metrics::new(RunnerInfo {
        name: RUNNER_NAME.into(),
        capacity: 4,
        readiness_grace: Duration::from_secs(30),
    })
}

struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningServer {
    async fn stop(self) {
        self.shutdown.cancel();
        timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops within its shutdown grace")
            .unwrap();
    }
}

fn start(metrics: Metrics, limits: ServerLimits) -> RunningServer {
    let listener = act_runner::metrics::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = MetricsServer::new(listener, metrics, limits).unwrap();
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    RunningServer {
        addr,
        shutdown,
        task,
    }
}

struct Answer {
    status: u16,
    content_type: Option<String>,
    body: String,
}

/// One `GET` on a fresh connection, speaking the wire by hand.
async fn get(addr: SocketAddr, path: &str) -> Answer {
    timeout(TEST_LIMIT, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        parse_answer(&String::from_utf8(raw).unwrap())
    })
    .await
    .expect("GET answered in time")
}

fn parse_answer(raw: &str) -> Answer {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .expect("a complete response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let content_type = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-type")
            .then(|| value.trim().to_owned())
    });
    Answer {
        status,
        content_type,
        body: body.to_owned(),
    }
}

/// Moves every family through the public API, with every label value at least once.
fn drive_every_metric(metrics: &Metrics) {
    for outcome in FetchOutcome::ALL {
        metrics.fetch_observed(*outcome, Some(Duration::from_millis(30)));
    }
    metrics.fetch_observed(FetchOutcome::Empty, None);
    metrics.backoff_changed(Duration::from_secs(4));
    for method in [
        Method::FetchTask,
        Method::UpdateLog,
        Method::UpdateTask,
        Method::Declare,
        Method::Ping,
        Method::Register,
    ] {
        metrics.client_error(method);
    }
    for status in JobOutcome::ALL {
        metrics.job_started();
        metrics.job_finished(*status, Duration::from_secs(90));
    }
    metrics.job_started();
    for result in ReportResult::ALL {
        metrics.report_log(*result, Duration::from_millis(80));
        metrics.report_state(*result, Duration::from_millis(40));
    }
    metrics.log_buffer_rows(17);
    metrics.docker_up(true);
    metrics.set_draining(false);
    for result in ReloadResult::ALL {
        metrics.config_reload(*result);
    }
    metrics.log_spool_bytes(4096);
    metrics.readiness().set_started();
}

/// One sample line of the text format: family name, labels, value.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').unwrap();
                    // Our label values never hold `,` or `"` (they are constants or the runner name).
                    let labels = inner
                        .split(',')
                        .map(|pair| {
                            let (key, value) = pair.split_once('=').unwrap();
                            (key.to_owned(), value.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().unwrap(),
            }
        })
        .collect()
}

#[tokio::test]
async fn endpoints_answer_as_specified() {
    let metrics = new_metrics();
    let server = start(metrics.clone(), ServerLimits::HARDENED);

    let scrape = get(server.addr, "/metrics").await;
    assert_eq!(scrape.status, 200);
    assert_eq!(
        scrape.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        scrape
            .body
            .contains("# TYPE act_runner_poll_fetch_total counter")
    );

    let health = get(server.addr, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));

    let ready = get(server.addr, "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (503, "starting"));
    metrics.readiness().set_started();
    let ready = get(server.addr, "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok"));
    metrics.set_draining(true);
    let ready = get(server.addr, "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (503, "draining"));
    let health = get(server.addr, "/healthz").await;
    assert_eq!(health.status, 200, "liveness stays 200 while draining");

    assert_eq!(get(server.addr, "/metrics/extra").await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn every_label_value_of_a_busy_scrape_belongs_to_its_constant_set() {
    let metrics = new_metrics();
    drive_every_metric(&metrics);
    let server = start(metrics.clone(), ServerLimits::HARDENED);
    let scrape = get(server.addr, "/metrics").await;
    server.stop().await;

    let samples = parse_samples(&scrape.body);
    let mut n_labelled = 0;
    for sample in &samples {
        for (label, value) in &sample.labels {
            n_labelled += 1;
            if sample.name == "act_runner_info" {
                let expected = match label.as_str() {
                    "version" => act_runner::VERSION,
                    "name" => RUNNER_NAME,
                    other => panic!("unexpected label {other} on act_runner_info"),
                };
                assert_eq!(value, expected);
                continue;
            }
            if label == "le" && sample.name.ends_with("_bucket") {
                assert!(
                    value == "+Inf" || value.parse::<f64>().is_ok(),
                    "bucket bound {value}"
                );
                continue;
            }
            let allowed = allowed_values(&sample.name, label).unwrap_or_else(|| {
                panic!("{}: label {label} is not a declared label", sample.name)
            });
            assert!(
                allowed.contains(&value.as_str()),
                "{}{{{label}=\"{value}\"}} is outside {allowed:?}",
                sample.name
            );
        }
    }
    assert!(n_labelled > 40, "the scrape held labelled series");

    // Every constant of every set was driven, so every one shows a non-zero count.
    let value_of = |name: &str, label: &str, value: &str| -> f64 {
        samples
            .iter()
            .find(|s| s.name == name && s.labels == [(label.to_owned(), value.to_owned())])
            .unwrap_or_else(|| panic!("no {name}{{{label}=\"{value}\"}}"))
            .value
    };
    for (family, label) in [
        ("act_runner_poll_fetch_total", "result"),
        ("act_runner_client_errors_total", "method"),
        ("act_runner_job_total", "status"),
        ("act_runner_report_log_total", "result"),
        ("act_runner_report_state_total", "result"),
        ("act_runner_config_reloads_total", "result"),
    ] {
        for value in allowed_values(family, label).unwrap() {
            assert!(value_of(family, label, value) >= 1.0, "{family} {value}");
        }
    }
    assert_eq!(
        value_of("act_runner_poll_fetch_total", "result", "empty"),
        2.0
    );
    let plain = |name: &str| -> f64 {
        samples
            .iter()
            .find(|s| s.name == name && s.labels.is_empty())
            .unwrap_or_else(|| panic!("no {name}"))
            .value
    };
    assert_eq!(plain("act_runner_poll_fetch_duration_seconds_count"), 3.0);
    assert_eq!(plain("act_runner_poll_backoff_seconds"), 4.0);
    assert_eq!(plain("act_runner_job_duration_seconds_count"), 5.0);
    assert_eq!(plain("act_runner_job_running"), 1.0);
    assert_eq!(plain("act_runner_job_capacity_utilization_ratio"), 0.25);
    assert_eq!(plain("act_runner_report_log_duration_seconds_count"), 2.0);
    assert_eq!(plain("act_runner_report_state_duration_seconds_count"), 2.0);
    assert_eq!(plain("act_runner_report_log_buffer_rows"), 17.0);
    assert_eq!(plain("act_runner_docker_up"), 1.0);
    assert_eq!(plain("act_runner_log_spool_bytes"), 4096.0);
    assert_eq!(plain("act_runner_capacity"), 4.0);
    assert!(plain("process_resident_memory_bytes") > 0.0);
}

/// Seconds until the server closed `stream`, reading whatever it sends meanwhile.
async fn seconds_until_closed(stream: &mut tokio::net::tcp::OwnedReadHalf) -> f64 {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return started.elapsed().as_secs_f64(),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_within_6_seconds() {
    let server = start(new_metrics(), ServerLimits::HARDENED);
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, _writer) = stream.into_split();
    let waited = timeout(Duration::from_secs(6), seconds_until_closed(&mut reader))
        .await
        .expect("the silent connection was closed within 6 s");
    assert!(
        waited >= 4.0,
        "closed after {waited:.1} s, not by the 5 s header timeout"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_header_sent_one_byte_per_second_is_closed_within_6_seconds() {
    let server = start(new_metrics(), ServerLimits::HARDENED);
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let dribble = tokio::spawn(async move {
        for byte in b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Slow: yes\r\n\r\n" {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let waited = timeout(Duration::from_secs(6), seconds_until_closed(&mut reader))
        .await
        .expect("the dribbling connection was closed within 6 s");
    assert!(waited >= 4.0, "closed after {waited:.1} s");
    dribble.abort();
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let server = start(new_metrics(), ServerLimits::HARDENED);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let padding = "a".repeat(100 * 1024);
    let request = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\n\r\n");
    // The server may close while the head is still being written.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = timeout(Duration::from_secs(6), stream.read_to_end(&mut answer))
        .await
        .expect("the connection is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    server.stop().await;
}

/// Raises the soft descriptor limit to the hard one: the test holds 2,000 client sockets and the
/// server's accepted ones in one process.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).expect("raise the soft descriptor limit to the hard one");
    let limit = getrlimit(Resource::Nofile);
    assert!(
        limit.current.is_none_or(|current| current >= 4096),
        "the test needs 4096 descriptors, the hard limit is {:?}",
        limit.maximum
    );
}

/// Issue 23: 2,000 idle connections (four times the connection cap) must not make a scrape wait
/// for their header-read timeouts: the server closes the connection idle longest to make room.
#[tokio::test]
async fn a_scrape_behind_2000_idle_connections_is_answered_within_3_seconds() {
    raise_fd_limit();
    let limits = ServerLimits::HARDENED;
    let server = start(new_metrics(), limits.clone());
    let started = Instant::now();
    let mut idle = Vec::with_capacity(2000);
    timeout(TEST_LIMIT, async {
        for _ in 0..2000 {
            idle.push(TcpStream::connect(server.addr).await.unwrap());
        }
    })
    .await
    .expect("2000 connections opened");
    let opened = started.elapsed();
    let started = Instant::now();
    let scrape = timeout(TEST_LIMIT, get(server.addr, "/metrics"))
        .await
        .expect("the scrape is answered");
    let waited = started.elapsed();
    assert_eq!(scrape.status, 200);
    assert!(scrape.body.contains("act_runner_info"));
    println!("2000 idle connections opened in {opened:?}; a scrape behind them took {waited:?}");
    // Prometheus gives up after 10 s by default; without eviction this took 9 to 14 s.
    assert!(
        waited < Duration::from_secs(3),
        "the scrape waited {waited:?}"
    );
    drop(idle);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections_within_the_grace() {
    let server = start(new_metrics(), ServerLimits::HARDENED);
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // A keep-alive request, answered; the connection then waits for the next request.
    writer
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 512];
    let n_read = timeout(TEST_LIMIT, reader.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n_read]).starts_with("HTTP/1.1 200"));
    let addr = server.addr;
    let started = Instant::now();
    server.stop().await;
    timeout(Duration::from_secs(1), seconds_until_closed(&mut reader))
        .await
        .expect("the idle connection is closed when the server stops");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}

#[tokio::test]
async fn serves_on_a_handed_over_blocking_listener() {
    // systemd hands over a blocking socket; the server must make it non-blocking itself.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listener =
        act_runner::metrics::choose_listener(Some(listener), false, "127.0.0.1:1".parse().unwrap())
            .unwrap()
            .unwrap();
    let server = MetricsServer::new(listener, new_metrics(), ServerLimits::HARDENED).unwrap();
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let health = get(addr, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    shutdown.cancel();
    timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn a_bind_failure_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let error = act_runner::metrics::bind(addr).unwrap_err();
    assert!(matches!(error, MetricsError::Bind { addr: a, .. } if a == addr));
    assert_eq!(
        error.to_string(),
        format!("cannot bind the metrics listener on {addr}")
    );
}
