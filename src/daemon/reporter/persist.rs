//! Writing a task's spool record while its delivery goes on. Delivery starts a persist in the
//! background every [`PERSIST_EVERY`] while it sends and keeps sending; it waits only where the
//! record must be on disk before it goes on (the job's final state before the final flush, the
//! daemon exiting, the spool being removed), and only those persists sync.
//!
//! Why the background ones do not sync: an fsync of the rows after a burst writes megabytes back
//! and commits the file system's journal, and every writer on that file system waits for the
//! commit meanwhile, Docker's output pipes too where `/run` shares the disk: the step's output
//! would stall in the middle of the burst the fsync was meant to protect. Replaced atomically,
//! the record survives a crash of the daemon whole (the kernel holds it); a crash of the machine
//! may find an older record, or rows not yet written back, as it may find a job cut short.
//!
//! Losing a background persist to a crash costs resent rows, never lost ones: the record on disk
//! then holds an older `acked_rows`, and Gitea's `ack_index` skips what it already has. A record
//! whose acknowledged position is past the rows that survived starts delivery over (see
//! `spool::recover`).

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
        self.running = Some(tokio::spawn(async move {
            persist(&core, Durability::Replaced).await
        }));
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

    /// Waits for a running persist, then persists the current record: on disk, with every row
    /// before it, when this returns.
    pub(super) async fn settle(&mut self, core: &Arc<Core>) {
        self.finish(core).await;
        persist(core, Durability::Synced).await;
    }
}

/// How far a persist goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// The rows handed to the kernel and the record replaced atomically.
    Replaced,
    /// The rows and the record on disk (see [`spool::persist_record`]).
    Synced,
}

/// Writes the spool record on the blocking pool (after syncing the log, when `Synced`).
async fn persist(core: &Arc<Core>, durability: Durability) {
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
    let written = tokio::task::spawn_blocking(move || match durability {
        Durability::Replaced => spool::replace_record(&dir, &record),
        Durability::Synced => reader
            .sync_data()
            .map_err(|source| spool::SpoolError::Io {
                action: "sync",
                path: dir.join(spool::ROWS_FILE),
                source,
            })
            .and_then(|()| spool::persist_record(&dir, &record)),
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
