//! gRPC through tonic, for Gitea terminating TLS itself, Gitea ≥ 1.26 over h2c, or a proxy that
//! forwards gRPC. tonic calls `/runner.v1.RunnerService/…` at the origin root (tonic issue
//! #1314), so [`PathPrefix`] rewrites every request path to `{sub-path}/api/actions/…`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::settings::ClientSettings;
use super::{CAPABILITIES_HEADER, CallSettings, ClientError, Method, Reply, status};

#[derive(Debug, Clone)]
pub(super) struct GrpcTransport {
    endpoint: Endpoint,
    /// Made on first use, so building a client needs no runtime (tonic's lazy channel spawns).
    channel: Arc<OnceLock<Channel>>,
    base_url: String,
    /// `{sub-path}/api/actions`, put in front of every procedure path.
    prefix: String,
}

impl GrpcTransport {
    pub(super) fn new(settings: &ClientSettings) -> Result<GrpcTransport, ClientError> {
        let instance = settings.instance.trim().trim_end_matches('/');
        let invalid = |message: String| ClientError::InvalidSettings {
            url: instance.to_owned(),
            message,
        };
        let uri: http::Uri = instance
            .parse()
            .map_err(|error: http::uri::InvalidUri| invalid(error.to_string()))?;
        let (scheme, authority) = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme @ ("http" | "https")), Some(authority)) => (scheme, authority),
            _ => return Err(invalid("expected an http:// or https:// URL".to_owned())),
        };
        let origin = format!("{scheme}://{authority}");
        let prefix = format!("{}/api/actions", uri.path().trim_end_matches('/'));
        let mut endpoint = Endpoint::from_shared(origin)
            .map_err(|error| invalid(error.to_string()))?
            .user_agent(format!("act_runner/{}", crate::VERSION))
            .map_err(|error| invalid(error.to_string()))?
            .connect_timeout(settings.timeout);
        if scheme == "https" {
            let tls = ClientTlsConfig::new();
            endpoint = if settings.insecure {
                endpoint.tls_config_with_verifier(tls, Arc::new(insecure::AcceptAnyCertificate))
            } else {
                endpoint.tls_config(tls.with_native_roots())
            }
            .map_err(|error| invalid(error.to_string()))?;
        }
        Ok(GrpcTransport {
            endpoint,
            channel: Arc::new(OnceLock::new()),
            base_url: format!("{instance}/api/actions"),
            prefix,
        })
    }

    pub(super) fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(super) async fn call<Req, Resp>(
        &self,
        method: Method,
        request: Req,
        call: &CallSettings,
    ) -> Result<Reply<Resp>, ClientError>
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let url = format!("{}{}", self.base_url, method.path());
        let timeout = call.timeout_for(method);
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout);
        if let Some(credentials) = call.credentials_for(method) {
            let invalid = |what: &str| ClientError::InvalidSettings {
                url: url.clone(),
                message: format!("the runner {what} is not valid gRPC metadata"),
            };
            let uuid: MetadataValue<_> = credentials.uuid.parse().map_err(|_| invalid("uuid"))?;
            let token: MetadataValue<_> =
                credentials.token.parse().map_err(|_| invalid("token"))?;
            request.metadata_mut().insert("x-runner-uuid", uuid);
            request.metadata_mut().insert("x-runner-token", token);
        }
        let channel = self
            .channel
            .get_or_init(|| self.endpoint.connect_lazy())
            .clone();
        let mut grpc = tonic::client::Grpc::new(PathPrefix {
            inner: channel,
            prefix: self.prefix.clone(),
        })
        .max_decoding_message_size(method.max_reply_bytes());
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let exchange = async {
            grpc.ready().await.map_err(|error| {
                tonic::Status::from_error(Box::new(TransportFailure(error.to_string())))
            })?;
            grpc.unary(request, PathAndQuery::from_static(method.path()), codec)
                .await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_elapsed) => Err(ClientError::DeadlineExceeded {
                method,
                url,
                timeout,
            }),
            Ok(Ok(response)) => {
                let capabilities = super::capabilities_text(
                    response
                        .metadata()
                        .get(CAPABILITIES_HEADER)
                        .and_then(|value| value.to_str().ok()),
                );
                Ok(Reply {
                    message: response.into_inner(),
                    capabilities,
                })
            }
            Ok(Err(grpc_status)) => Err(map_status(method, url, timeout, grpc_status)),
        }
    }
}

/// A status made on our side of the wire (connection refused, reset, h2 error, tonic's own
/// deadline, a non-gRPC HTTP answer) carries its cause as `source`; one the server sent does not.
fn map_status(
    method: Method,
    url: String,
    timeout: Duration,
    grpc_status: tonic::Status,
) -> ClientError {
    let Some(source) = std::error::Error::source(&grpc_status) else {
        return status::classify(
            method,
            &url,
            timeout,
            status::code_from_grpc(grpc_status.code()),
            grpc_status.message().to_owned(),
        );
    };
    let mut message = grpc_status.message().to_owned();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
    while let Some(error) = cause {
        if error.is::<tonic::TimeoutExpired>() {
            return ClientError::DeadlineExceeded {
                method,
                url,
                timeout,
            };
        }
        if let Some(HttpStatus(http_status)) = error.downcast_ref::<HttpStatus>() {
            let code = status::code_from_http_status(*http_status);
            let message = format!("HTTP {http_status} instead of a gRPC answer");
            return status::classify(method, &url, timeout, code, message);
        }
        let text = error.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = error.source();
    }
    ClientError::Transport {
        method,
        url,
        message,
    }
}

/// A proxy (or Gitea without gRPC) answered with a plain HTTP error instead of gRPC.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {0}")]
struct HttpStatus(u16);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportFailure(String);

/// A tower service in front of tonic's channel that puts `prefix` in front of every request
/// path (tonic issue #1314), and turns a non-200 HTTP answer (a proxy's 502 page, a 404) into an
/// [`HttpStatus`] error instead of letting tonic parse HTML as gRPC frames.
#[derive(Debug, Clone)]
struct PathPrefix<S> {
    inner: S,
    /// Starts with `/`, no trailing `/` (e.g. `/api/actions`).
    prefix: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B, RB> tower::Service<http::Request<B>> for PathPrefix<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<RB>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let mut parts = request.uri().clone().into_parts();
        let path_and_query = parts
            .path_and_query
            .as_ref()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        // The prefix is made of a parsed URI's path plus a literal, so the join stays valid;
        // if it ever did not, the request goes out unprefixed and the server answers 404.
        if let Ok(prefixed) = format!("{}{path_and_query}", self.prefix).parse::<PathAndQuery>() {
            parts.path_and_query = Some(prefixed);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await.map_err(Into::into)?;
            if response.status() != http::StatusCode::OK {
                return Err(Box::new(HttpStatus(response.status().as_u16())) as BoxError);
            }
            Ok(response)
        })
    }
}

/// `runner.insecure` over gRPC: a verifier that accepts any server certificate, as reqwest's
/// `danger_accept_invalid_certs` does for the Connect transport.
mod insecure {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    pub(super) struct AcceptAnyCertificate;

    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            use rustls::SignatureScheme::*;
            vec![
                RSA_PKCS1_SHA256,
                RSA_PKCS1_SHA384,
                RSA_PKCS1_SHA512,
                ECDSA_NISTP256_SHA256,
                ECDSA_NISTP384_SHA384,
                ECDSA_NISTP521_SHA512,
                RSA_PSS_SHA256,
                RSA_PSS_SHA384,
                RSA_PSS_SHA512,
                ED25519,
            ]
        }
    }
}
