//! The daemon's lifecycle once the CLI has loaded the config and the registration: remove Docker
//! orphans, Declare, deliver what an earlier run left in the spool (before asking for new work),
//! poll, apply reloads, and on shutdown drain with bounds, then remove what this runner still has
//! in Docker.
//!
//! Signals are not handled here: the caller sends [`Control`]s (mini-redis passes its shutdown
//! future the same way), which keeps this testable without a process. May use: every `daemon`
//! room, `client`, `config`, `executor::backend::docker` (orphans, the network pool). Never:
//! `metrics`, `systemd`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::proto::runner::DeclareRequest;
use crate::client::{ClientError, RunnerApi};
use crate::config::{label_names, labels_require_docker};
use crate::daemon::execution::{
    DockerAccess, Execution, ExecutionConfig, ip_families, reporter_settings,
};
use crate::daemon::observe::{DaemonEvent, Observer};
use crate::daemon::poller::{Admission, PollEnd, PollMode, Poller, PollerSettings};
use crate::daemon::reporter::{self, Delivery};
use crate::daemon::shutdown::{self, DrainOutcome, DrainTokens};
use crate::daemon::spool::{SpoolError, SpoolRoot};
use crate::executor::backend::docker::NetworkPool;

/// At most this many spare job networks are kept ready (fewer when the capacity is smaller).
const NETWORK_POOL_MAX: usize = 4;

/// The capabilities this runner declares: it runs post-steps after a cancel (Gitea's `cancelling`).
pub const CAPABILITIES: [&str; 1] = ["cancelling"];

/// What the daemon needs to start.
pub struct Setup<A> {
    pub api: Arc<A>,
    pub config: ExecutionConfig,
    /// Where the spool lives (the directory of `runner.file`).
    pub state_dir: std::path::PathBuf,
    pub docker: Option<DockerAccess>,
    /// `--once`, or an ephemeral registration: exit after one job.
    pub once: bool,
    pub observer: Arc<dyn Observer>,
    /// Told once Declare succeeded and leftover spools were delivered, right before polling.
    pub ready: Option<oneshot::Sender<()>>,
}

