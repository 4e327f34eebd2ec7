//! `act_runner cache-server`: the actions/cache server on its own, shared by several runners.
//! Runners reach it with `cache.external_server` and grant their tasks' credentials through its
//! control plane with the shared `cache.external_secret` (or `external_secret_file`, or the
//! systemd credential `cache-secret`). It listens on the socket systemd passes under the name
//! `cache` (`act-runner-cache.socket`), else on every interface at `cache.port`; it serves its
//! metrics like the daemon (`metrics.enabled`/`metrics.addr`, or `act-runner-metrics.socket`),
//! tells systemd when it is ready, and stops on SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::cache::CacheServer;
use crate::config::{Config, Secret};
use crate::metrics::{Metrics, RunnerInfo};
use crate::systemd::Inherited;

use super::CliError;
use super::signals::{Request, Signals};

/// The systemd credential holding the shared secret (`LoadCredential=cache-secret:...`).
const CACHE_SECRET_CREDENTIAL: &str = "cache-secret";

/// Flags of `cache-server`; each overrides its `cache.*` key.
#[derive(Debug, clap::Args)]
pub struct CacheServerArgs {
    /// Cache storage directory (`cache.dir`).
    #[arg(short = 'd', long = "dir")]
    pub dir: Option<PathBuf>,
    /// Address clients use to reach the server (`cache.host`).
    #[arg(short = 's', long = "host")]
    pub host: Option<String>,
    /// Listen port (`cache.port`); 0 picks a free one.
    #[arg(short = 'p', long = "port")]
    pub port: Option<u16>,
}

/// Runs the command.
pub fn run(
    config_path: Option<PathBuf>,
    args: CacheServerArgs,
    inherited: Inherited,
) -> anyhow::Result<ExitCode> {
    let loaded = Config::load(config_path.as_deref())?;
    let log = super::logging::init(loaded.config.log.level, loaded.config.log.journald);
    drop(log);
    super::log_config_warnings(&loaded.warnings);
    let mut config = loaded.config;
    if let Some(dir) = args.dir.filter(|dir| !dir.as_os_str().is_empty()) {
        config.cache.dir = dir;
    }
    if let Some(host) = args.host.filter(|host| !host.is_empty()) {
        config.cache.host = Some(host);
    }
    if let Some(port) = args.port {
        config.cache.port = port;
    }
    if config.cache.external_secret.is_none() {
        config.cache.external_secret = credential_secret(&inherited)?;
    }
    if config.cache.external_secret.is_none() {
        return Err(CliError::InvalidInput(
            "cache.external_secret (or cache.external_secret_file) must be set for cache-server; \
             runners reach it with the same secret in their cache.external_secret"
                .to_owned(),
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("act-runner-cache")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, inherited))
}

/// The systemd credential `cache-secret`, trimmed, when the service passes one.
fn credential_secret(inherited: &Inherited) -> anyhow::Result<Option<Secret>> {
    match inherited.credentials.read(CACHE_SECRET_CREDENTIAL) {
        Ok(Some(credential)) if !credential.expose_secret().trim().is_empty() => {
            Ok(Some(Secret::new(credential.expose_secret().trim())))
        }
        Ok(_) => Ok(None),
        Err(error) => {
            Err(anyhow::Error::from(error).context("cannot read the credential cache-secret"))
        }
    }
}

async fn serve(config: Config, mut inherited: Inherited) -> anyhow::Result<ExitCode> {
    let notify = inherited.notify_socket.take();
    let signals = Signals::install().context("cannot install the signal handlers")?;
    let listener = match std::mem::replace(&mut inherited.cache_listener, Ok(None)) {
        Ok(Some(listener)) => tokio::net::TcpListener::from_std(listener)
            .context("cannot use the socket-activated cache listener")?,
        Ok(None) => {
            let addr = std::net::SocketAddr::from(([0, 0, 0, 0], config.cache.port));
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (cache.port)"))?
        }
        Err(error) => {
            return Err(anyhow::Error::from(error)
                .context("the socket-activated cache listener is unusable"));
        }
    };
    let port = listener.local_addr().context("the cache listener")?.port();
    let server = CacheServer::open(super::cache_service::settings(&config))
        .await
        .with_context(|| format!("cannot open the cache in {}", config.cache.dir.display()))?;

    let metrics = Metrics::new(RunnerInfo {
        name: "cache-server".to_owned(),
        capacity: 0,
        readiness_grace: config.metrics.readiness_grace,
    });
    metrics.watch_cache(Arc::new(super::cache_metrics::ServerStats(Arc::clone(
        &server,
    ))));
    metrics.readiness().set_started();
    let metrics_shutdown = CancellationToken::new();
    let metrics_task =
        super::daemon::start_metrics(&config, &metrics, &mut inherited, &metrics_shutdown)?;

    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(Arc::clone(&server).serve(listener, shutdown.clone()));
    let host = config
        .cache
        .host
        .clone()
        .or_else(|| super::cache_service::outbound_ip().map(|ip| ip.to_string()))
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    tracing::info!(
        cache_url = %super::cache_service::url(&host, port),
        cache_dir = %config.cache.dir.display(),
        "cache server is listening"
    );
    notify_state(notify.as_ref(), sd_notify::NotifyState::Ready);
    wait_for_stop(signals).await;
    notify_state(notify.as_ref(), sd_notify::NotifyState::Stopping);
    shutdown.cancel();
    metrics_shutdown.cancel();
    let served = tokio::time::timeout(Duration::from_secs(20), serving).await;
    if let Some(task) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(6), task).await;
    }
    match served {
        Ok(Ok(Ok(()))) => Ok(ExitCode::SUCCESS),
        Ok(Ok(Err(error))) => Err(anyhow::Error::from(error).context("the cache server failed")),
        Ok(Err(error)) => Err(anyhow::anyhow!("the cache server task ended: {error}")),
        Err(_) => Err(anyhow::anyhow!("the cache server did not stop within 20 s")),
    }
}

/// Tells systemd (`Type=notify`) where the server is; without `NOTIFY_SOCKET`, nothing.
fn notify_state(socket: Option<&crate::systemd::NotifySocket>, state: sd_notify::NotifyState<'_>) {
    if let Some(socket) = socket
        && let Err(error) = socket.send(&[state])
    {
        tracing::warn!(error = %error, "cannot notify systemd");
    }
}

/// SIGINT (upstream stops on it) or SIGTERM (`systemctl stop`); the server has nothing to reload,
/// so SIGHUP is logged and otherwise ignored rather than ending it.
async fn wait_for_stop(mut signals: Signals) {
    while signals.next().await == Request::Reload {
        tracing::info!("SIGHUP received; the cache server has nothing to reload");
    }
    tracing::info!("stop signal received, closing the cache server");
}
