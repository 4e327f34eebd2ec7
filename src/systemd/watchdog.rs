//! The health-gated watchdog: `WATCHDOG=1` every half of `WatchdogSec=`, but only while the
//! poll loop shows progress and Docker answers; `WATCHDOG=trigger` once the poll loop is wedged.
//!
//! May use: `systemd::notify`, tokio, tokio-util, tracing. Never: `daemon`, `client`, `executor`:
//! the daemon hands in a [`Progress`] it advances and a [`HealthProbe`] that pings Docker.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::notify::{Notifier, Phase};

/// A health check run on every watchdog tick (the daemon passes a Docker API ping). It is bounded
/// by the watchdog itself; a probe that does not answer in time counts as unhealthy.
pub type HealthProbe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Proof that a loop is alive: the loop calls [`advance`](Progress::advance) on every turn and
/// holds a [`Waiting`] guard while it waits on purpose (for capacity, or in backoff), so a long
/// deliberate wait is not mistaken for a wedge.
#[derive(Clone, Debug)]
pub struct Progress {
    inner: Arc<Mutex<ProgressState>>,
}

#[derive(Debug)]
struct ProgressState {
    last_advance: Instant,
    n_waiting: usize,
}

/// See [`Progress::waiting`].
#[derive(Debug)]
#[must_use = "the wait counts as deliberate only while the guard lives"]
pub struct Waiting {
    progress: Progress,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// A progress token that advanced just now.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(ProgressState {
                last_advance: Instant::now(),
                n_waiting: 0,
            })),
        }
    }

    /// The loop made a turn.
    pub fn advance(&self) {
        self.lock().last_advance = Instant::now();
    }

    /// The loop waits on purpose until the guard is dropped; meanwhile it counts as advancing.
    pub fn waiting(&self) -> Waiting {
        self.lock().n_waiting += 1;
        Waiting {
            progress: self.clone(),
        }
    }

    /// Time since the loop last advanced; zero while it waits on purpose.
    pub fn stalled_for(&self) -> Duration {
        let state = self.lock();
        if state.n_waiting > 0 {
            Duration::ZERO
        } else {
            state.last_advance.elapsed()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        crate::sync::lock(&self.inner)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut state = self.progress.lock();
        state.n_waiting = state.n_waiting.saturating_sub(1);
        state.last_advance = Instant::now();
    }
}

/// How long the poll loop may go without a turn before it counts as wedged: one fetch that runs
/// to its timeout, plus the longest backoff sleep with its +20% jitter, plus a minute of slack.
pub fn poll_stall_limit(fetch_timeout: Duration, fetch_interval_max: Duration) -> Duration {
    fetch_timeout + fetch_interval_max.mul_f64(1.2) + Duration::from_secs(60)
}

/// What the watchdog watches.
pub struct WatchdogConfig {
    /// `WatchdogSec=` as systemd passed it (`WATCHDOG_USEC`); pings go out every half of it.
    pub interval: Duration,
    /// Advanced by the poll loop.
    pub poll: Progress,
    /// The poll loop counts as wedged once it has not advanced for this long. Give it more than
    /// `fetch_timeout` plus the longest backoff sleep the loop takes without a [`Waiting`] guard.
    pub poll_stall_limit: Duration,
    /// Pinged on every tick while running; `None` when no label needs Docker.
    pub docker: Option<HealthProbe>,
}

impl std::fmt::Debug for WatchdogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchdogConfig")
            .field("interval", &self.interval)
            .field("poll_stall_limit", &self.poll_stall_limit)
            .field("docker", &self.docker.is_some())
            .finish()
    }
}

/// Runs until `shutdown` is cancelled. While starting or reloading it pings unconditionally (the
/// unit's start timeout bounds that); while running it pings only when healthy; while draining it
/// pings until the drain deadline, after which systemd's stop timeout takes over.
pub async fn run_watchdog(notifier: Notifier, config: WatchdogConfig, shutdown: CancellationToken) {
    let tick = config.interval / 2;
    if tick.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unhealthy = false;
    let mut triggered = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let verdict = match notifier.phase() {
            Phase::Starting | Phase::Reloading => Verdict::Healthy,
            Phase::Draining { deadline } if Instant::now() < deadline => Verdict::Healthy,
            Phase::Draining { .. } => Verdict::Unhealthy("drain deadline passed"),
            Phase::Running => check(&config, tick / 2).await,
        };
        match verdict {
            Verdict::Healthy => {
                if unhealthy {
                    tracing::info!("watchdog: healthy again, pings resume");
                }
                unhealthy = false;
                notifier.watchdog_ping();
            }
            Verdict::Unhealthy(reason) => {
                if !unhealthy {
                    tracing::warn!(reason, "watchdog: not pinging systemd");
                }
                unhealthy = true;
            }
            Verdict::Wedged => {
                if !triggered {
                    tracing::error!(
                        stalled_secs = config.poll.stalled_for().as_secs(),
                        "watchdog: the poll loop is wedged; asking systemd to act"
                    );
                    notifier.watchdog_trigger();
                }
                triggered = true;
                unhealthy = true;
            }
        }
    }
}

enum Verdict {
    Healthy,
    Unhealthy(&'static str),
    Wedged,
}

async fn check(config: &WatchdogConfig, probe_limit: Duration) -> Verdict {
    if config.poll.stalled_for() > config.poll_stall_limit {
        return Verdict::Wedged;
    }
    if let Some(probe) = &config.docker {
        match tokio::time::timeout(probe_limit, probe()).await {
            Ok(true) => {}
            Ok(false) => return Verdict::Unhealthy("Docker does not answer"),
            Err(_) => return Verdict::Unhealthy("Docker ping timed out"),
        }
    }
    Verdict::Healthy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waiting_counts_as_progress() {
        let progress = Progress::new();
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(progress.stalled_for(), Duration::from_secs(100));
        let guard = progress.waiting();
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(progress.stalled_for(), Duration::ZERO);
        drop(guard);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(progress.stalled_for(), Duration::from_secs(1));
    }
}