/// What the caller asks of a running daemon.
#[derive(Debug)]
pub enum Control {
    /// SIGINT / SIGTERM: stop admission and drain.
    Shutdown,
    /// SIGHUP with a valid new configuration (an invalid one never gets here).
    Reload(Box<ExecutionConfig>),
}

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceOutcome {
    /// Shut down on request.
    Stopped(DrainOutcome),
    /// `--once` or ephemeral: the one job is done.
    OnceDone,
    /// Gitea does not know this runner (exit 77).
    Unauthenticated,
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "Your Gitea version is too old to support runner declare, please upgrade to v1.21 or later"
    )]
    DeclareUnsupported(#[source] ClientError),
    #[error("fail to invoke Declare")]
    Declare(#[source] ClientError),
    #[error("cannot read the spool")]
    Spool(#[source] SpoolError),
}

/// Runs the daemon until shutdown, the end of a `--once` job, or rejection by Gitea.
pub async fn serve<A: RunnerApi + 'static>(
    setup: Setup<A>,
    mut controls: mpsc::Receiver<Control>,
) -> Result<ServiceOutcome, ServiceError> {
    let Setup {
        api,
        mut config,
        state_dir,
        docker,
        once,
        observer,
        ready,
    } = setup;
    // Before Declare, so that leftovers go even while Gitea cannot be reached (the daemon then
    // exits and is restarted, sweeping again).
    let sweep_docker = docker.as_ref().map(|docker| docker.docker.clone());
    if let Some(docker) = &sweep_docker {
        remove_orphans(docker, &config.runner.uuid, Sweep::AtStart).await;
    }
    match declare(api.as_ref(), &config).await {
        Ok(capabilities) => config.runner.server_capabilities = capabilities,
        Err(ClientError::Unauthenticated { .. }) => return Ok(ServiceOutcome::Unauthenticated),
        Err(error @ ClientError::Unimplemented { .. }) => {
            return Err(ServiceError::DeclareUnsupported(error));
        }
        Err(error) => return Err(ServiceError::Declare(error)),
    }

    let spool_root = SpoolRoot::new(&state_dir);
    let delivery_exit = CancellationToken::new();
    let stop_early = deliver_leftovers(
        &api,
        &spool_root,
        &config,
        &delivery_exit,
        &observer,
        &mut controls,
    )
    .await?;
    if stop_early {
        return Ok(ServiceOutcome::Stopped(DrainOutcome::Finished));
    }
    if let Some(ready) = ready {
        let _ = ready.send(());
    }

    let shutdown_timeout = config.config.runner.shutdown_timeout;
    let (settings_tx, settings_rx) = watch::channel(poller_settings(&config));
    let admission = Admission::new(config.config.runner.capacity);
    // Started after the orphan sweep, which would take its spares for orphans. Only for docker
    // labels: a host-only runner reaches Docker just for the rare job no label matches
    // (`runner.default_image`), which creates its own network instead of keeping spares.
    let ip = ip_families(&config.config.container.network_create_options);
    let pool_wanted = labels_require_docker(&config.labels);
    let network_pool = docker.as_ref().filter(|_| pool_wanted).map(|docker| {
        if once {
            return NetworkPool::for_one_job(docker.docker.clone(), &config.runner.uuid, ip);
        }
        let size = config.config.runner.capacity.clamp(1, NETWORK_POOL_MAX);
        NetworkPool::with_sandboxes(docker.docker.clone(), &config.runner.uuid, ip, size)
    });
    let docker = docker.map(|docker| DockerAccess {
        network_pool: network_pool.clone(),
        ..docker
    });
    let execution = Arc::new(Execution::new(
        Arc::clone(&api),
        spool_root,
        config.clone(),
        docker,
        Arc::clone(&observer),
        admission.clone(),
        delivery_exit.clone(),
    ));
    let poller = Poller::new(
        Arc::clone(&api),
        Arc::clone(&execution),
        settings_rx,
        admission.clone(),
        Arc::clone(&observer),
    );
    let stop_polling = CancellationToken::new();
    let tokens = DrainTokens {
        jobs_cancel: CancellationToken::new(),
        delivery_exit,
    };
    let jobs = TaskTracker::new();
    let mode = if once {
        PollMode::Once
    } else {
        PollMode::Continuous
    };
    let poll = tokio::spawn({
        let (stop_polling, jobs_cancel, jobs) = (
            stop_polling.clone(),
            tokens.jobs_cancel.clone(),
            jobs.clone(),
        );
        async move { poller.run(mode, stop_polling, jobs_cancel, &jobs).await }
    });
    tokio::pin!(poll);

    let mut current = config;
    let mut shutdown_asked = false;
    let poll_end = loop {
        tokio::select! {
            end = &mut poll => break end.unwrap_or(PollEnd::Stopped),
            control = controls.recv(), if !shutdown_asked => match control {
                Some(Control::Reload(mut new_config)) => {
                    apply_reload(api.as_ref(), &execution, &settings_tx, &current, &mut new_config).await;
                    current = *new_config;
                }
                Some(Control::Shutdown) | None => {
                    shutdown_asked = true;
                    stop_polling.cancel();
                }
            },
        }
    };

    let once_done = if poll_end == PollEnd::OnceAdmitted && !shutdown_asked {
        // The one job runs to its end unless a shutdown comes first.
        jobs.close();
        tokio::select! {
            _ = jobs.wait() => true,
            _ = wait_for_shutdown(&mut controls) => false,
        }
    } else {
        false
    };
    let outcome = if once_done {
        ServiceOutcome::OnceDone
    } else {
        observer.observe(&DaemonEvent::Draining {
            running: admission.running(),
        });
        tracing::info!(
            running = admission.running(),
            shutdown_timeout = ?shutdown_timeout,
            "shutdown initiated, waiting for running jobs to complete"
        );
        let drained = shutdown::drain(
            &jobs,
            &tokens,
            shutdown_timeout,
            shutdown::CANCELLED_JOBS_LIMIT,
        )
        .await;
        match poll_end {
            PollEnd::Unauthenticated => ServiceOutcome::Unauthenticated,
            PollEnd::OnceAdmitted if !shutdown_asked => ServiceOutcome::OnceDone,
            _ => ServiceOutcome::Stopped(drained),
        }
    };
    if let Some(pool) = network_pool {
        pool.shutdown().await;
    }
    if let Some(docker) = &sweep_docker {
        remove_orphans(docker, &current.runner.uuid, Sweep::AtExit).await;
    }
    Ok(outcome)
}

async fn wait_for_shutdown(controls: &mut mpsc::Receiver<Control>) {
    loop {
        match controls.recv().await {
            Some(Control::Shutdown) | None => return,
            // A reload while the single job runs changes nothing worth applying.
            Some(Control::Reload(_)) => {}
        }
    }
}

/// Delivers every spool an earlier run left before any new work is fetched. Returns true when a
/// shutdown arrived meanwhile (what is left stays spooled).
async fn deliver_leftovers<A: RunnerApi + 'static>(
    api: &Arc<A>,
    spool_root: &SpoolRoot,
    config: &ExecutionConfig,
    delivery_exit: &CancellationToken,
    observer: &Arc<dyn Observer>,
    controls: &mut mpsc::Receiver<Control>,
) -> Result<bool, ServiceError> {
    let leftovers = spool_root.recover().map_err(ServiceError::Spool)?;
    if leftovers.is_empty() {
        return Ok(false);
    }
    tracing::info!(
        n_tasks = leftovers.len(),
        "delivering reports left by an earlier run"
    );
    let settings = reporter_settings(config);
    // A shutdown must end the start-up even when the report it interrupted still got through: a
    // lost one would leave the daemon polling with every later delivery already told to exit.
    let mut shutdown = false;
    for (spool, record) in leftovers {
        if shutdown {
            break;
        }
        let task_id = record.job.task_id;
        let delivery = reporter::deliver_recovered(
            Arc::clone(api),
            spool,
            record,
            settings.clone(),
            delivery_exit.clone(),
            Arc::clone(observer),
        );
        tokio::pin!(delivery);
        let delivered = loop {
            tokio::select! {
                delivered = &mut delivery => break delivered,
                control = controls.recv(), if !shutdown => match control {
                    Some(Control::Shutdown) | None => {
                        shutdown = true;
                        delivery_exit.cancel();
                    }
                    Some(Control::Reload(_)) => {}
                },
            }
        };
        tracing::info!(task_id, delivery = ?delivered, "leftover report handled");
        shutdown |= delivered == Delivery::Kept;
    }
    Ok(shutdown)
}

