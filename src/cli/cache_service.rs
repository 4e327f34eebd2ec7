//! The cache service the daemon and `exec` hand their jobs: the embedded server (opened on
//! `cache.dir`, listening, told to jobs by where they run), or a shared `cache-server`
//! (`cache.external_server`) whose control plane takes the grants.
//!
//! Where the embedded server listens: on loopback when every job reaches the host's loopback
//! (host jobs, Docker jobs on `container.network: host`, no `cache.host`), else on every interface
//! as upstream does, because the per-job bridge networks come and go while the listener stays.
//! Every request still needs a credential granted for a live task, which upstream's server does
//! not ask for, so the wider bind exposes no entry to anyone else on the network.
//! Jobs are told `http://127.0.0.1:<port>/` on the host and `http://<cache.host or the host's
//! outbound IP>:<port>/` in Docker (upstream's rule for the address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::cache::{CacheServer, CacheSettings, DEFAULT_MIN_FREE_BYTES, LocalGrants, RemoteGrants};
use crate::config::{CacheConfig, Config};
use crate::daemon::cache_access::{CacheAccess, Granter};

/// A cache service started for jobs; [`RunningCache::stop`] ends the embedded server.
pub struct RunningCache {
    pub access: CacheAccess,
    /// The embedded server, for metrics; `None` with an external server.
    pub server: Option<Arc<CacheServer>>,
    serving: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
}

impl RunningCache {
    /// Stops the embedded server (bounded: in-flight requests get a few seconds).
    pub async fn stop(self) {
        if let Some((task, shutdown)) = self.serving {
            shutdown.cancel();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
    }
}

/// What the server engine needs from the configuration. The free-disk floor is
/// `health_check.min_free_disk_space_mb` when health checks are on, else 1 GiB (as upstream).
pub fn settings(config: &Config) -> CacheSettings {
    let min_free_bytes = if config.health_check.enabled {
        config
            .health_check
            .min_free_disk_space_mb
            .saturating_mul(1 << 20)
    } else {
        DEFAULT_MIN_FREE_BYTES
    };
    let cache = &config.cache;
    CacheSettings {
        dir: cache.dir.clone(),
        retention: cache.retention,
        repo_size_limit: cache.repo_size_limit,
        size_limit: cache.size_limit,
        sweep_interval: cache.sweep_interval,
        min_free_bytes,
        v2: cache.v2,
        external_secret: cache.external_secret.clone(),
        ..CacheSettings::from_config(cache)
    }
}

/// Starts what `cache:` asks for: nothing when disabled, grants through the shared server with
/// `external_server`, else the embedded server. `docker_jobs` says whether jobs may run in
/// Docker; `network` is their `container.network`. An embedded server that cannot start is
/// logged and leaves jobs without a cache, as upstream does.
pub async fn start(
    cache: &CacheConfig,
    settings: CacheSettings,
    docker_jobs: bool,
    network: Option<&str>,
) -> Option<RunningCache> {
    if !cache.enabled {
        return None;
    }
    if let Some(url) = &cache.external_server {
        let secret = cache.external_secret.clone()?;
        return match RemoteGrants::new(url, secret) {
            Ok(grants) => Some(RunningCache {
                access: CacheAccess {
                    grants: Granter::Remote(Arc::new(grants)),
                    host_url: url.clone(),
                    docker_url: Some(url.clone()),
                    v2: cache.v2,
                },
                server: None,
                serving: None,
            }),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot use cache.external_server, jobs get no cache");
                None
            }
        };
    }
    match start_embedded(cache, settings, docker_jobs, network).await {
        Ok(running) => Some(running),
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "cannot start the cache server, jobs get no cache");
            None
        }
    }
}

