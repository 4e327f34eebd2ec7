//! A job's pause, before its result and the removal of its containers, until its log has been
//! delivered.
//!
//! Removing containers keeps the Docker engine, containerd and runc busy for a while (stopping
//! the container, deleting it, unmounting its layers, removing its network). A step that printed a
//! burst leaves the reporter still uploading at that moment, and the two then compete for the
//! same cores: the end of the log reaches Gitea later than it could. So a job whose spec asks for
//! it sends a [`LogCheckpoint`] after its last log line and waits, bounded, for the consumer to
//! let it go; only then does it send `JobFinished` and start the clean-up (which no longer holds
//! up the result). A consumer that delivers nothing (or does not know the event) lets it go by
//! dropping it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::event::JobEvent;
use super::job::Emitter;

/// Held by the consumer of a job's events until every log row sent before it has been delivered;
/// the job goes on once the last clone is dropped.
#[derive(Clone)]
pub struct LogCheckpoint {
    hold: Arc<oneshot::Sender<()>>,
}

impl LogCheckpoint {
    /// A checkpoint and what resolves once it is let go.
    pub fn new() -> (LogCheckpoint, oneshot::Receiver<()>) {
        let (hold, released) = oneshot::channel();
        (
            LogCheckpoint {
                hold: Arc::new(hold),
            },
            released,
        )
    }
}

impl fmt::Debug for LogCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogCheckpoint")
    }
}

/// Two events are equal when they hold the same checkpoint.
impl PartialEq for LogCheckpoint {
    fn eq(&self, other: &LogCheckpoint) -> bool {
        Arc::ptr_eq(&self.hold, &other.hold)
    }
}

/// With `limit`, sends a checkpoint and waits until it is let go, `limit` passes or the job is
/// cancelled (a cancelled job cleans up at once).
pub(super) async fn wait_for_delivery(
    limit: Option<Duration>,
    emitter: &Emitter,
    cancel: &CancellationToken,
) {
    let Some(limit) = limit else {
        return;
    };
    if cancel.is_cancelled() {
        return;
    }
    let (checkpoint, released) = LogCheckpoint::new();
    emitter.send(JobEvent::LogCheckpoint(checkpoint)).await;
    tokio::select! {
        _ = tokio::time::timeout(limit, released) => {}
        () = cancel.cancelled() => {}
    }
}
