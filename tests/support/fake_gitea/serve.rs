//! Accept loops for both wires (HTTP/1.1 for Connect, h2c for gRPC) with fault injection in
//! front of the protocol adapters: every request naming a known RPC is counted, delayed,
//! failed, left hanging or dropped as the [`FaultTable`](super::faults::FaultTable) decides.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use act_runner::client::Method;
use axum::body::Body;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower::util::BoxCloneService;

use super::Shared;
use super::connect::connect_error;
use super::faults::{Decision, HANG_LIMIT, InjectedError};

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Connect,
    Grpc,
}

pub type App = BoxCloneService<Request<Incoming>, Response<Body>, Infallible>;

/// The error that makes hyper close the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("fault injection: connection dropped")]
struct DroppedConnection;

pub async fn accept_loop(
    listener: TcpListener,
    wire: Wire,
    app: App,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(_) => continue,
            },
        };
        let app = app.clone();
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |request| handle(wire, app.clone(), shared.clone(), request));
            let io = TokioIo::new(stream);
            match wire {
                Wire::Connect => {
                    let connection =
                        hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                    tokio::select! {
                        _ = connection => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                Wire::Grpc => {
                    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service);
                    tokio::select! {
                        _ = connection => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        });
    }
}

async fn handle(
    wire: Wire,
    app: App,
    shared: Arc<Shared>,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, DroppedConnection> {
    let prefix = shared.options.prefix.as_str();
    let path = request.uri().path().to_owned();
    let method = path.strip_prefix(prefix).and_then(Method::from_path);
    if wire == Wire::Grpc {
        // tonic routes at the root: strip the prefix the client had to add (tonic #1314).
        let Some(stripped) = path
            .strip_prefix(prefix)
            .filter(|rest| rest.starts_with('/'))
        else {
            return Ok(plain_status(StatusCode::NOT_FOUND));
        };
        if let Ok(uri) = stripped.parse() {
            *request.uri_mut() = uri;
        }
    }
    if let Some(method) = method {
        shared.record(method, request.headers());
        let (latency, decision) = shared.faults.decide(method, tokio::time::Instant::now());
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match decision {
            Decision::Proceed => {}
            Decision::Fail(error) => return Ok(injected_error(wire, error)),
            Decision::Hang => {
                tokio::time::sleep(HANG_LIMIT).await;
                return Ok(plain_status(StatusCode::GATEWAY_TIMEOUT));
            }
            Decision::Drop => {
                shared.dropped_connections.fetch_add(1, Ordering::Relaxed);
                return Err(DroppedConnection);
            }
        }
    }
    match app.oneshot(request).await {
        Ok(response) => Ok(response),
        Err(never) => match never {},
    }
}

fn injected_error(wire: Wire, error: InjectedError) -> Response<Body> {
    let status = match error {
        InjectedError::ProxyStatus(code) => {
            return plain_status(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY));
        }
        InjectedError::GarbledBody if wire == Wire::Connect => {
            let mut response = Response::new(Body::from(vec![0xff, 0xff, 0xff]));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/proto"),
            );
            return response;
        }
        InjectedError::GzipBomb { mebibytes } if wire == Wire::Connect => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            let zeros = vec![0u8; 1024 * 1024];
            for _ in 0..mebibytes {
                std::io::Write::write_all(&mut encoder, &zeros).expect("gzip into memory");
            }
            let compressed = encoder.finish().expect("gzip into memory");
            let mut response = Response::new(Body::from(compressed));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/proto"),
            );
            headers.insert(
                header::CONTENT_ENCODING,
                http::HeaderValue::from_static("gzip"),
            );
            return response;
        }
        InjectedError::GarbledBody | InjectedError::GzipBomb { .. } => {
            tonic::Status::internal("injected fault: garbled body")
        }
        InjectedError::Unavailable => tonic::Status::unavailable("injected fault: try later"),
        InjectedError::GiteaInternal => tonic::Status::unknown(
            "rpc error: code = Internal desc = injected fault: database is locked",
        ),
    };
    match wire {
        Wire::Connect => connect_error(status),
        Wire::Grpc => status.into_http::<tonic::body::Body>().map(Body::new),
    }
}

/// A proxy's or Go's non-Connect answer: an HTML page with the status.
fn plain_status(status: StatusCode) -> Response<Body> {
    let page = format!("<html><body><h1>{status}</h1></body></html>\n");
    let mut response = Response::new(Body::from(page));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html"),
    );
    response
}
