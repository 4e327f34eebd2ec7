//! systemd integration: notify, socket activation, journald, D-Bus, credentials, and the
//! environment jobs must not see. Observes the lifecycle, never drives it: nothing here decides
//! whether a job runs. Every piece is a no-op when its variable (`NOTIFY_SOCKET`, `LISTEN_FDS`,
//! `WATCHDOG_USEC`, `CREDENTIALS_DIRECTORY`) is absent.
//!
//! May use: `daemon::observe` (the event vocabulary, in `observer` only), `config::small_file`
//! (bounded reads of credentials). Never: `client`,
//! the rest of `daemon`, `executor`, `metrics`.
//!
//! # How the daemon wires it (API boundary)
//!
//! 1. `main` calls [`Inherited::capture`] before anything else, while the process has one thread
//!    (it first closes the fds the launching process leaked, [`inherited_fds`]), and passes the result down to the `daemon` command. It holds the notify socket, the
//!    watchdog interval, the socket-activated `metrics` listener and the credentials directory.
//! 2. Logging: [`journald::layer_if_wanted`]`(config.log.journald)` gives the journald layer when
//!    stderr is the journal or config asks for it; otherwise use the plain stderr layer. The
//!    daemon runs each task in a span (`daemon::execution`) whose fields `task_id`, `repository`,
//!    `workflow`, `job`, `runner_name` the layer writes as `TASK_ID`, `REPOSITORY`, ...
//! 3. `let (notifier, latches) = Notifier::new(inherited.notify_socket.take())`. Release each latch
//!    when its precondition holds: `latches.config`, `latches.registration`, `latches.docker`
//!    (at once when no label needs Docker), `latches.declared`, `latches.metrics_listener`. The
//!    last release sends `READY=1` with the current STATUS. An unreleased latch dropped on an
//!    error path never sends READY.
//! 4. Keep STATUS current: hand a [`StatusBoard`] to the daemon as one of its observers (it
//!    implements `daemon::observe::Observer`; the events are: job started
//!    and finished, fetch failed or answered, poll interval, capacity, draining); it renders
//!    `idle 0/4`, `running 2/4: owner/repo build`, `backoff 10s: <reason>`, `draining 2 jobs`,
//!    advances the watchdog's [`Progress`] on `poll_progress`, and counts a full runner (the poll
//!    loop waiting for a place) as a deliberate wait. Before READY, [`Notifier::status`] with
//!    `Status::Starting("waiting for Docker")` says what start-up waits for.
//! 5. Watchdog: when `inherited.watchdog` is `Some(interval)`, spawn
//!    [`watchdog::run_watchdog`] with the board's [`Progress`], a stall limit from
//!    [`watchdog::poll_stall_limit`]`(fetch_timeout, fetch_interval_max)`, and a Docker ping as
//!    the [`HealthProbe`] when labels need Docker.
//! 6. Reload (SIGHUP): [`Notifier::reloading`] first, [`Notifier::reloaded`] after the new config
//!    is applied or refused.
//! 7. Drain (SIGTERM/SIGINT, or logind's PrepareForShutdown): `let drain =
//!    notifier.drain_started(n_jobs, shutdown_timeout)` sends STOPPING=1 and keeps extending the
//!    stop timeout; call `drain.jobs_left(n)` as jobs end; drop it when drained.
//! 8. D-Bus: [`dbus::SystemBus::connect`] (None without a system bus, one debug line);
//!    [`dbus::ShutdownInhibitor::on_system_bus`] holds logind delay locks while jobs run (fed
//!    by the [`observer::RunningJobs`] observer, registered after the board, through
//!    `ShutdownInhibitor::follow`) and cancels a token on PrepareForShutdown, which the daemon
//!    treats as SIGTERM; [`dbus::wait_for_docker_service`] (over [`dbus::wait_for_unit_active`])
//!    waits for a local `docker.service` before the daemon looks for the engine's socket.
//! 9. Children: every host-mode job process and helper command goes through
//!    [`child_env::scrub`] (or gets [`child_env::job_environment`]), so no job sees
//!    `NOTIFY_SOCKET`, `LISTEN_*`, `WATCHDOG_*` and the rest of the runner's systemd interface.
//! 10. Tokens: [`CredentialsDir::read`] with the names in [`credentials::names`].
//! 11. Host jobs: [`job_cgroups::JobCgroups::set_up`] at start (the unit has `Delegate=yes`)
//!     gives each host job a cgroup of its own; `act_runner __job-cgroup` starts each of the
//!     job's commands inside it ([`job_cgroups::enter`]).

pub mod activation;
pub mod child_env;
pub mod credentials;
pub mod dbus;
pub mod inherited_fds;
pub mod job_cgroups;
pub mod journald;
pub mod notify;
pub mod observer;
pub mod status_board;
pub mod watchdog;

use std::net::TcpListener;
use std::time::Duration;

pub use activation::{ActivationError, CACHE_FD_NAME, METRICS_FD_NAME};
pub use credentials::{Credential, CredentialsDir};
pub use notify::{DrainNotice, Notifier, NotifySocket, Phase, ReadyLatch, ReadyLatches, Status};
pub use status_board::StatusBoard;
pub use watchdog::{HealthProbe, Progress, WatchdogConfig};

/// What systemd handed the process, captured in `main` before the async runtime starts.
#[derive(Debug)]
pub struct Inherited {
    /// `NOTIFY_SOCKET`, when the unit is `Type=notify`.
    pub notify_socket: Option<NotifySocket>,
    /// Why `NOTIFY_SOCKET` was set but unusable (the daemon logs it once logging is up).
    pub notify_error: Option<std::io::Error>,
    /// `WatchdogSec=` (from `WATCHDOG_USEC`, honouring `WATCHDOG_PID`).
    pub watchdog: Option<Duration>,
    /// The socket-activated listener named [`METRICS_FD_NAME`]: `Ok(None)` when none was passed
    /// (bind `metrics.addr` then), an error when the passed fd is unusable.
    pub metrics_listener: Result<Option<TcpListener>, ActivationError>,
    /// The listener named [`CACHE_FD_NAME`] (`act-runner-cache.socket`), the same way.
    pub cache_listener: Result<Option<TcpListener>, ActivationError>,
    /// `$CREDENTIALS_DIRECTORY`.
    pub credentials: CredentialsDir,
}

impl Inherited {
    /// Closes the fds the launching process leaked, takes systemd's and reads its variables. Call
    /// it first thing in `main`, while the process has a single thread: taking the listener edits
    /// the process environment.
    pub fn capture() -> Self {
        // First: the rest opens descriptors of its own.
        inherited_fds::close_inherited();
        let (notify_socket, notify_error) = match NotifySocket::from_env() {
            Ok(socket) => (socket, None),
            Err(error) => (None, Some(error)),
        };
        let [metrics_listener, cache_listener] =
            activation::take_tcp_listeners([METRICS_FD_NAME, CACHE_FD_NAME]);
        Self {
            notify_socket,
            notify_error,
            watchdog: sd_notify::watchdog_enabled(),
            metrics_listener,
            cache_listener,
            credentials: CredentialsDir::from_env(),
        }
    }

    /// Nothing inherited (for commands and tests that run outside systemd).
    pub fn none() -> Self {
        Self {
            notify_socket: None,
            notify_error: None,
            watchdog: None,
            metrics_listener: Ok(None),
            cache_listener: Ok(None),
            credentials: CredentialsDir::default(),
        }
    }
}
