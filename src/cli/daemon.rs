//! `act_runner daemon`: the start checks (configuration, then the registration file), then the
//! engine: the registration lock, the effective labels, Docker readiness when they need it, the
//! client, metrics and systemd observers, the logind inhibitor, signals (SIGINT/SIGTERM and
//! logind's PrepareForShutdown drain, SIGHUP reload), and
//! [`crate::daemon::service::serve`]. Exit codes: 0 stopped or `--once` done, 1 runtime failure,
//! 77 Gitea rejects the runner, 78 invalid configuration.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientSettings, Credentials};
use crate::config::{
    Config, DockerHost, Label, Platform, REQUEST_TIMEOUT, Registration, RegistrationError,
    RegistrationLock, labels_require_docker,
};
use crate::daemon::cache_access::CacheAccess;
use crate::daemon::execution::{DockerAccess, ExecutionConfig, state_dir};
use crate::daemon::observe::{FanOut, Observer};
use crate::daemon::service::{self, Control, ServiceOutcome, Setup};
use crate::daemon::task::RunnerContext;
use crate::executor::backend::docker::connect;
use crate::executor::backend::job_processes::ProcessScope;
use crate::metrics::{Metrics, ReloadResult, RunnerInfo};
use crate::systemd::dbus::ShutdownInhibitor;
use crate::systemd::observer::RunningJobs;
use crate::systemd::{Notifier, Progress, StatusBoard, WatchdogConfig};

use super::signals::{Request, Signals};
use super::{CliError, EXIT_NOT_REGISTERED, EXIT_OK};

/// How long an unused Docker may take to answer before jobs without a matching label run on the
/// host instead of `runner.default_image` (upstream's fallback probe).
const FALLBACK_DOCKER_PROBE: Duration = Duration::from_secs(2);

/// Flags of `daemon`.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Run one job, then exit.
    #[arg(long)]
    pub once: bool,
    /// Comma-separated labels; they override the config's and the registration's.
    #[arg(long, env = "GITEA_RUNNER_LABELS")]
    pub labels: Option<String>,
}

/// What the daemon starts from once the checks pass.
#[derive(Debug)]
pub struct Started {
    pub config: Config,
    pub registration: Registration,
    /// Changes the log level on reload.
    pub log: super::logging::LogControl,
}

/// Loads the configuration (invalid: exit 78) and the registration file (missing or corrupt:
/// exit 77, saying how to register), installs logging at `log.level` (to the journal when
/// stderr is the journal or `log.journald` is set) and logs the config warnings.
pub fn start_checks(config_path: Option<&Path>) -> anyhow::Result<Started> {
    let loaded = Config::load(config_path)?;
    let log = super::logging::init(loaded.config.log.level, loaded.config.log.journald);
    super::log_config_warnings(&loaded.warnings);
    tracing::info!("Starting runner daemon");
    for warning in crate::config::registration_exposure(&loaded.config.runner.file) {
        tracing::warn!("{warning}");
    }
    let registration = match Registration::load(&loaded.config.runner.file) {
        Ok(registration) => registration,
        Err(RegistrationError::NotFound { path }) => {
            return Err(CliError::NotRegistered { path }.into());
        }
        Err(error @ RegistrationError::Corrupt { .. }) => {
            return Err(
                anyhow::Error::from(error).context("run `act_runner register` again to replace it")
            );
        }
        Err(error) => return Err(error.into()),
    };
    Ok(Started {
        config: loaded.config,
        registration,
        log,
    })
}

/// Runs the command.
pub fn run(
    config: Option<PathBuf>,
    args: DaemonArgs,
    inherited: crate::systemd::Inherited,
) -> anyhow::Result<ExitCode> {
    let started = start_checks(config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("act-runner")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_daemon(config, args, inherited, started))
}