/// Declares the labels and capabilities; returns the server's capabilities (the
/// `X-Gitea-Actions-Capabilities` answer), which jobs see as `GITEA_ACTIONS_CAPABILITIES`.
async fn declare<A: RunnerApi>(api: &A, config: &ExecutionConfig) -> Result<String, ClientError> {
    let request = DeclareRequest {
        version: crate::VERSION.to_string(),
        labels: label_names(&config.labels),
        capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
    };
    let declared = api.declare(request).await?;
    let runner = declared.response.runner.unwrap_or_default();
    tracing::info!(
        runner = %runner.name,
        version = %runner.version,
        labels = ?runner.labels,
        server_capabilities = %declared.capabilities,
        "declare successfully"
    );
    Ok(declared.capabilities)
}

async fn apply_reload<A: RunnerApi + 'static>(
    api: &A,
    execution: &Execution<A>,
    settings_tx: &watch::Sender<PollerSettings>,
    old: &ExecutionConfig,
    new: &mut ExecutionConfig,
) {
    // The server's capabilities stay what the last Declare answered.
    new.runner.server_capabilities = old.runner.server_capabilities.clone();
    // On failure Gitea keeps the old labels; the new ones still apply to platform picking.
    if label_names(&old.labels) != label_names(&new.labels) {
        match declare(api, new).await {
            Ok(capabilities) => new.runner.server_capabilities = capabilities,
            Err(error) => tracing::error!(error = %error, "cannot declare the reloaded labels"),
        }
    }
    execution.reload(new.clone());
    let _ = settings_tx.send(poller_settings(new));
    tracing::info!("configuration reloaded");
}

fn poller_settings(config: &ExecutionConfig) -> PollerSettings {
    let runner = &config.config.runner;
    PollerSettings {
        capacity: runner.capacity,
        fetch_timeout: runner.fetch_timeout,
        fetch_interval: runner.fetch_interval,
        fetch_interval_max: runner.fetch_interval_max,
    }
}

/// When [`remove_orphans`] runs.
#[derive(Debug, Clone, Copy)]
enum Sweep {
    /// No task is live yet: what carries this runner's UUID was left by a crash or a `kill -9`.
    AtStart,
    /// The drain is over and the process exits: what is still there was left by a job the drain
    /// gave up on (its steps outlived the limits) or by a cleanup that failed.
    AtExit,
}

/// Removes every container and network carrying this runner's UUID (their anonymous volumes go
/// with the containers); other runners' resources and unlabelled ones are never touched.
async fn remove_orphans(docker: &bollard::Docker, runner_uuid: &str, sweep: Sweep) {
    const ORPHAN_LIMIT: Duration = Duration::from_secs(120);
    let no_live_tasks = HashSet::new();
    let removal = crate::executor::backend::docker::orphans::remove_orphans(
        docker,
        runner_uuid,
        &no_live_tasks,
    );
    match tokio::time::timeout(ORPHAN_LIMIT, removal).await {
        Ok(Ok(report)) => {
            if !report.containers.is_empty() || !report.networks.is_empty() {
                tracing::info!(?sweep, containers = ?report.containers, networks = ?report.networks, "removed orphaned job containers and networks");
            }
        }
        Ok(Err(error)) => {
            tracing::warn!(?sweep, error = %error, "cannot remove orphaned job containers")
        }
        Err(_) => tracing::warn!(?sweep, "removing orphaned job containers took too long"),
    }
}
