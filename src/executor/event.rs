//! Job events: the typed stream a running job emits and the daemon's reporter (or `exec`'s printer)
//! consumes. This is the executor's whole output interface; it holds no proto or Gitea types.
//!
//! Order contract: `JobStarted` first, then per step `StepStarted`, its `Log` lines, `StepFinished`;
//! job-level `Log` lines (set-up, tear-down) carry `step_idx: None`; `Outputs` before `JobFinished`,
//! which is always last and always sent, also on cancellation and timeout.

use std::time::SystemTime;

use indexmap::IndexMap;

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

/// One line of output, already masked, without its trailing newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: SystemTime,
    /// The step that printed it, or `None` for job-level lines (set-up, tear-down).
    pub step_idx: Option<usize>,
    pub content: String,
}

/// What a running job reports.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    JobStarted {
        at: SystemTime,
        steps: Vec<PlannedStep>,
    },
    StepStarted {
        step_idx: usize,
        at: SystemTime,
    },
    Log(LogLine),
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
    JobFinished {
        at: SystemTime,
        result: Conclusion,
    },
}
