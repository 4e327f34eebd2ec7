//! The metrics HTTP server, hardened against slow and idle clients.
//!
//! Endpoints (exact paths, any method):
//! - `/metrics`: the registry in the Prometheus text format 0.0.4.
//! - `/healthz`: liveness, always `200 ok`.
//! - `/readyz`: `200` or `503`, the body saying why ([`super::ReadinessProbe`]).
//! - anything else: `404`.
//!
//! `axum::serve` cannot set a header-read timeout, so a silent client would hold a connection
//! forever; this module runs its own accept loop on hyper's HTTP/1 builder with a timer instead
//! (see [`ServerLimits`] for every bound). It serves on a listener it is given (socket activation)
//! or one [`bind`] made. When every connection slot is taken, the connection idle longest is closed
//! to make room (`super::idle`). Concurrent scrapes share one render (`super::coalesce`). May use:
//! `super` (the registry, the probe, `idle`, `coalesce`), `axum`, `hyper`, `tower`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_http::timeout::{RequestBodyDeadlineLayer, ResponseBodyDeadlineLayer, TimeoutLayer};
use tracing::{debug, info, warn};

use super::coalesce::CoalescedRender;
use super::idle::{Eviction, IdleConnections};
use super::{CONTENT_TYPE, Metrics, MetricsError};

/// Every bound the server enforces. [`ServerLimits::HARDENED`] holds the values the product uses.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Time to receive a complete request head. It also closes idle keep-alive connections, since
    /// hyper restarts it while waiting for the next request (Go's ReadHeaderTimeout and IdleTimeout).
    pub header_read_timeout: Duration,
    /// Time to read a request body and to produce a response head (Go's ReadTimeout); `408` after.
    pub request_timeout: Duration,
    /// Time to send a response body (Go's WriteTimeout).
    pub response_timeout: Duration,
    /// Open connections at most; further clients wait in the kernel's listen backlog.
    pub max_connections: usize,
    /// Requests handled at once across all connections.
    pub max_concurrent_requests: usize,
    /// A connection is asked to close after this long, bounding a client that never reads.
    pub max_connection_lifetime: Duration,
    /// On shutdown, how long open connections get to finish before they are dropped.
    pub shutdown_grace: Duration,
    /// When every connection slot is taken, the connection idle longest is closed to make room,
    /// once it has been idle this long (a client accepted a moment ago may not be read yet).
    /// Without this, idle clients hold the slots until their header-read timeouts and a scrape
    /// waits in the backlog behind them, past Prometheus's 10 s scrape timeout.
    pub evict_idle_after: Duration,
}

impl ServerLimits {
    /// The product's bounds: upstream's Go timeouts, plus caps Go's server lacks.
    pub const HARDENED: ServerLimits = ServerLimits {
        header_read_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(10),
        // Below systemd's default soft limit of 1024 descriptors, leaving room for the daemon's own.
        max_connections: 512,
        max_concurrent_requests: 64,
        max_connection_lifetime: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(5),
        evict_idle_after: Duration::from_millis(250),
    };
}

/// The kernel backlog [`bind`] asks for: where clients wait while `max_connections` are open.
const LISTEN_BACKLOG: i32 = 1024;
/// A scrape's head is a few hundred bytes; Go's server allows 1 MiB, far more than needed here.
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// hyper's read buffer; its smallest allowed value is 8 KiB.
const MAX_READ_BUFFER_BYTES: usize = 64 * 1024;
const MAX_REQUEST_HEADERS: usize = 64;
/// Pause after a failed accept (typically EMFILE), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Binds `addr` for the metrics server (used when systemd handed over no listener).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, MetricsError> {
    let bind_error = |source| MetricsError::Bind { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(bind_error)?;
    socket.set_reuse_address(true).map_err(bind_error)?;
    socket.bind(&addr.into()).map_err(bind_error)?;
    socket.listen(LISTEN_BACKLOG).map_err(bind_error)?;
    Ok(socket.into())
}

/// The listener to serve on: the one systemd handed over (socket activation) wins, whatever
/// `metrics.enabled` says; otherwise `addr` is bound when `enabled`; otherwise there is no server.
pub fn choose_listener(
    inherited: Option<std::net::TcpListener>,
    enabled: bool,
    addr: SocketAddr,
) -> Result<Option<std::net::TcpListener>, MetricsError> {
    match (inherited, enabled) {
        (Some(listener), _) => Ok(Some(listener)),
        (None, true) => bind(addr).map(Some),
        (None, false) => Ok(None),
    }
}

/// A metrics server holding its listener, ready to [`MetricsServer::run`].
#[derive(Debug)]
pub struct MetricsServer {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    metrics: Metrics,
    limits: ServerLimits,
}

