//! Reaching the Docker daemon: upstream's socket discovery order, a client with a negotiated API
//! version, a real API ping, and the start-up wait bounded by `container.docker_timeout`.
//!
//! Discovery (`getDockerSocketPath` upstream): `container.docker_host` unless empty or `-`; else
//! `DOCKER_HOST` when set (even empty); else the first existing socket among the well-known paths;
//! else an error. [`discover_docker_host`] is pure: the environment and the file check are inputs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, Docker};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::API_TIMEOUT;

/// How long one ping may take (upstream probes with a 2 s bound when deciding the fallback platform).
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between pings while waiting for the daemon (upstream: 1 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(1);

/// Why the daemon cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DockerConnectError {
    /// No configured host, no `DOCKER_HOST`, and no socket at any well-known path.
    #[error("daemon Docker Engine socket not found and docker_host config was invalid")]
    NotFound,
    /// The host string is not something the client can connect to.
    #[error("cannot use docker host `{host}`: {reason}")]
    Connect { host: String, reason: String },
    /// The daemon did not answer a ping (or the version negotiation).
    #[error("cannot ping the docker daemon at `{host}`, is it running? {reason}")]
    Ping { host: String, reason: String },
}

/// The parts of the process environment discovery reads.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryEnv {
    /// `DOCKER_HOST`, `Some("")` when set but empty.
    pub docker_host: Option<String>,
    pub home: Option<String>,
    pub xdg_runtime_dir: Option<String>,
}

impl DiscoveryEnv {
    /// Reads the real environment.
    pub fn from_process() -> DiscoveryEnv {
        DiscoveryEnv {
            docker_host: std::env::var("DOCKER_HOST").ok(),
            home: std::env::var("HOME").ok(),
            xdg_runtime_dir: std::env::var("XDG_RUNTIME_DIR").ok(),
        }
    }
}

/// The Docker host to use, in upstream's order; `exists` is an lstat-style check.
pub fn discover_docker_host(
    configured: &str,
    env: &DiscoveryEnv,
    exists: impl Fn(&Path) -> bool,
) -> Result<String, DockerConnectError> {
    if !configured.is_empty() && configured != "-" {
        return Ok(configured.to_string());
    }
    if let Some(docker_host) = &env.docker_host {
        return Ok(docker_host.clone());
    }
    for candidate in socket_candidates(env) {
        if exists(&candidate) {
            return Ok(format!("unix://{}", candidate.display()));
        }
    }
    Err(DockerConnectError::NotFound)
}

/// Discovery against the real process environment and file system.
pub fn discover_docker_host_from_process(configured: &str) -> Result<String, DockerConnectError> {
    discover_docker_host(configured, &DiscoveryEnv::from_process(), |path| {
        std::fs::symlink_metadata(path).is_ok()
    })
}

/// The well-known socket paths, in order; paths under an unset variable are skipped.
fn socket_candidates(env: &DiscoveryEnv) -> Vec<PathBuf> {
    let mut candidates = vec![
        PathBuf::from("/var/run/docker.sock"),
        PathBuf::from("/run/podman/podman.sock"),
    ];
    if let Some(home) = &env.home {
        candidates.push(Path::new(home).join(".colima/docker.sock"));
    }
    if let Some(runtime) = &env.xdg_runtime_dir {
        candidates.push(Path::new(runtime).join("docker.sock"));
        candidates.push(Path::new(runtime).join("podman/podman.sock"));
    }
    if let Some(home) = &env.home {
        candidates.push(Path::new(home).join(".docker/run/docker.sock"));
    }
    candidates
}

/// What `container.docker_host` becomes after discovery, as upstream sets it: the socket path to
/// mount into job containers for a `unix://` host, `None` (upstream's `-`) for anything else or
/// when the configuration said `-`.
pub fn socket_to_mount(configured: &str, resolved: &str) -> Option<String> {
    if configured == "-" {
        return None;
    }
    let lower = resolved.to_ascii_lowercase();
    if lower.starts_with("unix://") {
        Some(resolved["unix://".len()..].to_string())
    } else {
        None
    }
}

/// A client for `host` with the API version negotiated down to what the daemon speaks (20.10
/// speaks 1.41; bollard defaults to a newer one the daemon would refuse).
pub async fn connect(host: &str) -> Result<Docker, DockerConnectError> {
    let host = if host.is_empty() {
        "unix:///var/run/docker.sock"
    } else {
        host
    };
    let timeout_secs = API_TIMEOUT.as_secs();
    let lower = host.to_ascii_lowercase();
    let client = if lower.starts_with("unix://") {
        Docker::connect_with_unix(host, timeout_secs, API_DEFAULT_VERSION)
    } else if lower.starts_with("tcp://") || lower.starts_with("http://") {
        Docker::connect_with_http(host, timeout_secs, API_DEFAULT_VERSION)
    } else {
        return Err(DockerConnectError::Connect {
            host: host.to_string(),
            reason: String::from("unsupported scheme (use unix://, tcp:// or http://)"),
        });
    };
    let client = client.map_err(|err| DockerConnectError::Connect {
        host: host.to_string(),
        reason: err.to_string(),
    })?;
    let ping_error = |reason: String| DockerConnectError::Ping {
        host: host.to_string(),
        reason,
    };
    let client = match tokio::time::timeout(PING_TIMEOUT, client.negotiate_version()).await {
        Ok(Ok(client)) => client,
        Ok(Err(err)) => return Err(ping_error(err.to_string())),
        Err(_) => {
            return Err(ping_error(format!(
                "no answer within {}s",
                PING_TIMEOUT.as_secs()
            )));
        }
    };
    ping(&client).await.map_err(ping_error)?;
    Ok(client)
}

