//! Poller: asks Gitea for tasks while capacity allows and hands each to a [`TaskRunner`].
//!
//! Owns admission: one loop, a capacity gate that never lets `capacity + 1` jobs run, the
//! `fetch_timeout` on every FetchTask, backoff after empty or failed fetches, and `tasks_version`
//! (kept from answers, reset to 0 after a task and every few minutes as a safety net against a
//! server that forgot to bump it). It stops asking when its stop token is cancelled; an
//! unauthenticated answer ends it with [`PollEnd::Unauthenticated`].
//! May use: `client`, `daemon::backoff`, `daemon::observe`. Never: `systemd`, `metrics`, `executor`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::proto::runner::{FetchTaskRequest, Task};
use crate::client::{ClientError, RunnerApi};
use crate::daemon::backoff::Backoff;
use crate::daemon::observe::{DaemonEvent, FetchOutcome, Observer};

/// How often `tasks_version` is reset to 0 even without a task, so a server that did not bump its
/// version after a change cannot starve the runner for long.
pub const TASKS_VERSION_RESET_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The knobs of the poll loop; reloadable through the `watch` channel the poller is built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollerSettings {
    pub capacity: usize,
    pub fetch_timeout: Duration,
    pub fetch_interval: Duration,
    pub fetch_interval_max: Duration,
}

/// Runs one admitted task to its end (execution and final report). Called on its own tokio task;
/// `jobs_cancel` is cancelled when the shutdown grace is over.
pub trait TaskRunner: Send + Sync + 'static {
    fn run(&self, task: Task, jobs_cancel: CancellationToken) -> impl Future<Output = ()> + Send;

    /// A poll brought no task (upstream's `OnIdle`); must not block.
    fn on_idle(&self) {}

    /// Whether a task may be fetched now (upstream's `CanAcceptTask`), else why not.
    fn available(&self) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Whether the poller keeps polling after a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// `daemon`: poll until stopped.
    Continuous,
    /// `daemon --once` and ephemeral runners: stop asking after the first task.
    Once,
}

/// Why the poll loop ended. Admitted jobs may still be running in the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollEnd {
    /// The stop token was cancelled.
    Stopped,
    /// `PollMode::Once` admitted its task.
    OnceAdmitted,
    /// Gitea no longer knows this runner: stop with exit 77.
    Unauthenticated,
}

/// The capacity gate: `acquire` waits while `capacity` jobs hold a [`Slot`]. Capacity can change
/// at runtime (reload); lowering it lets running jobs finish and admits nothing until below it.
#[derive(Debug, Clone)]
pub struct Admission {
    inner: Arc<AdmissionInner>,
}

#[derive(Debug)]
struct AdmissionInner {
    counts: Mutex<AdmissionCounts>,
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
struct AdmissionCounts {
    running: usize,
    capacity: usize,
}

/// One admitted job; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    admission: Admission,
}

impl Admission {
    pub fn new(capacity: usize) -> Admission {
        Admission {
            inner: Arc::new(AdmissionInner {
                counts: Mutex::new(AdmissionCounts {
                    running: 0,
                    capacity: capacity.max(1),
                }),
                changed: Notify::new(),
            }),
        }
    }

    /// Jobs holding a slot now.
    pub fn running(&self) -> usize {
        self.counts().running
    }

    pub fn capacity(&self) -> usize {
        self.counts().capacity
    }

    pub fn set_capacity(&self, capacity: usize) {
        self.with_counts(|counts| counts.capacity = capacity.max(1));
        self.inner.changed.notify_waiters();
    }

    /// Waits for a free place. Cancel-safe: dropping the future takes nothing.
    pub async fn acquire(&self) -> Slot {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let admitted = self.with_counts(|counts| {
                if counts.running < counts.capacity {
                    counts.running += 1;
                    true
                } else {
                    false
                }
            });
            if admitted {
                return Slot {
                    admission: self.clone(),
                };
            }
            changed.await;
        }
    }

    fn counts(&self) -> AdmissionCounts {
        self.with_counts(|counts| *counts)
    }

    fn with_counts<T>(&self, f: impl FnOnce(&mut AdmissionCounts) -> T) -> T {
        f(&mut crate::sync::lock(&self.inner.counts))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission
            .with_counts(|counts| counts.running = counts.running.saturating_sub(1));
        self.admission.inner.changed.notify_waiters();
    }
}

