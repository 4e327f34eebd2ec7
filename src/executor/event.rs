//! Job events: the typed stream a running job emits and the daemon's reporter (or `exec`'s printer)
//! consumes. This is the executor's whole output interface; it holds no proto or Gitea types.
//!
//! Order contract: `JobStarted` first, then per step `StepStarted`, its `Log` lines (in batches),
//! `StepFinished`; a step not announced in `JobStarted` is in a `StepsPlanned` before it starts;
//! job-level `Log` lines (set-up, the job's end) carry `step_idx: None`; `Outputs`
//! before `JobFinished`, which is always last and always sent, also on cancellation and timeout.
//! A job whose spec has `log_delivery_wait` sends a `LogCheckpoint` right before `JobFinished`
//! (not when it was cancelled). The job removes its containers after `JobFinished`.

use std::time::SystemTime;

use indexmap::IndexMap;

use super::line_batch::LineBatch;
pub use super::log_checkpoint::LogCheckpoint;

/// Result of a step (its outcome or its conclusion) or of a whole job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

/// One step as planned when the job starts, so a reporter can pre-build the step list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    /// Index of the step in the job's `steps:` list, 0-based.
    pub step_idx: usize,
    /// Display name (`name:`, else derived from `run:` or `uses:`).
    pub name: String,
}

/// Lines of output that arrived together, already masked, without their trailing newlines. Each
/// line becomes one log row stamped `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLines {
    pub at: SystemTime,
    /// The step that printed them, or `None` for job-level lines (set-up, the job's end).
    pub step_idx: Option<usize>,
    pub lines: LineBatch,
}

impl LogLines {
    /// One line.
    pub fn one(at: SystemTime, step_idx: Option<usize>, line: impl Into<String>) -> LogLines {
        LogLines {
            at,
            step_idx,
            lines: LineBatch::one(line),
        }
    }
}

/// What a running job reports.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    JobStarted {
        at: SystemTime,
        steps: Vec<PlannedStep>,
    },
    /// Steps planned after `JobStarted`, numbered after every step announced before: the
    /// matrix legs after the first of a called workflow's job, whose legs are known only when
    /// it runs (its matrix may use the outputs of the called jobs before it).
    StepsPlanned(Vec<PlannedStep>),
    StepStarted {
        step_idx: usize,
        at: SystemTime,
    },
    Log(LogLines),
    StepFinished {
        step_idx: usize,
        at: SystemTime,
        /// Result before `continue-on-error` is applied (`steps.<id>.outcome`).
        outcome: Conclusion,
        /// Result after `continue-on-error` (`steps.<id>.conclusion`); what Gitea shows.
        conclusion: Conclusion,
    },
    /// The job's `outputs:`, evaluated once the steps are done.
    Outputs(IndexMap<String, String>),
    /// The job waits, before `JobFinished` and its clean-up, until this is dropped: a consumer
    /// that delivers the log keeps it until every row sent before it is delivered.
    LogCheckpoint(LogCheckpoint),
    JobFinished {
        at: SystemTime,
        result: Conclusion,
    },
}
