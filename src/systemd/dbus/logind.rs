//! login1: a delay inhibitor for shutdown and sleep held while jobs run (its reason names them),
//! and `PrepareForShutdown(true)` turned into a drain signal.
//!
//! A delay lock only buys `InhibitDelayMaxUSec` (5 s by default); the service's own stop ordering
//! (SIGTERM, `EXTEND_TIMEOUT_USEC=`) remains the main mechanism. May use: `super`, zbus, tokio.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::SystemBus;

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
trait LoginManager {
    /// Takes an inhibitor lock; closing the returned fd releases it.
    fn inhibit(&self, what: &str, who: &str, why: &str, mode: &str) -> zbus::Result<zbus::OwnedFd>;

    /// Sent with `true` before the system shuts down, and with `false` if the shutdown is cancelled.
    #[zbus(signal)]
    fn prepare_for_shutdown(&self, start: bool) -> zbus::Result<()>;

    /// How long logind waits for delay locks.
    #[zbus(property, name = "InhibitDelayMaxUSec")]
    fn inhibit_delay_max_usec(&self) -> zbus::Result<u64>;
}

/// Who the lock is for, as `systemd-inhibit --list` shows it.
const WHO: &str = "act-runner";
/// One lock per kind, not one `shutdown:sleep` lock: logind (seen with systemd 252) checks a
/// combined `what` against polkit's `inhibit-handle-lid-switch` action, which only an
/// administrator may take, so a service user is refused; `shutdown` and `sleep` alone map to the
/// `inhibit-delay-*` actions polkit grants to anyone.
const WHAT: [&str; 2] = ["shutdown", "sleep"];

/// Holds a logind delay lock while jobs run and signals a drain on `PrepareForShutdown(true)`.
#[derive(Debug)]
pub struct ShutdownInhibitor {
    manager: LoginManagerProxy<'static>,
    /// The locks (one per [`WHAT`] granted) and the reason they were taken with. Never held
    /// across an await.
    lock: Mutex<Option<(String, Vec<zbus::OwnedFd>)>>,
    stop_watching: CancellationToken,
}

impl ShutdownInhibitor {
    /// Subscribes to `PrepareForShutdown` (before any lock is taken, so no signal is missed) and
    /// cancels `drain` when a shutdown starts. `None` (one debug line) when logind is not there.
    pub async fn new(bus: &SystemBus, drain: CancellationToken) -> Option<Self> {
        let manager = match LoginManagerProxy::new(bus.connection()).await {
            Ok(manager) => manager,
            Err(error) => {
                tracing::debug!(%error, "no logind: no shutdown inhibitor");
                return None;
            }
        };
        let mut signals = match manager.receive_prepare_for_shutdown().await {
            Ok(signals) => signals,
            Err(error) => {
                tracing::debug!(%error, "no logind: cannot subscribe to PrepareForShutdown");
                return None;
            }
        };
        let stop_watching = CancellationToken::new();
        let stop = stop_watching.clone();
        tokio::spawn(async move {
            loop {
                let signal = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = drain.cancelled() => return,
                    signal = signals.next() => signal,
                };
                let Some(signal) = signal else { return };
                match signal.args() {
                    Ok(args) if args.start => {
                        tracing::info!("logind announced a shutdown; draining");
                        drain.cancel();
                        return;
                    }
                    Ok(_) => tracing::info!("logind cancelled the shutdown"),
                    Err(error) => tracing::debug!(%error, "malformed PrepareForShutdown signal"),
                }
            }
        });
        Some(Self {
            manager,
            lock: Mutex::new(None),
            stop_watching,
        })
    }

    /// [`ShutdownInhibitor::new`] on the system bus. `None` (one debug line) without a bus or
    /// without logind.
    pub async fn on_system_bus(drain: CancellationToken) -> Option<Arc<Self>> {
        let bus = SystemBus::connect().await?;
        Self::new(&bus, drain).await.map(Arc::new)
    }

    /// Keeps the lock in step with `running_jobs` (their descriptions, as
    /// `systemd::observer::RunningJobs` publishes them) until the sender is dropped, then
    /// releases it.
    pub async fn follow(self: Arc<Self>, mut running_jobs: watch::Receiver<Vec<String>>) {
        loop {
            let jobs = running_jobs.borrow_and_update().clone();
            self.update(&jobs).await;
            if running_jobs.changed().await.is_err() {
                self.release();
                return;
            }
        }
    }

    /// Holds the lock while `running_jobs` is not empty, with a reason naming them; releases it
    /// when they are all done. A refused lock (no polkit permission) is logged at debug level.
    pub async fn update(&self, running_jobs: &[String]) {
        if running_jobs.is_empty() {
            self.release();
            return;
        }
        let reason = format!("finishing running jobs: {}", running_jobs.join(", "));
        if self.current_reason().as_deref() == Some(reason.as_str()) {
            return;
        }
        let mut locks = Vec::with_capacity(WHAT.len());
        for what in WHAT {
            match self.manager.inhibit(what, WHO, &reason, "delay").await {
                Ok(fd) => locks.push(fd),
                Err(error) => tracing::debug!(%error, what, "logind refused the inhibitor lock"),
            }
        }
        // Replacing the old locks closes their fds only after the new ones are held.
        if !locks.is_empty() {
            *self.lock_state() = Some((reason, locks));
        }
    }

    /// Whether a lock is held (for tests and metrics).
    pub fn is_held(&self) -> bool {
        self.lock_state().is_some()
    }

    /// The reason of the lock held, if any.
    pub fn current_reason(&self) -> Option<String> {
        self.lock_state().as_ref().map(|(reason, _)| reason.clone())
    }

    /// Releases the lock, if held.
    pub fn release(&self) {
        self.lock_state().take();
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, Option<(String, Vec<zbus::OwnedFd>)>> {
        crate::sync::lock(&self.lock)
    }
}

impl Drop for ShutdownInhibitor {
    fn drop(&mut self) {
        self.stop_watching.cancel();
    }
}