async fn run_daemon(
    config_path: Option<PathBuf>,
    args: DaemonArgs,
    mut inherited: crate::systemd::Inherited,
    started: Started,
) -> anyhow::Result<ExitCode> {
    let Started {
        config,
        mut registration,
        log,
    } = started;
    if let Some(error) = inherited.notify_error.take() {
        tracing::warn!(error = %error, "NOTIFY_SOCKET is set but unusable");
    }
    let (notifier, latches) = Notifier::new(inherited.notify_socket.take());
    latches.config.release();
    latches.registration.release();

    let runner_file = config.runner.file.clone();
    let lock = match RegistrationLock::try_acquire(&runner_file) {
        Ok(lock) => Some(lock),
        Err(error @ crate::config::LockError::Locked { .. }) => {
            return Err(anyhow::Error::from(error)
                .context("each runner process needs its own runner file (runner.file)"));
        }
        Err(error) => {
            tracing::warn!(error = %error, "cannot lock the registration file, continuing");
            None
        }
    };
    let host_scope = super::job_cgroup::host_scope(&runner_file, lock.is_some());

    let labels = resolve_labels(args.labels.as_deref(), &config, &registration)?;
    if labels.is_empty() {
        tracing::warn!("no labels configured, runner may not be able to pick up jobs");
    }
    let label_strings: Vec<String> = labels.iter().map(ToString::to_string).collect();
    if registration.labels != label_strings {
        registration.labels = label_strings.clone();
        registration
            .save(&runner_file)
            .context("cannot update the labels in the registration file")?;
        tracing::info!(labels = ?label_strings, "labels updated");
    }

    let docker_needed = labels_require_docker(&labels) || config.container.require_docker;
    let shutdown_during_start = CancellationToken::new();
    let docker = if docker_needed {
        notifier.status(crate::systemd::Status::Starting("waiting for Docker"));
        Some(docker_access(&config, &shutdown_during_start).await?)
    } else {
        probe_docker(&config).await
    };
    latches.docker.release();

    let metrics = Metrics::new(RunnerInfo {
        name: registration.name.clone(),
        capacity: config.runner.capacity,
        readiness_grace: config.metrics.readiness_grace,
    });
    metrics.docker_up(docker.is_some());
    let cache = super::cache_service::start(
        &config.cache,
        super::cache_service::settings(&config),
        docker.is_some(),
        config.container.network.as_deref(),
    )
    .await;
    if let Some(server) = cache.as_ref().and_then(|cache| cache.server.clone()) {
        metrics.watch_cache(Arc::new(super::cache_metrics::ServerStats(server)));
    }
    let cache_access = cache.as_ref().map(|cache| cache.access.clone());
    let metrics_shutdown = CancellationToken::new();
    let metrics_task = start_metrics(&config, &metrics, &mut inherited, &metrics_shutdown)?;
    latches.metrics_listener.release();

    let progress = Progress::new();
    let board = Arc::new(StatusBoard::new(
        notifier.clone(),
        progress.clone(),
        config.runner.capacity,
    ));
    let watchdog_shutdown = CancellationToken::new();
    if let Some(interval) = inherited.watchdog {
        // Docker gates the pings only when the labels need it: a host-only runner stays healthy
        // while an unused Docker is down.
        let docker_probe = docker.as_ref().filter(|_| docker_needed).map(|access| {
            let docker = access.docker.clone();
            let probe: crate::systemd::HealthProbe = Arc::new(move || {
                let docker = docker.clone();
                Box::pin(async move { connect::ping(&docker).await.is_ok() })
            });
            probe
        });
        let watchdog = WatchdogConfig {
            interval,
            poll: progress.clone(),
            poll_stall_limit: crate::systemd::watchdog::poll_stall_limit(
                config.runner.fetch_timeout,
                config.runner.fetch_interval_max,
            ),
            docker: docker_probe,
        };
        tokio::spawn(crate::systemd::watchdog::run_watchdog(
            notifier.clone(),
            watchdog,
            watchdog_shutdown.clone(),
        ));
    }

    let api = Arc::new(
        Client::new(ClientSettings {
            instance: registration.address.clone(),
            protocol: super::client_protocol(config.runner.protocol),
            insecure: config.runner.insecure,
            timeout: REQUEST_TIMEOUT,
            credentials: Some(Credentials {
                uuid: registration.uuid.clone(),
                token: registration.token.expose().to_string(),
            }),
        })?
        .with_fetch_timeout(config.runner.fetch_timeout),
    );
    let mut observers: Vec<Arc<dyn Observer>> = vec![
        Arc::new(metrics.clone()),
        Arc::clone(&board) as Arc<dyn Observer>,
    ];
    // logind: a delay lock while jobs run, and PrepareForShutdown drains as SIGTERM does.
    let logind_shutdown = CancellationToken::new();
    if let Some(inhibitor) = ShutdownInhibitor::on_system_bus(logind_shutdown.clone()).await {
        let (running_jobs, receiver) = RunningJobs::new(Arc::clone(&board));
        observers.push(Arc::new(running_jobs));
        tokio::spawn(inhibitor.follow(receiver));
    }
    let observer: Arc<dyn Observer> = Arc::new(FanOut::new(observers));
    let execution_config = execution_config(
        Arc::new(config.clone()),
        &registration,
        labels,
        docker.is_some(),
        cache_access.clone(),
        &host_scope,
    );
    let (ready_tx, ready_rx) = oneshot::channel();
    let setup = Setup {
        api,
        config: execution_config,
        state_dir: state_dir(&runner_file),
        docker,
        once: args.once || registration.ephemeral,
        observer,
        ready: Some(ready_tx),
    };
    let (controls_tx, controls_rx) = mpsc::channel(8);
    let signals = tokio::spawn(handle_signals(
        Signals::install().context("cannot install the signal handlers")?,
        controls_tx,
        SignalContext {
            config_path,
            label_flag: args.labels.clone(),
            registration: registration.clone(),
            notifier: notifier.clone(),
            metrics: metrics.clone(),
            board: Arc::clone(&board),
            docker_available: setup.docker.is_some(),
            cache: cache_access,
            cache_config: config.cache.clone(),
            host_scope,
            shutdown_timeout: config.runner.shutdown_timeout,
            log,
            logind_shutdown,
        },
    ));
    let declared_latch = latches.declared;
    let readiness = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if ready_rx.await.is_ok() {
                declared_latch.release();
                metrics.readiness().set_started();
            }
        })
    };

    let outcome = service::serve(setup, controls_rx).await;
    signals.abort();
    readiness.abort();
    watchdog_shutdown.cancel();
    metrics_shutdown.cancel();
    if let Some(task) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(6), task).await;
    }
    if let Some(cache) = cache {
        cache.stop().await;
    }
    match outcome? {
        ServiceOutcome::Stopped(drained) => {
            tracing::info!(drain = ?drained, "runner stopped");
            Ok(ExitCode::from(EXIT_OK))
        }
        ServiceOutcome::OnceDone => Ok(ExitCode::from(EXIT_OK)),
        ServiceOutcome::Unauthenticated if registration.ephemeral => {
            tracing::info!("the ephemeral runner was removed by the server after its job");
            Ok(ExitCode::from(EXIT_OK))
        }
        ServiceOutcome::Unauthenticated => {
            metrics.unregistered();
            tracing::error!(
                "runner is no longer registered with the server; please register it again"
            );
            Ok(ExitCode::from(EXIT_NOT_REGISTERED))
        }
    }
}