impl MetricsServer {
    /// Takes over `listener` (from [`bind`] or socket activation). Needs a tokio runtime.
    pub fn new(
        listener: std::net::TcpListener,
        metrics: Metrics,
        limits: ServerLimits,
    ) -> Result<Self, MetricsError> {
        let listener_error = |source| MetricsError::Listener { source };
        // systemd passes blocking sockets, and tokio requires a non-blocking one.
        listener.set_nonblocking(true).map_err(listener_error)?;
        let local_addr = listener.local_addr().map_err(listener_error)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(listener_error)?;
        Ok(Self {
            listener,
            local_addr,
            metrics,
            limits,
        })
    }

    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then gives open connections
    /// [`ServerLimits::shutdown_grace`] to finish and returns. The daemon cancels `shutdown` at the
    /// end of its drain, so scrapes keep working while jobs finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            listener,
            local_addr,
            metrics,
            limits,
        } = self;
        info!(addr = %local_addr, "metrics server listening");
        serve_hardened(listener, router(metrics), limits, shutdown).await;
        info!(addr = %local_addr, "metrics server stopped");
    }
}

/// The hardened accept loop around any router (the product's, or a test's with slow routes).
async fn serve_hardened(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let service = ServiceBuilder::new()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_requests,
        ))
        .layer(ResponseBodyDeadlineLayer::new(limits.response_timeout))
        .layer(RequestBodyDeadlineLayer::new(limits.request_timeout))
        // Inside the body deadline: `TimeoutLayer` needs a `Default` body, `DeadlineBody` is not.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .service(router);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_READ_BUFFER_BYTES)
        // Checked on every parse: `max_buf_size` alone misses a head that arrives in one read.
        .max_header_size(MAX_REQUEST_HEAD_BYTES)
        .max_headers(MAX_REQUEST_HEADERS);
    let builder = Arc::new(builder);
    let connection_slots = Arc::new(Semaphore::new(limits.max_connections));
    let idle_connections = Arc::new(IdleConnections::default());
    let connections = TaskTracker::new();
    // Cancelled when the shutdown grace is over: remaining connections are dropped.
    let force_close = CancellationToken::new();

    loop {
        let Some(slot) = free_slot(
            &connection_slots,
            &idle_connections,
            limits.evict_idle_after,
            &shutdown,
        )
        .await
        else {
            break;
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "metrics server cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        // Holds a permit once the connection's first request arrived (see the shutdown below).
        let request_seen = Arc::new(Notify::new());
        let seen = Arc::clone(&request_seen);
        let entry = Arc::new(idle_connections.register());
        let evicted = entry.evicted.clone();
        let (started, ended) = (Arc::clone(&entry), entry);
        let service = TowerToHyperService::new(
            service
                .clone()
                .map_request(move |request| {
                    seen.notify_one();
                    started.request_started();
                    request
                })
                .map_response(move |response| {
                    ended.request_ended();
                    response
                }),
        );
        let shutdown = shutdown.clone();
        let force_close = force_close.clone();
        let limits = limits.clone();
        connections.spawn(async move {
            let _slot = slot;
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        debug!(%peer, error = %err, "metrics connection ended with an error");
                    }
                    return;
                }
                () = shutdown.cancelled() => {
                    // A client accepted before the shutdown may not have sent its request yet
                    // (a scrape racing `systemctl restart`): a graceful shutdown now would close
                    // it unanswered. Wait for that first request, as long as a head may take.
                    tokio::select! {
                        result = connection.as_mut() => {
                            if let Err(err) = result {
                                debug!(%peer, error = %err, "metrics connection ended with an error");
                            }
                            return;
                        }
                        () = request_seen.notified() => {}
                        () = tokio::time::sleep(limits.header_read_timeout) => {}
                    }
                }
                () = tokio::time::sleep(limits.max_connection_lifetime) => {}
                () = evicted.cancelled() => {}
            }
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = tokio::time::timeout(limits.shutdown_grace, connection.as_mut()) => {}
                () = force_close.cancelled() => {}
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        warn!(
            n_connections = connections.len(),
            "metrics connections still open after the shutdown grace; dropping them"
        );
        force_close.cancel();
        // Each task returns as soon as it sees `force_close`; the bound only guards a bug.
        let _ = tokio::time::timeout(Duration::from_secs(1), connections.wait()).await;
    }
}

/// A connection slot: a free one, else the one an idle connection gives up when it is closed
/// ([`IdleConnections::evict_oldest`]). `None` once `shutdown` is cancelled.
async fn free_slot(
    slots: &Arc<Semaphore>,
    idle_connections: &IdleConnections,
    evict_idle_after: Duration,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Ok(slot) = Arc::clone(slots).try_acquire_owned() {
            return Some(slot);
        }
        // After an eviction the slot comes back as that connection closes; otherwise look again
        // when the oldest idle connection is old enough, or a busy one may have become idle.
        let look_again = match idle_connections.evict_oldest(evict_idle_after) {
            Eviction::Evicted => None,
            Eviction::NotBefore(at) => Some(at),
            Eviction::NoneIdle => Some(tokio::time::Instant::now() + evict_idle_after),
        };
        tokio::select! {
            slot = Arc::clone(slots).acquire_owned() => return slot.ok(), // never closed
            () = sleep_until_or_forever(look_again) => {}
            () = shutdown.cancelled() => return None,
        }
    }
}