/// One `/_ping`, bounded by [`PING_TIMEOUT`].
pub async fn ping(docker: &Docker) -> Result<(), String> {
    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {}s", PING_TIMEOUT.as_secs())),
    }
}

/// Upstream's start-up readiness: with `docker_timeout > 0`, ping every second until the daemon
/// answers or the time is up (errors logged); then one mandatory attempt whose failure is returned.
pub async fn wait_until_ready(
    host: &str,
    docker_timeout: Duration,
    cancel: &CancellationToken,
) -> Result<Docker, DockerConnectError> {
    if !docker_timeout.is_zero() {
        let give_up = Instant::now() + docker_timeout;
        loop {
            match connect(host).await {
                Ok(docker) => {
                    tracing::info!(docker_host = %host, "Docker is ready");
                    return Ok(docker);
                }
                Err(err) => {
                    tracing::warn!(docker_host = %host, error = %err, "Docker is not ready yet")
                }
            }
            let now = Instant::now();
            if now >= give_up {
                tracing::warn!(docker_host = %host, waited = ?docker_timeout, "Docker wait timeout expired");
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(PING_INTERVAL.min(give_up - now)) => {}
            }
        }
    }
    connect(host).await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        configured: &'static str,
        docker_host: Option<&'static str>,
        existing: &'static [&'static str],
        expect: Option<&'static str>,
    }

    #[test]
    fn discovery_follows_upstream_order() {
        let cases = [
            Case {
                configured: "tcp://10.0.0.1:2375",
                docker_host: Some("unix:///x"),
                existing: &["/var/run/docker.sock"],
                expect: Some("tcp://10.0.0.1:2375"),
            },
            Case {
                configured: "-",
                docker_host: Some("unix:///x"),
                existing: &[],
                expect: Some("unix:///x"),
            },
            Case {
                configured: "",
                docker_host: Some(""),
                existing: &["/var/run/docker.sock"],
                expect: Some(""),
            },
            Case {
                configured: "",
                docker_host: None,
                existing: &["/var/run/docker.sock", "/run/podman/podman.sock"],
                expect: Some("unix:///var/run/docker.sock"),
            },
            Case {
                configured: "",
                docker_host: None,
                existing: &["/run/podman/podman.sock", "/home/u/.colima/docker.sock"],
                expect: Some("unix:///run/podman/podman.sock"),
            },
            Case {
                configured: "",
                docker_host: None,
                existing: &["/home/u/.colima/docker.sock", "/run/user/1000/docker.sock"],
                expect: Some("unix:///home/u/.colima/docker.sock"),
            },
            Case {
                configured: "",
                docker_host: None,
                existing: &[
                    "/run/user/1000/docker.sock",
                    "/run/user/1000/podman/podman.sock",
                ],
                expect: Some("unix:///run/user/1000/docker.sock"),
            },
            Case {
                configured: "",
                docker_host: None,
                existing: &[
                    "/run/user/1000/podman/podman.sock",
                    "/home/u/.docker/run/docker.sock",
                ],
                expect: Some("unix:///run/user/1000/podman/podman.sock"),
            },
            Case {
                configured: "",
                docker_host: None,
                existing: &["/home/u/.docker/run/docker.sock"],
                expect: Some("unix:///home/u/.docker/run/docker.sock"),
            },
            Case {
                configured: "-",
                docker_host: None,
                existing: &[],
                expect: None,
            },
        ];
        for (idx, case) in cases.iter().enumerate() {
            let env = DiscoveryEnv {
                docker_host: case.docker_host.map(str::to_string),
                home: Some(String::from("/home/u")),
                xdg_runtime_dir: Some(String::from("/run/user/1000")),
            };
            let found = discover_docker_host(case.configured, &env, |path| {
                case.existing
                    .iter()
                    .any(|existing| Path::new(existing) == path)
            });
            match (found, case.expect) {
                (Ok(host), Some(expect)) => assert_eq!(host, expect, "case {idx}"),
                (Err(DockerConnectError::NotFound), None) => {}
                (other, _) => panic!("case {idx}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn unset_variables_skip_their_candidates() {
        let env = DiscoveryEnv::default();
        let found = discover_docker_host("", &env, |path| {
            path.starts_with("/.colima") || path == Path::new("/docker.sock")
        });
        assert!(matches!(found, Err(DockerConnectError::NotFound)));
    }

    #[test]
    fn only_unix_hosts_are_mounted_into_jobs() {
        assert_eq!(
            socket_to_mount("", "unix:///var/run/docker.sock").as_deref(),
            Some("/var/run/docker.sock")
        );
        assert_eq!(socket_to_mount("", "tcp://10.0.0.1:2375"), None);
        assert_eq!(socket_to_mount("-", "unix:///var/run/docker.sock"), None);
    }

    #[tokio::test]
    async fn unsupported_scheme_is_an_error_not_a_hang() {
        let result = tokio::time::timeout(Duration::from_secs(5), connect("ssh://example"))
            .await
            .unwrap();
        assert!(matches!(result, Err(DockerConnectError::Connect { .. })));
    }
}