/// The flag (or `GITEA_RUNNER_LABELS`), else `runner.labels`, else the `.runner` labels. A label
/// that does not parse (empty name, unknown scheme) is refused rather than declared to Gitea.
fn resolve_labels(
    flag: Option<&str>,
    config: &Config,
    registration: &Registration,
) -> Result<Vec<Label>, CliError> {
    let from_flag: Vec<&str> = flag
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|label| !label.is_empty())
        .collect();
    if !from_flag.is_empty() {
        return parse_labels(from_flag, "--labels (or GITEA_RUNNER_LABELS)");
    }
    if !config.runner.labels.is_empty() {
        return Ok(config.runner.labels.clone());
    }
    let stored = registration
        .labels
        .iter()
        .map(String::as_str)
        .filter(|label| !label.is_empty());
    parse_labels(stored, &config.runner.file.display().to_string())
}

fn parse_labels<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    source: &str,
) -> Result<Vec<Label>, CliError> {
    texts
        .into_iter()
        .map(|text| {
            Label::parse(text).map_err(|error| {
                CliError::InvalidInput(format!("{source}: invalid label {text:?}: {error}"))
            })
        })
        .collect()
}

fn execution_config(
    config: Arc<Config>,
    registration: &Registration,
    labels: Vec<Label>,
    docker_available: bool,
    cache: Option<CacheAccess>,
    host_scope: &ProcessScope,
) -> ExecutionConfig {
    let fallback = if docker_available {
        Platform::Docker {
            image: config.runner.default_image.clone(),
        }
    } else {
        Platform::Host
    };
    ExecutionConfig {
        runner: RunnerContext {
            name: registration.name.clone(),
            uuid: registration.uuid.clone(),
            address: registration.address.clone(),
            envs: config.runner.envs.clone(),
            timeout: config.runner.timeout,
            server_capabilities: String::new(),
            github_mirror: config.runner.github_mirror.clone(),
        },
        labels,
        fallback,
        ephemeral: registration.ephemeral,
        cache,
        host_scope: host_scope.clone(),
        config,
    }
}

