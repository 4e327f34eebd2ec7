//! Writing a task's spool record while its delivery goes on. A persist syncs the log and replaces
//! `state.json` (three fsyncs): a few milliseconds, and tens when a burst left megabytes of rows
//! to write back. Delivery starts one in the background and keeps sending; it waits only where
//! the record must be on disk before it goes on (the job's final state before the final flush,
//! the daemon exiting, the spool being removed).
//!
//! Losing a background persist to a crash costs resent rows, never lost ones: the record on disk
//! then holds an older `acked_rows`, and Gitea's `ack_index` skips what it already has.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Core;
use crate::daemon::spool;

/// Persist the spool record at most this often while rows are being sent.
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// At most one persist of one task's record at a time, in the background.
pub(super) struct Persister {
    running: Option<JoinHandle<()>>,
    last_started: Instant,
}

impl Persister {
    pub(super) fn new() -> Persister {
        Persister {
            running: None,
            last_started: Instant::now(),
        }
    }

    /// Starts a persist of the current record unless one is still running (the next call after it
    /// ends catches up).
    pub(super) fn start(&mut self, core: &Arc<Core>) {
        if self
            .running
            .as_ref()
            .is_some_and(|running| !running.is_finished())
        {
            return;
        }
        self.last_started = Instant::now();
        let core = Arc::clone(core);
        self.running = Some(tokio::spawn(async move { persist(&core).await }));
    }

    /// [`Persister::start`] once [`PERSIST_EVERY`] has passed since the last start.
    pub(super) fn start_when_due(&mut self, core: &Arc<Core>) {
        if self.last_started.elapsed() >= PERSIST_EVERY {
            self.start(core);
        }
    }

    /// Waits for a running persist to end (before the spool is removed).
    pub(super) async fn finish(&mut self, core: &Core) {
        if let Some(running) = self.running.take()
            && let Err(error) = running.await
        {
            tracing::error!(task_id = core.task_id, error = %error, "spool persist failed");
        }
    }

    /// Waits for a running persist, then persists the current record: on disk when this returns.
    pub(super) async fn settle(&mut self, core: &Arc<Core>) {
        self.finish(core).await;
        persist(core).await;
    }
}

/// Writes the spool record (after syncing the log) on the blocking pool.
async fn persist(core: &Arc<Core>) {
    let (record, dir, reader) = {
        let mut shared = core.lock();
        if let Err(error) = shared.spool.flush() {
            tracing::error!(task_id = core.task_id, error = %error, "cannot flush the log spool");
        }
        (
            shared.record(),
            shared.spool.dir().to_path_buf(),
            shared.spool.reader(),
        )
    };
    let written = tokio::task::spawn_blocking(move || {
        reader
            .sync_data()
            .map_err(|source| spool::SpoolError::Io {
                action: "sync",
                path: dir.join(spool::ROWS_FILE),
                source,
            })
            .and_then(|()| spool::persist_record(&dir, &record))
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::error!(task_id = core.task_id, error = %error, "cannot persist the task spool")
        }
        Err(error) => {
            tracing::error!(task_id = core.task_id, error = %error, "spool writer failed")
        }
    }
}
