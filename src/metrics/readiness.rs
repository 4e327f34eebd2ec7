//! What `/readyz` answers: a shared, mutable verdict that the daemon's observations update.
//!
//! Unlike the systemd readiness latch (`READY=1` is sent once and never taken back), this probe can
//! turn unready again: while draining, when the runner is no longer registered, when a local
//! availability check fails, or when polling has failed for longer than `metrics.readiness_grace`
//! (upstream `Poller.Ready(grace)`). May use: nothing outside `std`, `tokio::time`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// The `/readyz` state: cheap to clone, every clone sees the same state.
#[derive(Debug, Clone)]
pub struct ReadinessProbe {
    grace: Duration,
    state: Arc<Mutex<ProbeState>>,
}

/// The answer to one `/readyz` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessVerdict {
    pub ready: bool,
    /// The response body: `ok`, `polling errors within grace period`, or why the runner is not ready.
    pub reason: String,
}

#[derive(Debug)]
struct ProbeState {
    started: bool,
    draining: bool,
    unregistered: bool,
    unavailable: Option<String>,
    last_poll_failed: bool,
    last_healthy_poll: Option<Instant>,
}

impl ReadinessProbe {
    /// A probe that answers "starting" until [`ReadinessProbe::set_started`].
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            state: Arc::new(Mutex::new(ProbeState {
                started: false,
                draining: false,
                unregistered: false,
                unavailable: None,
                last_poll_failed: false,
                last_healthy_poll: None,
            })),
        }
    }

    /// The daemon has declared itself and begins to poll.
    pub fn set_started(&self) {
        self.lock().started = true;
    }

    /// The drain has begun (or ended, after a cancelled stop).
    pub fn set_draining(&self, draining: bool) {
        self.lock().draining = draining;
    }

    /// Gitea rejected the runner as unregistered; it will not become ready again.
    pub fn set_unregistered(&self) {
        self.lock().unregistered = true;
    }

    /// A local availability check (disk space, Docker, ...) failed with `reason`, or passed (`None`).
    pub fn set_unavailable(&self, reason: Option<String>) {
        self.lock().unavailable = reason;
    }

    /// A FetchTask call answered (a task or an empty answer).
    pub fn poll_succeeded(&self) {
        let mut state = self.lock();
        state.last_poll_failed = false;
        state.last_healthy_poll = Some(Instant::now());
    }

    /// A FetchTask call failed (not counting a long-poll deadline, which changes nothing).
    pub fn poll_failed(&self) {
        let mut state = self.lock();
        if !state.last_poll_failed && state.last_healthy_poll.is_none() {
            // The grace counts from the first failure when no poll has succeeded yet.
            state.last_healthy_poll = Some(Instant::now());
        }
        state.last_poll_failed = true;
    }

    /// The verdict now, in upstream's order of precedence.
    pub fn verdict(&self) -> ReadinessVerdict {
        let state = self.lock();
        let (ready, reason) = if state.unregistered {
            (false, "runner is no longer registered".to_owned())
        } else if state.draining {
            (false, "draining".to_owned())
        } else if !state.started {
            (false, "starting".to_owned())
        } else if let Some(reason) = &state.unavailable {
            (false, reason.clone())
        } else if !state.last_poll_failed {
            (true, "ok".to_owned())
        } else if state
            .last_healthy_poll
            .is_some_and(|at| at.elapsed() <= self.grace)
        {
            (true, "polling errors within grace period".to_owned())
        } else {
            (false, "unable to poll Gitea".to_owned())
        };
        ReadinessVerdict { ready, reason }
    }

    fn lock(&self) -> MutexGuard<'_, ProbeState> {
        crate::sync::lock(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(probe: &ReadinessProbe, ready: bool, reason: &str) {
        let verdict = probe.verdict();
        assert_eq!((verdict.ready, verdict.reason.as_str()), (ready, reason));
    }

    #[tokio::test(start_paused = true)]
    async fn unready_until_started_then_ok() {
        let probe = ReadinessProbe::new(Duration::from_secs(30));
        check(&probe, false, "starting");
        probe.set_started();
        check(&probe, true, "ok");
    }

    #[tokio::test(start_paused = true)]
    async fn poll_failures_are_tolerated_for_the_grace_then_not() {
        let probe = ReadinessProbe::new(Duration::from_secs(30));
        probe.set_started();
        probe.poll_succeeded();
        tokio::time::advance(Duration::from_secs(10)).await;
        probe.poll_failed();
        check(&probe, true, "polling errors within grace period");
        tokio::time::advance(Duration::from_secs(21)).await;
        check(&probe, false, "unable to poll Gitea");
        probe.poll_succeeded();
        check(&probe, true, "ok");
    }

    #[tokio::test(start_paused = true)]
    async fn failing_from_the_start_counts_the_grace_from_the_first_failure() {
        let probe = ReadinessProbe::new(Duration::from_secs(30));
        probe.set_started();
        probe.poll_failed();
        tokio::time::advance(Duration::from_secs(29)).await;
        probe.poll_failed();
        check(&probe, true, "polling errors within grace period");
        tokio::time::advance(Duration::from_secs(2)).await;
        check(&probe, false, "unable to poll Gitea");
    }

    #[tokio::test(start_paused = true)]
    async fn draining_unregistered_and_unavailable_win_over_polling() {
        let probe = ReadinessProbe::new(Duration::from_secs(30));
        probe.set_started();
        probe.set_unavailable(Some("low disk space on /var/lib/act-runner".into()));
        check(&probe, false, "low disk space on /var/lib/act-runner");
        probe.set_unavailable(None);
        probe.set_draining(true);
        check(&probe, false, "draining");
        probe.set_unregistered();
        check(&probe, false, "runner is no longer registered");
    }
}