fn configured_docker_host(config: &Config) -> &str {
    match &config.container.docker_host {
        DockerHost::Detect => "",
        DockerHost::DetectWithoutMount => "-",
        DockerHost::Address(address) => address,
    }
}

/// Docker readiness when labels need it: socket discovery, `docker_timeout` waiting, a real ping.
async fn docker_access(
    config: &Config,
    cancel: &CancellationToken,
) -> anyhow::Result<DockerAccess> {
    let configured = configured_docker_host(config);
    let limit = config.container.docker_timeout;
    let started = std::time::Instant::now();
    // A local engine that systemd starts: wait for docker.service over D-Bus before looking for
    // its socket, which appears only once the engine runs.
    if !limit.is_zero() && docker_is_local(configured) {
        crate::systemd::dbus::wait_for_docker_service(limit, cancel).await;
    }
    let host = connect::discover_docker_host_from_process(configured)?;
    let remaining = limit.saturating_sub(started.elapsed());
    let docker = connect::wait_until_ready(&host, remaining, cancel).await?;
    Ok(DockerAccess {
        docker,
        socket_to_mount: connect::socket_to_mount(configured, &host),
        network_pool: None,
    })
}

/// Whether the engine is reached through a local socket (configured, from `DOCKER_HOST`, or
/// discovered), so that the local `docker.service` is the one that matters.
fn docker_is_local(configured: &str) -> bool {
    if !configured.is_empty() && configured != "-" {
        return configured.starts_with("unix://");
    }
    std::env::var("DOCKER_HOST").map_or(true, |host| host.is_empty() || host.starts_with("unix://"))
}

/// Upstream's fallback probe when no label needs Docker: use it if it answers at once.
async fn probe_docker(config: &Config) -> Option<DockerAccess> {
    let configured = configured_docker_host(config);
    let host = connect::discover_docker_host_from_process(configured).ok()?;
    let docker = tokio::time::timeout(FALLBACK_DOCKER_PROBE, connect::connect(&host))
        .await
        .ok()?
        .ok()?;
    Some(DockerAccess {
        docker,
        socket_to_mount: connect::socket_to_mount(configured, &host),
        network_pool: None,
    })
}

/// Serves `/metrics` on the inherited listener, or on `metrics.addr` when enabled.
pub(super) fn start_metrics(
    config: &Config,
    metrics: &Metrics,
    inherited: &mut crate::systemd::Inherited,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let inherited_listener = match std::mem::replace(&mut inherited.metrics_listener, Ok(None)) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(error = %error, "the socket-activated metrics listener is unusable");
            None
        }
    };
    let listener = crate::metrics::server::choose_listener(
        inherited_listener,
        config.metrics.enabled,
        config.metrics.addr,
    )?;
    let Some(listener) = listener else {
        return Ok(None);
    };
    let server = crate::metrics::server::MetricsServer::new(
        listener,
        metrics.clone(),
        crate::metrics::server::ServerLimits::HARDENED,
    )?;
    tracing::info!(addr = %server.local_addr(), "serving metrics");
    Ok(Some(tokio::spawn(server.run(shutdown.clone()))))
}