async fn sleep_until_or_forever(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn router(metrics: Metrics) -> Router {
    let for_readyz = metrics.clone();
    let coalesced = Arc::new(CoalescedRender::new(move || render_body(&metrics)));
    Router::new()
        .route(
            "/metrics",
            any(move || serve_metrics(Arc::clone(&coalesced))),
        )
        .route("/healthz", any(|| async { "ok" }))
        .route("/readyz", any(move || serve_readyz(for_readyz.clone())))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
}

/// One render for [`CoalescedRender`]; a failure is logged here once, not once per scrape sharing it.
fn render_body(metrics: &Metrics) -> Option<Bytes> {
    match metrics.render() {
        Ok(text) => Some(Bytes::from(text)),
        Err(err) => {
            warn!(error = %err, "cannot render the metrics");
            None
        }
    }
}

async fn serve_metrics<R: Fn() -> Option<Bytes>>(coalesced: Arc<CoalescedRender<R>>) -> Response {
    match coalesced.body().await {
        Some(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
            .into_response(),
    }
}

async fn serve_readyz(metrics: Metrics) -> Response {
    let verdict = metrics.readiness().verdict();
    let status = if verdict.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, verdict.reason).into_response()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Every bound shortened, so the tests run in a few seconds.
    const SHORT_LIMITS: ServerLimits = ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        max_connections: 4,
        max_concurrent_requests: 4,
        max_connection_lifetime: Duration::from_secs(2),
        shutdown_grace: Duration::from_secs(1),
        evict_idle_after: Duration::from_millis(50),
    };

    async fn serve_for_test(router: Router) -> (SocketAddr, CancellationToken) {
        serve_with(router, SHORT_LIMITS).await
    }

    async fn serve_with(router: Router, limits: ServerLimits) -> (SocketAddr, CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_hardened(listener, router, limits, shutdown.clone()));
        (addr, shutdown)
    }

    async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, Duration) {
        let started = tokio::time::Instant::now();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the server ends the exchange");
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    }

    #[tokio::test]
    async fn a_slow_handler_gets_408_at_the_request_timeout() {
        let slow = Router::new().route(
            "/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
        let (addr, shutdown) = serve_for_test(slow).await;
        let (answer, waited) = exchange(
            addr,
            b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_body_sent_slowly_is_cut_off_at_the_request_timeout() {
        let echo = Router::new().route("/echo", any(|body: axum::body::Bytes| async move { body }));
        let (addr, shutdown) = serve_for_test(echo).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .expect("the server gives up on the body")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_response_never_finished_is_cut_off_at_the_response_timeout() {
        let endless = Router::new().route(
            "/endless",
            any(|| async {
                let chunks = futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")), ()))
                });
                axum::body::Body::from_stream(chunks)
            }),
        );
        let (addr, shutdown) = serve_for_test(endless).await;
        let (answer, waited) = exchange(
            addr,
            b"GET /endless HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Cut by the response deadline (1 s), before the connection lifetime cap (2 s).
        assert!(waited < Duration::from_millis(1800), "{waited:?}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_connection_accepted_before_the_shutdown_gets_its_request_answered() {
        let router = Router::new().route("/metrics", any(|| async { "up 1" }));
        let (addr, shutdown) = serve_for_test(router).await;
        let mut early = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Served once before: an idle keep-alive connection, closed at once by the shutdown.
        let mut served = tokio::net::TcpStream::connect(addr).await.unwrap();
        served
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        served.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        tokio::time::sleep(Duration::from_millis(200)).await; // both accepted
        shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await; // the shutdown reached them
        early
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), early.read_to_end(&mut answer))
            .await
            .expect("the server answers and closes")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("up 1"), "{answer}");
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_millis(500), served.read_to_end(&mut rest));
        assert!(
            closed.await.is_ok(),
            "the idle connection is closed at once"
        );
    }

    /// Issue 23: idle clients holding every slot do not make a scrape wait for their timeouts.
    #[tokio::test]
    async fn idle_connections_holding_every_slot_give_way_to_a_scrape() {
        let router = Router::new().route("/metrics", any(|| async { "up 1" }));
        let limits = ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            max_connection_lifetime: Duration::from_secs(60),
            ..SHORT_LIMITS
        };
        let (addr, shutdown) = serve_with(router, limits).await;
        let mut idle = Vec::new();
        for _ in 0..40 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // The scrape's own connection, accepted after idle ones were closed, is read and answered.
        let (answer, waited) = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("up 1"), "{answer}");
        // Without eviction: 30 s (the header-read timeout of the idle ones) at least.
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        shutdown.cancel();
    }

    #[test]
    fn an_inherited_listener_wins_and_disabled_means_no_server() {
        let inherited = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inherited_addr = inherited.local_addr().unwrap();
        let unused: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let chosen = choose_listener(Some(inherited), false, unused)
            .unwrap()
            .unwrap();
        assert_eq!(chosen.local_addr().unwrap(), inherited_addr);
        assert!(choose_listener(None, false, unused).unwrap().is_none());
        let bound = choose_listener(None, true, "127.0.0.1:0".parse().unwrap())
            .unwrap()
            .unwrap();
        assert!(bound.local_addr().unwrap().ip().is_loopback());
    }
}