/// The poll loop and its state.
pub struct Poller<A, R> {
    api: Arc<A>,
    runner: Arc<R>,
    settings: watch::Receiver<PollerSettings>,
    observer: Arc<dyn Observer>,
    admission: Admission,
    backoff: Backoff,
    tasks_version: i64,
    last_version_reset: Instant,
    last_backoff_reported: Option<Duration>,
    warned_fetch_timeout: bool,
    /// False once the settings sender is gone (no more reloads).
    settings_open: bool,
    /// Why the runner refuses work (a failed health check), while it does.
    unavailable: Option<String>,
}

enum Fetched {
    Task(Box<Task>),
    Nothing,
    Unauthenticated,
}

impl<A: RunnerApi + 'static, R: TaskRunner> Poller<A, R> {
    pub fn new(
        api: Arc<A>,
        runner: Arc<R>,
        settings: watch::Receiver<PollerSettings>,
        admission: Admission,
        observer: Arc<dyn Observer>,
    ) -> Poller<A, R> {
        let current = settings.borrow().clone();
        admission.set_capacity(current.capacity);
        Poller {
            api,
            runner,
            settings,
            observer,
            admission,
            backoff: Backoff::new(current.fetch_interval, current.fetch_interval_max),
            tasks_version: 0,
            last_version_reset: Instant::now(),
            last_backoff_reported: None,
            warned_fetch_timeout: false,
            settings_open: true,
            unavailable: None,
        }
    }

    /// Polls until `stop_polling` is cancelled, Gitea rejects the runner, or (in `Once` mode) a
    /// task was admitted. Admitted jobs run on `jobs`; the caller drains them.
    pub async fn run(
        mut self,
        mode: PollMode,
        stop_polling: CancellationToken,
        jobs_cancel: CancellationToken,
        jobs: &TaskTracker,
    ) -> PollEnd {
        loop {
            self.apply_settings();
            self.observer.observe(&DaemonEvent::PollProgress);
            let admission = self.admission.clone();
            let slot = tokio::select! {
                biased;
                _ = stop_polling.cancelled() => return PollEnd::Stopped,
                // A reload may raise the capacity while every place is taken.
                changed = self.settings.changed(), if self.settings_open => {
                    match changed {
                        Ok(()) => self.settings.mark_changed(),
                        Err(_) => self.settings_open = false,
                    }
                    continue;
                }
                slot = admission.acquire() => slot,
            };
            if let Err(reason) = self.runner.available().await {
                if self.unavailable.as_ref() != Some(&reason) {
                    tracing::warn!(reason = %reason, "runner temporarily unavailable");
                    self.observer.observe(&DaemonEvent::Availability {
                        unavailable: Some(reason.clone()),
                    });
                }
                self.unavailable = Some(reason);
                drop(slot);
                self.runner.on_idle();
                self.backoff.record_empty();
                if !self.pause(&stop_polling).await {
                    return PollEnd::Stopped;
                }
                continue;
            }
            if self.unavailable.take().is_some() {
                tracing::info!("runner local health recovered, resuming task polling");
                self.observer
                    .observe(&DaemonEvent::Availability { unavailable: None });
            }
            match self.fetch(&stop_polling).await {
                None => return PollEnd::Stopped,
                Some(Fetched::Unauthenticated) => {
                    tracing::error!("server rejected the runner as unregistered, stopping poller");
                    return PollEnd::Unauthenticated;
                }
                Some(Fetched::Task(task)) => {
                    self.backoff.reset();
                    self.last_backoff_reported = None;
                    // The task is claimed on the server now, so it runs even if a stop arrived
                    // meanwhile; the drain gives it its grace.
                    let runner = Arc::clone(&self.runner);
                    let jobs_cancel = jobs_cancel.clone();
                    jobs.spawn(async move {
                        let _slot = slot;
                        runner.run(*task, jobs_cancel).await;
                    });
                    if mode == PollMode::Once {
                        return PollEnd::OnceAdmitted;
                    }
                }
                Some(Fetched::Nothing) => {
                    drop(slot);
                    self.runner.on_idle();
                    let base = self.backoff.base_interval();
                    if self.last_backoff_reported != Some(base) {
                        self.last_backoff_reported = Some(base);
                        self.observer
                            .observe(&DaemonEvent::Backoff { interval: base });
                    }
                    if !self.pause(&stop_polling).await {
                        return PollEnd::Stopped;
                    }
                }
            }
        }
    }

    /// The backoff wait; false when `stop_polling` ended it.
    async fn pause(&mut self, stop_polling: &CancellationToken) -> bool {
        let wait = self.backoff.next_wait();
        tokio::select! {
            biased;
            _ = stop_polling.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    fn apply_settings(&mut self) {
        if !self.settings_open || !self.settings.has_changed().unwrap_or(false) {
            return;
        }
        let current = self.settings.borrow_and_update().clone();
        self.admission.set_capacity(current.capacity);
        self.backoff
            .set_intervals(current.fetch_interval, current.fetch_interval_max);
        tracing::info!(
            capacity = current.capacity,
            fetch_interval = ?current.fetch_interval,
            fetch_interval_max = ?current.fetch_interval_max,
            "poll settings applied"
        );
    }

    /// One FetchTask; `None` when the stop token interrupted it.
    async fn fetch(&mut self, stop_polling: &CancellationToken) -> Option<Fetched> {
        if self.last_version_reset.elapsed() >= TASKS_VERSION_RESET_INTERVAL {
            self.tasks_version = 0;
            self.last_version_reset = Instant::now();
        }
        let sent_version = self.tasks_version;
        let fetch_timeout = self.settings.borrow().fetch_timeout;
        let started = Instant::now();
        let request = FetchTaskRequest {
            tasks_version: sent_version,
        };
        let answer = tokio::select! {
            biased;
            _ = stop_polling.cancelled() => return None,
            answer = tokio::time::timeout(fetch_timeout, self.api.fetch_task(request)) => answer,
        };
        let answer = match answer {
            Err(_) | Ok(Err(ClientError::DeadlineExceeded { .. })) => {
                if !self.warned_fetch_timeout {
                    self.warned_fetch_timeout = true;
                    tracing::warn!(
                        fetch_timeout = ?fetch_timeout,
                        "fetching a task timed out, raise runner.fetch_timeout if this persists"
                    );
                }
                self.backoff.record_empty();
                self.observe_fetch(FetchOutcome::Empty, None);
                return Some(Fetched::Nothing);
            }
            Ok(answer) => answer,
        };
        self.warned_fetch_timeout = false;
        let duration = Some(started.elapsed());
        let response = match answer {
            Err(ClientError::Unauthenticated { .. }) => return Some(Fetched::Unauthenticated),
            Err(error) => {
                tracing::warn!(error = %error, "failed to fetch task");
                self.backoff.record_error();
                self.observe_fetch(FetchOutcome::Error, duration);
                self.observer.observe(&DaemonEvent::ClientError {
                    method: crate::client::Method::FetchTask,
                });
                return Some(Fetched::Nothing);
            }
            Ok(response) => response,
        };
        self.backoff.record_answer();
        if response.tasks_version > sent_version {
            self.tasks_version = response.tasks_version;
        }
        match response.task {
            None => {
                tracing::debug!(tasks_version = response.tasks_version, "no task");
                self.backoff.record_empty();
                self.observe_fetch(FetchOutcome::Empty, duration);
                Some(Fetched::Nothing)
            }
            Some(task) => {
                // Other jobs may wait under the same version: make the server pick next time.
                self.tasks_version = 0;
                self.last_version_reset = Instant::now();
                self.observe_fetch(FetchOutcome::Task, duration);
                tracing::info!(task_id = task.id, "task received");
                Some(Fetched::Task(Box::new(task)))
            }
        }
    }

    fn observe_fetch(&self, outcome: FetchOutcome, duration: Option<Duration>) {
        self.observer
            .observe(&DaemonEvent::Fetch { outcome, duration });
    }
}

#[cfg(test)]
#[path = "poller_tests.rs"]
mod tests;
