//! Connect unary over HTTP/1.1 (HTTP/2 via ALPN on https): a POST of the bare protobuf message,
//! the bare protobuf reply (possibly empty, possibly gzipped), or Connect error JSON.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use super::settings::ClientSettings;
use super::{CAPABILITIES_HEADER, CallSettings, ClientError, Method, Reply, status};

/// Error bodies are read for their message only; a proxy's HTML page is cut to this.
const MAX_ERROR_MESSAGE: usize = 512;

#[derive(Debug, Clone)]
pub(super) struct ConnectTransport {
    http: reqwest::Client,
    base_url: String,
}

#[derive(serde::Deserialize)]
struct ConnectErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl ConnectTransport {
    pub(super) fn new(settings: &ClientSettings) -> Result<ConnectTransport, ClientError> {
        let base_url = base_url(&settings.instance)?;
        let http = reqwest::Client::builder()
            .user_agent(format!("act_runner/{}", crate::VERSION))
            .connect_timeout(settings.timeout)
            .danger_accept_invalid_certs(settings.insecure && base_url.starts_with("https://"))
            .build()
            .map_err(|error| ClientError::InvalidSettings {
                url: base_url.clone(),
                message: error_chain(&error),
            })?;
        Ok(ConnectTransport { http, base_url })
    }

    pub(super) fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(super) async fn call<Req, Resp>(
        &self,
        method: Method,
        request: &Req,
        call: &CallSettings,
    ) -> Result<Reply<Resp>, ClientError>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        self.send(method, Bytes::from(request.encode_to_vec()), call)
            .await
    }

    /// Posts `body`, an encoded request message, as it is.
    pub(super) async fn send<Resp>(
        &self,
        method: Method,
        body: Bytes,
        call: &CallSettings,
    ) -> Result<Reply<Resp>, ClientError>
    where
        Resp: prost::Message + Default,
    {
        let url = format!("{}{}", self.base_url, method.path());
        let timeout = call.timeout_for(method);
        let headers = request_headers(method, &url, timeout, call)?;
        let send = async {
            let response = self
                .http
                .post(&url)
                .headers(headers)
                .body(body)
                .send()
                .await?;
            let http_status = response.status();
            let content_type = response.headers().get(CONTENT_TYPE).cloned();
            let capabilities = super::capabilities_text(
                response
                    .headers()
                    .get(CAPABILITIES_HEADER)
                    .and_then(|value| value.to_str().ok()),
            );
            let body = read_bounded(response, method.max_reply_bytes()).await?;
            Ok::<_, BodyError>((http_status, content_type, capabilities, body))
        };
        let (http_status, content_type, capabilities, body) =
            match tokio::time::timeout(timeout, send).await {
                Err(_elapsed) => {
                    return Err(ClientError::DeadlineExceeded {
                        method,
                        url,
                        timeout,
                    });
                }
                Ok(Err(BodyError::Http(error))) if error.is_timeout() => {
                    return Err(ClientError::DeadlineExceeded {
                        method,
                        url,
                        timeout,
                    });
                }
                Ok(Err(BodyError::Http(error))) => {
                    return Err(ClientError::Transport {
                        method,
                        message: error_chain(&error.without_url()),
                        url,
                    });
                }
                Ok(Err(BodyError::TooLarge { limit })) => {
                    return Err(ClientError::Decode {
                        method,
                        url,
                        message: format!(
                            "the reply is larger than {limit} bytes (decompressed); refused"
                        ),
                    });
                }
                Ok(Ok(reply)) => reply,
            };
        if http_status == reqwest::StatusCode::OK {
            let message = Resp::decode(body).map_err(|error| ClientError::Decode {
                method,
                url,
                message: error.to_string(),
            })?;
            return Ok(Reply {
                message,
                capabilities,
            });
        }
        let (code, message) = error_code_and_message(http_status.as_u16(), content_type, &body);
        Err(status::classify(method, &url, timeout, &code, message))
    }
}