async fn start_embedded(
    cache: &CacheConfig,
    settings: CacheSettings,
    docker_jobs: bool,
    network: Option<&str>,
) -> anyhow::Result<RunningCache> {
    let loopback_is_enough = loopback_is_enough(cache, docker_jobs, network);
    let ip = if loopback_is_enough {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let listen = SocketAddr::new(ip, cache.port);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (cache.port)"))?;
    let port = listener.local_addr().context("the cache listener")?.port();
    // The grant endpoints are a shared server's; an embedded one takes grants in process only.
    let settings = CacheSettings {
        external_secret: None,
        ..settings
    };
    let server = CacheServer::open(settings)
        .await
        .with_context(|| format!("cannot open the cache in {}", cache.dir.display()))?;
    let docker_host = match &cache.host {
        Some(host) => Some(host.clone()),
        None if loopback_is_enough => None,
        None => outbound_ip().map(|ip| ip.to_string()),
    };
    if docker_jobs && docker_host.is_none() && !loopback_is_enough {
        tracing::warn!(
            "no outbound address found for Docker jobs to reach the cache; set cache.host"
        );
    }
    let access = CacheAccess {
        grants: Granter::Local(LocalGrants::new(server.grants())),
        host_url: url(&IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(), port),
        docker_url: docker_host.map(|host| url(&host, port)),
        v2: cache.v2,
    };
    let shutdown = CancellationToken::new();
    let serving = {
        let server = Arc::clone(&server);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = server.serve(listener, shutdown).await {
                tracing::error!(error = %error, "the cache server stopped");
            }
        })
    };
    tracing::info!(
        cache_addr = %listen.ip(),
        cache_port = port,
        cache_dir = %cache.dir.display(),
        "cache server listening"
    );
    Ok(RunningCache {
        access,
        server: Some(server),
        serving: Some((serving, shutdown)),
    })
}

/// The `cache.*` keys that differ between the `running` service's settings and a reloaded
/// `new` one. A reload applies none of them: the listener, the directory, the limits and the
/// grant target belong to the service started with the daemon. (`cache.offline_mode` is not
/// among them: each task reads it from the configuration it starts with.)
pub fn restart_keys(running: &CacheConfig, new: &CacheConfig) -> Vec<&'static str> {
    let differs = [
        ("cache.enabled", running.enabled != new.enabled),
        ("cache.dir", running.dir != new.dir),
        ("cache.host", running.host != new.host),
        ("cache.port", running.port != new.port),
        (
            "cache.external_server",
            running.external_server != new.external_server,
        ),
        (
            "cache.external_secret",
            running.external_secret != new.external_secret,
        ),
        ("cache.v2", running.v2 != new.v2),
        ("cache.retention", running.retention != new.retention),
        (
            "cache.repo_size_limit",
            running.repo_size_limit != new.repo_size_limit,
        ),
        ("cache.size_limit", running.size_limit != new.size_limit),
        (
            "cache.sweep_interval",
            running.sweep_interval != new.sweep_interval,
        ),
    ];
    differs
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
}

/// Whether every job reaches the server on the host's loopback: no `cache.host` asks for another
/// address, and jobs run on the host or share its network.
pub fn loopback_is_enough(cache: &CacheConfig, docker_jobs: bool, network: Option<&str>) -> bool {
    cache.host.is_none() && (!docker_jobs || network == Some("host"))
}

/// `http://<host>:<port>/`, with an IPv6 literal in brackets.
pub fn url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{port}/")
    } else {
        format!("http://{host}:{port}/")
    }
}

/// Upstream's outbound IP: the source address the kernel picks for a public destination
/// (a UDP "connect" sends nothing).
pub fn outbound_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(8, 8, 8, 8), 80)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_stays_on_loopback_unless_docker_jobs_need_more() {
        let env = crate::config::LoadEnv::with_home("/home/runner");
        let mut cache = Config::defaults(&env).cache;
        assert!(loopback_is_enough(&cache, false, None));
        assert!(loopback_is_enough(&cache, true, Some("host")));
        assert!(!loopback_is_enough(&cache, true, None));
        assert!(!loopback_is_enough(&cache, true, Some("bridge")));
        cache.host = Some("10.0.0.2".into());
        assert!(!loopback_is_enough(&cache, false, None));
    }

    #[test]
    fn a_reload_names_every_changed_cache_key_but_offline_mode() {
        let env = crate::config::LoadEnv::with_home("/home/runner");
        let running = Config::defaults(&env).cache;
        let mut new = running.clone();
        assert!(restart_keys(&running, &new).is_empty());
        new.offline_mode = !new.offline_mode;
        assert!(restart_keys(&running, &new).is_empty());
        new.port = 9999;
        new.retention = None;
        new.external_secret = Some(crate::config::Secret::new("changed-secret"));
        assert_eq!(
            restart_keys(&running, &new),
            ["cache.port", "cache.external_secret", "cache.retention"]
        );
    }

    #[test]
    fn urls_bracket_ipv6_literals() {
        assert_eq!(url("10.0.0.2", 8088), "http://10.0.0.2:8088/");
        assert_eq!(url("cache.example", 80), "http://cache.example:80/");
        assert_eq!(url("fd00::2", 8088), "http://[fd00::2]:8088/");
        assert_eq!(url("[fd00::2]", 8088), "http://[fd00::2]:8088/");
    }
}
