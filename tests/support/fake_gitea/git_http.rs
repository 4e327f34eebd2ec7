//! A git smart-HTTP server for tests: `git http-backend` (CGI) behind an axum handler, serving the
//! bare repositories under a root directory. It records the `Authorization` header of every
//! request, and may require basic authentication whose password (or user name) a check accepts, as
//! Gitea does for a task token. The fake Gitea mounts it on its Connect port (`FakeOptions::git_root`); [`GitHttpServer`] serves
//! it alone on any address (a second host).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::any;
use base64::Engine as _;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

/// Which credentials the server accepts; `None` in [`GitHttp::require`] serves anyone.
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What the server serves and what it saw.
#[derive(Clone)]
pub struct GitHttp {
    root: PathBuf,
    require: Option<TokenCheck>,
    /// Every request's path and `Authorization` header (empty when absent).
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl GitHttp {
    pub fn new(root: &Path, require: Option<TokenCheck>) -> GitHttp {
        GitHttp {
            root: root.to_path_buf(),
            require,
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Every request so far: its path and its `Authorization` header.
    pub fn requests(&self) -> Vec<(String, String)> {
        act_runner::sync::lock(&self.seen).clone()
    }

    /// The smart-HTTP routes of `/<owner>/<repo>` (what a fetch asks for).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/{owner}/{repo}/info/refs", any(serve))
            .route("/{owner}/{repo}/git-upload-pack", any(serve))
            .with_state(self.clone())
    }
}

/// The password of a basic `Authorization` header, or its user name when the password is empty
/// (the two ways Gitea reads a token from basic authentication).
pub fn basic_token(value: &str) -> Option<String> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    Some(if password.is_empty() { user } else { password }.to_string())
}

async fn serve(State(git): State<GitHttp>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    act_runner::sync::lock(&git.seen).push((parts.uri.path().to_string(), authorization.clone()));
    if let Some(check) = &git.require {
        let accepted = basic_token(&authorization).is_some_and(|token| check(&token));
        if !accepted {
            let mut response = Response::new(Body::from("Unauthorized\n"));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Gitea\""),
            );
            return response;
        }
    }
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    };
    let header_text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut command = tokio::process::Command::new(http_backend());
    command
        .env_clear()
        .env("GIT_PROJECT_ROOT", &git.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header_text(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header_text(header::CONTENT_ENCODING),
        )
        .env(
            "GIT_PROTOCOL",
            parts
                .headers
                .get("git-protocol")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default(),
        )
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let Ok(mut child) = command.spawn() else {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let Ok(Ok(output)) =
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await
    else {
        return status(StatusCode::GATEWAY_TIMEOUT);
    };
    cgi_response(&output.stdout)
}

/// A CGI answer (headers, a blank line, the body) as an HTTP response.
fn cgi_response(output: &[u8]) -> Response {
    let (head, body) = match find(output, b"\r\n\r\n") {
        Some(at) => (&output[..at], &output[at + 4..]),
        None => match find(output, b"\n\n") {
            Some(at) => (&output[..at], &output[at + 2..]),
            None => return status(StatusCode::BAD_GATEWAY),
        },
    };
    let mut response = Response::new(Body::from(Bytes::copy_from_slice(body)));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            *response.status_mut() = code
                .parse::<u16>()
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn status(code: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}

fn http_backend() -> PathBuf {
    let output = std::process::Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("git is installed");
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("git-http-backend")
}

/// [`GitHttp`] served alone on `addr`; stops when dropped.
pub struct GitHttpServer {
    pub git: GitHttp,
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl GitHttpServer {
    pub async fn start(addr: SocketAddr, git: GitHttp) -> GitHttpServer {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the git server");
        let addr = listener.local_addr().expect("its address");
        let stop = CancellationToken::new();
        let router = git.router();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        GitHttpServer { git, addr, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