/// Why a reply's body was not read.
enum BodyError {
    Http(reqwest::Error),
    /// The body (as decompressed) passed `limit` bytes: reading stopped there.
    TooLarge {
        limit: usize,
    },
}

impl From<reqwest::Error> for BodyError {
    fn from(error: reqwest::Error) -> BodyError {
        BodyError::Http(error)
    }
}

/// Reads the body chunk by chunk, so a small gzip that inflates a thousandfold stops at `limit`
/// instead of being held whole.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `{instance without trailing /}/api/actions`, validated as an http(s) URL.
fn base_url(instance: &str) -> Result<String, ClientError> {
    let trimmed = instance.trim().trim_end_matches('/');
    let invalid = |message: String| ClientError::InvalidSettings {
        url: instance.to_owned(),
        message,
    };
    let parsed = reqwest::Url::parse(trimmed).map_err(|error| invalid(error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme `{}` is not http or https",
            parsed.scheme()
        )));
    }
    Ok(format!("{trimmed}/api/actions"))
}

fn request_headers(
    method: Method,
    url: &str,
    timeout: Duration,
    call: &CallSettings,
) -> Result<HeaderMap, ClientError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/proto"));
    headers.insert("connect-protocol-version", HeaderValue::from_static("1"));
    // At most 10 digits, as the Connect protocol requires.
    let timeout_ms = timeout.as_millis().clamp(1, 9_999_999_999);
    headers.insert("connect-timeout-ms", HeaderValue::from(timeout_ms as u64));
    if let Some(credentials) = call.credentials_for(method) {
        let invalid = |what: &str| ClientError::InvalidSettings {
            url: url.to_owned(),
            message: format!("the runner {what} is not a valid HTTP header value"),
        };
        let uuid = HeaderValue::from_str(&credentials.uuid).map_err(|_| invalid("uuid"))?;
        let mut token = HeaderValue::from_str(&credentials.token).map_err(|_| invalid("token"))?;
        token.set_sensitive(true);
        headers.insert("x-runner-uuid", uuid);
        headers.insert("x-runner-token", token);
    }
    Ok(headers)
}

/// Connect error JSON if the body is that, else connect-go's HTTP status fallback.
fn error_code_and_message(
    http_status: u16,
    content_type: Option<HeaderValue>,
    body: &Bytes,
) -> (String, String) {
    let is_json = content_type
        .as_ref()
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if is_json
        && let Ok(parsed) = serde_json::from_slice::<ConnectErrorBody>(body)
        && !parsed.code.is_empty()
    {
        return (parsed.code, parsed.message);
    }
    let text = String::from_utf8_lossy(body);
    let mut snippet: String = text.trim().chars().take(MAX_ERROR_MESSAGE).collect();
    if snippet.is_empty() {
        snippet = "empty body".to_owned();
    }
    (
        status::code_from_http_status(http_status).to_owned(),
        format!("HTTP {http_status}: {snippet}"),
    )
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_trims_trailing_slashes_and_keeps_the_sub_path() {
        assert_eq!(
            base_url("https://example.com/gitea//").unwrap(),
            "https://example.com/gitea/api/actions"
        );
        assert_eq!(
            base_url("http://127.0.0.1:3000").unwrap(),
            "http://127.0.0.1:3000/api/actions"
        );
        assert!(base_url("ftp://example.com").is_err());
        assert!(base_url("not a url").is_err());
    }

    #[test]
    fn non_json_error_bodies_fall_back_to_the_http_status() {
        let (code, message) = error_code_and_message(
            502,
            Some(HeaderValue::from_static("text/html")),
            &Bytes::from_static(b"<html>bad gateway</html>"),
        );
        assert_eq!(code, "unavailable");
        assert!(message.contains("502"), "{message}");
        let (code, message) = error_code_and_message(
            500,
            Some(HeaderValue::from_static("application/json")),
            &Bytes::from_static(br#"{"code":"unknown","message":"boom"}"#),
        );
        assert_eq!((code.as_str(), message.as_str()), ("unknown", "boom"));
    }
}