/// What SIGHUP needs to build a new configuration.
struct SignalContext {
    config_path: Option<PathBuf>,
    label_flag: Option<String>,
    registration: Registration,
    notifier: Notifier,
    metrics: Metrics,
    board: Arc<StatusBoard>,
    /// Whether Docker was reached at start (a reload does not connect to it again).
    docker_available: bool,
    /// The cache service started with the daemon (a reload keeps it: `cache.*` changes need a
    /// restart).
    cache: Option<CacheAccess>,
    /// The `cache:` the cache service started with, to name what a reload cannot apply.
    cache_config: crate::config::CacheConfig,
    host_scope: ProcessScope,
    shutdown_timeout: Duration,
    log: super::logging::LogControl,
    /// Cancelled when logind announces a shutdown (`PrepareForShutdown`).
    logind_shutdown: CancellationToken,
}

/// SIGINT and SIGTERM (a user's ^C, `systemctl stop`) and logind's `PrepareForShutdown` drain;
/// SIGHUP (`systemctl reload`) re-reads the configuration and keeps the running one when the new
/// one is invalid.
async fn handle_signals(
    mut signals: Signals,
    controls: mpsc::Sender<Control>,
    context: SignalContext,
) {
    loop {
        tokio::select! {
            request = signals.next() => if request == Request::Reload {
                reload(&controls, &context).await;
                continue;
            },
            _ = context.logind_shutdown.cancelled() => {}
        }
        tracing::info!("shutdown signal received, stopping admission");
        let _drain = context
            .notifier
            .drain_started(context.board.running_jobs().len(), context.shutdown_timeout);
        context.metrics.set_draining(true);
        let _ = controls.send(Control::Shutdown).await;
        // Held until the process exits, so EXTEND_TIMEOUT keeps coming while jobs drain.
        std::future::pending::<()>().await;
    }
}

async fn reload(controls: &mpsc::Sender<Control>, context: &SignalContext) {
    context.notifier.reloading();
    match Config::load(context.config_path.as_deref()) {
        Ok(loaded) => {
            super::log_config_warnings(&loaded.warnings);
            apply_log_level(&context.log, loaded.config.log.level);
            let config = Arc::new(loaded.config);
            let labels = match resolve_labels(
                context.label_flag.as_deref(),
                &config,
                &context.registration,
            ) {
                Ok(labels) => labels,
                Err(error) => {
                    tracing::error!(error = %error, "the new labels are invalid; keeping the running configuration");
                    context.metrics.config_reload(ReloadResult::Failure);
                    context.notifier.reloaded();
                    return;
                }
            };
            let restart_keys =
                super::cache_service::restart_keys(&context.cache_config, &config.cache);
            if !restart_keys.is_empty() {
                tracing::warn!(
                    keys = %restart_keys.join(", "),
                    "reload: the running cache keeps its settings; the changed cache keys apply after a restart"
                );
            }
            let capacity = config.runner.capacity;
            let new = execution_config(
                config,
                &context.registration,
                labels,
                context.docker_available,
                context.cache.clone(),
                &context.host_scope,
            );
            if controls.send(Control::Reload(Box::new(new))).await.is_ok() {
                context.metrics.set_capacity(capacity);
                context.board.capacity_changed(capacity);
                context.metrics.config_reload(ReloadResult::Success);
            }
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "the new configuration is invalid; keeping the running one");
            context.metrics.config_reload(ReloadResult::Failure);
        }
    }
    context.notifier.reloaded();
}

fn apply_log_level(log: &super::logging::LogControl, level: crate::config::LogLevel) {
    use super::logging::LevelChange;
    match log.set_level(level) {
        LevelChange::Changed => tracing::info!(level = ?level, "log level changed"),
        LevelChange::Unchanged => {}
        LevelChange::OverriddenByEnv => {
            tracing::info!(level = ?level, "RUST_LOG is set and decides the log level; log.level is not applied");
        }
    }
}
