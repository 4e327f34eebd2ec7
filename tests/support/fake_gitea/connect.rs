//! The Connect unary adapter: POST `{prefix}/<package>.<Service>/<Method>` with a bare protobuf
//! body → the shared service → a bare protobuf reply (gzipped when ≥ the threshold and
//! accepted) or Connect error JSON with connect-go's HTTP status. Wrong Content-Type → 415,
//! unknown path → plain 404, a bad `Connect-Protocol-Version` → 400, request encodings other
//! than gzip → 501. JSON bodies are not supported (415), unlike Gitea.

use std::future::Future;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use act_runner::client::proto::ping::ping_service_server::PingService;
use act_runner::client::proto::runner::runner_service_server::RunnerService;
use act_runner::client::{EncodedUpdateLog, Method};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::BytesMut;
use futures_util::StreamExt;
use prost::Message;
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::Shared;
use super::service::FakeService;

/// The Connect side: the runner routes under the prefix, everything else a plain 404.
pub fn router(service: FakeService) -> Router {
    let prefix = service.shared.options.prefix.clone();
    Router::new()
        .route(&format!("{prefix}/{{*procedure}}"), post(handle))
        .with_state(service)
        .fallback(not_found)
}

pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

async fn handle(
    State(service): State<FakeService>,
    Path(procedure): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(method) = Method::from_path(&format!("/{procedure}")) else {
        return not_found().await;
    };
    let body = match read_body(body, &headers).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/proto" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [("accept-post", "application/proto")],
        )
            .into_response();
    }
    if let Some(version) = headers.get("connect-protocol-version")
        && version != "1"
    {
        return connect_error(Status::invalid_argument(
            "connect-protocol-version must be \"1\"",
        ));
    }
    let body = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
    {
        None | Some("identity") => body,
        Some("gzip") => {
            let mut decoded = Vec::new();
            if let Err(error) = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut decoded) {
                return connect_error(Status::invalid_argument(format!("gzip: {error}")));
            }
            Bytes::from(decoded)
        }
        Some(other) => {
            return connect_error(Status::unimplemented(format!(
                "unknown compression \"{other}\": supported encodings are gzip"
            )));
        }
    };
    let metadata = MetadataMap::from_headers(headers.clone());
    let svc = &service;
    let reply = match method {
        Method::Ping => unary(&body, metadata, |request| svc.ping(request)).await,
        Method::Register => unary(&body, metadata, |request| svc.register(request)).await,
        Method::Declare => unary(&body, metadata, |request| svc.declare(request)).await,
        Method::FetchTask => unary(&body, metadata, |request| svc.fetch_task(request)).await,
        Method::UpdateTask => unary(&body, metadata, |request| svc.update_task(request)).await,
        // Rows stay encoded in the body they came in (each checked to be a LogRow): storing
        // them costs no copy.
        Method::UpdateLog => match EncodedUpdateLog::decode_body(body) {
            Ok(message) => {
                respond(message, metadata, |request| svc.update_log_encoded(request)).await
            }
            Err(error) => Err(unmarshal_error(error)),
        },
    };
    match reply {
        Ok((encoded, metadata)) => {
            let mut response = success(encoded, &headers, &service.shared);
            // Response metadata travels as HTTP headers in Connect unary.
            response.headers_mut().extend(metadata.into_headers());
            response
        }
        Err(status) => connect_error(status),
    }
}

/// Larger bodies are refused, as axum's `Bytes` extractor refuses them by default.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The request body in one buffer, sized once from its announced length: each piece is copied in
/// as it arrives, so the connection's read buffer is reused instead of every piece being held
/// until the last one came (which is what collecting them first costs: fresh memory for each).
async fn read_body(body: Body, headers: &HeaderMap) -> Result<Bytes, Response> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let mut stream = body.into_data_stream();
    let mut buffer = BytesMut::with_capacity(announced.min(MAX_BODY_BYTES));
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|error| {
            (
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {error}"),
            )
                .into_response()
        })?;
        if buffer.len() + piece.len() > MAX_BODY_BYTES {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded").into_response());
        }
        buffer.extend_from_slice(&piece);
    }
    Ok(buffer.freeze())
}

async fn unary<Req, Resp, Fut>(
    body: &[u8],
    metadata: MetadataMap,
    call: impl FnOnce(tonic::Request<Req>) -> Fut,
) -> Result<(Vec<u8>, MetadataMap), Status>
where
    Req: Message + Default,
    Resp: Message,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let message = Req::decode(body).map_err(unmarshal_error)?;
    respond(message, metadata, call).await
}

fn unmarshal_error(error: prost::DecodeError) -> Status {
    Status::invalid_argument(format!("unmarshal message: {error}"))
}

/// Calls the service with a decoded request and encodes its answer.
async fn respond<Req, Resp, Fut>(
    message: Req,
    metadata: MetadataMap,
    call: impl FnOnce(tonic::Request<Req>) -> Fut,
) -> Result<(Vec<u8>, MetadataMap), Status>
where
    Resp: Message,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = metadata;
    let (metadata, message, _) = call(request).await?.into_parts();
    Ok((message.encode_to_vec(), metadata))
}

fn success(encoded: Vec<u8>, request_headers: &HeaderMap, shared: &Arc<Shared>) -> Response {
    let accepts_gzip = request_headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| {
            value
                .split(',')
                .any(|coding| coding.trim().starts_with("gzip"))
        });
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/proto"),
    );
    response_headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    let threshold = shared.options.gzip_min_bytes;
    if accepts_gzip
        && threshold.is_some_and(|min| encoded.len() >= min)
        && let Some(compressed) = gzip(&encoded)
    {
        shared.gzipped_responses.fetch_add(1, Ordering::Relaxed);
        response_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return (StatusCode::OK, response_headers, Body::from(compressed)).into_response();
    }
    (StatusCode::OK, response_headers, Body::from(encoded)).into_response()
}

fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

/// Connect error JSON with connect-go's `connectCodeToHTTP` status.
pub fn connect_error(status: Status) -> Response {
    let (code, http_status) = connect_code(status.code());
    let body = serde_json::json!({ "code": code, "message": status.message() }).to_string();
    (
        StatusCode::from_u16(http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn connect_code(code: tonic::Code) -> (&'static str, u16) {
    match code {
        tonic::Code::Ok => ("ok", 200),
        tonic::Code::Cancelled => ("canceled", 499),
        tonic::Code::Unknown => ("unknown", 500),
        tonic::Code::InvalidArgument => ("invalid_argument", 400),
        tonic::Code::DeadlineExceeded => ("deadline_exceeded", 504),
        tonic::Code::NotFound => ("not_found", 404),
        tonic::Code::AlreadyExists => ("already_exists", 409),
        tonic::Code::PermissionDenied => ("permission_denied", 403),
        tonic::Code::ResourceExhausted => ("resource_exhausted", 429),
        tonic::Code::FailedPrecondition => ("failed_precondition", 400),
        tonic::Code::Aborted => ("aborted", 409),
        tonic::Code::OutOfRange => ("out_of_range", 400),
        tonic::Code::Unimplemented => ("unimplemented", 501),
        tonic::Code::Internal => ("internal", 500),
        tonic::Code::Unavailable => ("unavailable", 503),
        tonic::Code::DataLoss => ("data_loss", 500),
        tonic::Code::Unauthenticated => ("unauthenticated", 401),
    }
}
