//! What the daemon tells its observers (metrics, systemd notify, status lines): one event enum and
//! one trait. Observers watch; nothing they return changes what the daemon does.
//! Imports nothing of `metrics` or `systemd`: `cli::daemon` adapts these events to them.

use std::time::Duration;

use crate::client::Method;
use crate::executor::event::Conclusion;

/// The outcome of one FetchTask call, as `act_runner_poll_fetch_total{result}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    Task,
    /// No task, or the fetch hit its deadline (a long poll that expired).
    Empty,
    Error,
}

/// The outcome of one UpdateLog or UpdateTask call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    Success,
    Error,
}

/// One thing that happened in the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonEvent {
    /// A FetchTask call ended; `duration` is `None` when it hit its deadline (kept out of the
    /// latency histogram, as upstream).
    Fetch {
        outcome: FetchOutcome,
        duration: Option<Duration>,
    },
    /// An RPC failed (not counted for an unauthenticated FetchTask, as upstream).
    ClientError { method: Method },
    /// The pre-jitter poll wait changed.
    Backoff { interval: Duration },
    /// The poll loop went around once (watchdog progress).
    PollProgress,
    /// A job was admitted; `running` counts it.
    JobStarted {
        task_id: i64,
        repository: String,
        job: String,
        running: usize,
        capacity: usize,
    },
    /// A job's final state was handed to the reporter; `running` no longer counts it.
    JobFinished {
        task_id: i64,
        result: Option<Conclusion>,
        duration: Duration,
        running: usize,
        capacity: usize,
    },
    /// An UpdateLog call ended.
    ReportLog {
        outcome: ReportOutcome,
        duration: Duration,
    },
    /// An UpdateTask call ended.
    ReportState {
        outcome: ReportOutcome,
        duration: Duration,
    },
    /// Rows spooled but not yet acknowledged by Gitea (one process-wide value, last writer wins).
    LogBufferRows { rows: u64 },
    /// Bytes held in the on-disk spool of one task.
    SpoolBytes { bytes: u64 },
    /// Admission stopped; `running` jobs are being drained.
    Draining { running: usize },
    /// The health check started refusing work (`Some(reason)`) or passes again (`None`).
    Availability { unavailable: Option<String> },
}

/// Receives daemon events. Must not block: it is called from the poll and report loops.
pub trait Observer: Send + Sync {
    fn observe(&self, event: &DaemonEvent);
}

/// An observer that drops everything (tests, or a daemon without metrics and systemd).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn observe(&self, _event: &DaemonEvent) {}
}

/// Hands every event to several observers in order (metrics, systemd notify, ...).
#[derive(Clone, Default)]
pub struct FanOut {
    observers: Vec<std::sync::Arc<dyn Observer>>,
}

impl FanOut {
    pub fn new(observers: Vec<std::sync::Arc<dyn Observer>>) -> FanOut {
        FanOut { observers }
    }
}

impl Observer for FanOut {
    fn observe(&self, event: &DaemonEvent) {
        for observer in &self.observers {
            observer.observe(event);
        }
    }
}
