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
//! or one [`bind`] made. May use: `super` (the registry, the probe), `axum`, `hyper`, `tower`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceBuilder;
use tower_http::timeout::{RequestBodyDeadlineLayer, ResponseBodyDeadlineLayer, TimeoutLayer};
use tracing::{debug, info, warn};

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
    };
}

/// The kernel backlog [`bind`] asks for: where clients wait while `max_connections` are open.
const LISTEN_BACKLOG: i32 = 1024;
const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;
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
            .service(router(metrics));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(MAX_REQUEST_HEAD_BYTES)
            .max_headers(MAX_REQUEST_HEADERS);
        let builder = Arc::new(builder);
        let connection_slots = Arc::new(Semaphore::new(limits.max_connections));
        let connections = TaskTracker::new();
        // Cancelled when the shutdown grace is over: remaining connections are dropped.
        let force_close = CancellationToken::new();

        loop {
            let slot = tokio::select! {
                slot = connection_slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_closed) => break, // never closed; treated as shutdown
                },
                () = shutdown.cancelled() => break,
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
            let service = TowerToHyperService::new(service.clone());
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
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(limits.max_connection_lifetime) => {}
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
        info!(addr = %local_addr, "metrics server stopped");
    }
}

fn router(metrics: Metrics) -> Router {
    let for_readyz = metrics.clone();
    Router::new()
        .route("/metrics", any(move || serve_metrics(metrics.clone())))
        .route("/healthz", any(|| async { "ok" }))
        .route("/readyz", any(move || serve_readyz(for_readyz.clone())))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
}

async fn serve_metrics(metrics: Metrics) -> Response {
    match metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            warn!(error = %err, "cannot render the metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics",
            )
                .into_response()
        }
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
