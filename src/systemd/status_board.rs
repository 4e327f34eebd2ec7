//! The status board: turns what the daemon reports (plain values: jobs started and finished,
//! fetch failures, backoff, drain) into `STATUS=` texts and watchdog progress.
//!
//! `cli::daemon` feeds it from the daemon's observer events; this room imports nothing of
//! `daemon`. May use: `systemd::notify`, `systemd::watchdog`, std.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::notify::{Notifier, Status};
use super::watchdog::{Progress, Waiting};

/// Keeps STATUS current and feeds the watchdog's poll progress.
#[derive(Debug)]
pub struct StatusBoard {
    notifier: Notifier,
    progress: Progress,
    /// Never held across an await.
    state: Mutex<BoardState>,
}

#[derive(Debug)]
struct BoardState {
    capacity: usize,
    /// Running jobs by task id, described as `owner/repo job`.
    jobs: BTreeMap<i64, String>,
    /// The poll wait and why, while fetches fail.
    backoff: Option<(Duration, String)>,
    last_interval: Duration,
    draining: bool,
    /// Held while every place is taken: the poll loop then waits for capacity on purpose.
    full: Option<Waiting>,
}

impl StatusBoard {
    /// A board for `capacity` places; `progress` is the one the watchdog checks.
    pub fn new(notifier: Notifier, progress: Progress, capacity: usize) -> Self {
        let board = Self {
            notifier,
            progress,
            state: Mutex::new(BoardState {
                capacity,
                jobs: BTreeMap::new(),
                backoff: None,
                last_interval: Duration::ZERO,
                draining: false,
                full: None,
            }),
        };
        board.publish();
        board
    }

    /// The poll loop went around once.
    pub fn poll_progress(&self) {
        self.progress.advance();
    }

    /// A job was admitted; `running` counts it.
    pub fn job_started(
        &self,
        task_id: i64,
        repository: &str,
        job: &str,
        running: usize,
        capacity: usize,
    ) {
        {
            let mut state = self.lock();
            state.jobs.insert(task_id, format!("{repository} {job}"));
            state.capacity = capacity;
            state.backoff = None;
            self.track_full(&mut state, running);
        }
        self.publish();
    }

    /// A job ended; `running` no longer counts it.
    pub fn job_finished(&self, task_id: i64, running: usize, capacity: usize) {
        {
            let mut state = self.lock();
            state.jobs.remove(&task_id);
            state.capacity = capacity;
            self.track_full(&mut state, running);
        }
        self.publish();
    }

    /// The capacity changed (reload).
    pub fn capacity_changed(&self, capacity: usize) {
        {
            let mut state = self.lock();
            state.capacity = capacity;
            let running = state.jobs.len();
            self.track_full(&mut state, running);
        }
        self.publish();
    }

    /// The poll wait after an empty or failed fetch.
    pub fn poll_interval(&self, interval: Duration) {
        let mut state = self.lock();
        state.last_interval = interval;
        if let Some((wait, _)) = &mut state.backoff {
            *wait = interval;
        }
        drop(state);
        self.publish();
    }

    /// A fetch failed: STATUS shows `backoff <interval>: <reason>` until a fetch succeeds.
    pub fn fetch_failed(&self, reason: &str) {
        {
            let mut state = self.lock();
            let interval = state.last_interval;
            state.backoff = Some((interval, reason.to_owned()));
        }
        self.publish();
    }

    /// A fetch answered (with or without a task).
    pub fn fetch_succeeded(&self) {
        let had_backoff = self.lock().backoff.take().is_some();
        if had_backoff {
            self.publish();
        }
    }

    /// Admission stopped; from now on STATUS is `draining N jobs`.
    pub fn draining(&self) {
        {
            let mut state = self.lock();
            state.draining = true;
            state.full = None;
        }
        self.publish();
    }

    /// The job descriptions shown (for the logind inhibitor's reason).
    pub fn running_jobs(&self) -> Vec<String> {
        self.lock().jobs.values().cloned().collect()
    }

    fn track_full(&self, state: &mut BoardState, running: usize) {
        let full = running >= state.capacity && !state.draining;
        match (full, state.full.is_some()) {
            (true, false) => state.full = Some(self.progress.waiting()),
            (false, true) => state.full = None,
            _ => {}
        }
    }

    fn publish(&self) {
        let state = self.lock();
        let jobs: Vec<String> = state.jobs.values().cloned().collect();
        let status = if state.draining {
            Status::Draining { jobs: jobs.len() }
        } else if !jobs.is_empty() {
            Status::Running {
                running: jobs.len(),
                capacity: state.capacity,
                jobs: &jobs,
            }
        } else if let Some((delay, reason)) = &state.backoff {
            Status::Backoff {
                delay: *delay,
                reason,
            }
        } else {
            Status::Idle {
                capacity: state.capacity,
            }
        };
        self.notifier.status(status);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoardState> {
        crate::sync::lock(&self.state)
    }
}
