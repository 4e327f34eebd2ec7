//! What a failed report call means for the task, and how long to wait before the next attempt.

use std::time::Duration;

use crate::client::ClientError;

/// First retry wait after a failed report call; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// What a failed call means for the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// Transient: retry the same call later.
    Retry,
    /// UpdateLog only: the server finalised the log (reaped or cancelled); stop sending rows.
    LogArchived,
    /// The server does not know this task or runner any more; nothing will ever be accepted.
    Unauthenticated,
    Abandon,
}

/// What the client's error variant means for this task's delivery.
pub(super) fn classify(error: &ClientError) -> Failure {
    match error {
        ClientError::Unauthenticated { .. } => Failure::Unauthenticated,
        ClientError::LogArchived { .. } => Failure::LogArchived,
        ClientError::TaskNotOwned { .. }
        | ClientError::Unimplemented { .. }
        | ClientError::InvalidSettings { .. } => Failure::Abandon,
        _ => Failure::Retry,
    }
}

/// Exponential retry waits with ±20 % jitter.
pub(super) struct Retry {
    next: Duration,
}

impl Retry {
    pub(super) fn new() -> Retry {
        Retry { next: RETRY_MIN }
    }

    pub(super) fn reset(&mut self) {
        self.next = RETRY_MIN;
    }

    pub(super) fn wait(&mut self) -> Duration {
        let wait = crate::daemon::backoff::jitter(self.next, rand::random::<f64>());
        self.next = (self.next * 2).min(RETRY_MAX);
        wait
    }
}
