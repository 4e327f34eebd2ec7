//! One UpdateLog call: the rows after the last acknowledged one, as many as fit in 1 MiB, copied
//! from the spool as they are encoded there, and what Gitea's `ack_index` says it stored.
//!
//! While Gitea takes one request, the next is built from the rows after it, so a burst goes out
//! back to back instead of waiting for the spool read and the copy between calls. Still only one
//! request is in flight, and the next one is sent only if Gitea acknowledged every row of the
//! one before (else it is built again from where Gitea's answer says to go on).

use std::sync::Arc;

use bytes::BytesMut;
use tokio::time::Instant;

use super::delivery::{call, report_failure};
use super::retry::Failure;
use super::{Core, MAX_UPDATE_LOG_BYTES};
use crate::client::{EncodedUpdateLog, Method, RunnerApi};
use crate::daemon::observe::{DaemonEvent, ReportOutcome};
use crate::daemon::spool::{self, Known, Window};

/// How much of the spool one UpdateLog reads: rows take as many bytes in the spool as in a
/// request, so the request cap always fills a request.
const WINDOW_BYTES: usize = MAX_UPDATE_LOG_BYTES;

/// The memory UpdateLog calls reuse (a spool window and a request buffer for the request in
/// flight, the same for the next one), and the next request once it is built.
#[derive(Default)]
pub(super) struct LogBuffers {
    windows: Vec<Window>,
    buffers: Vec<BytesMut>,
    next: Option<PreparedLog>,
}

impl LogBuffers {
    fn take(&mut self) -> (Window, BytesMut) {
        (
            self.windows.pop().unwrap_or_default(),
            self.buffers.pop().unwrap_or_default(),
        )
    }

    fn recycle(&mut self, window: Window, buffer: BytesMut) {
        self.windows.push(window);
        self.buffers.push(buffer);
    }
}

/// A request built from the spool, and where its rows are.
struct PreparedLog {
    request: EncodedUpdateLog,
    /// The spooled rows it was built from (where a partial ack falls is found in them).
    window: Window,
    /// The handle of the memory the request was built in, kept for the next request.
    buffer: BytesMut,
    from_row: u64,
    /// The log offset of its first row, and the one just past its last.
    from_byte: u64,
    end_byte: u64,
    /// The rows the spool held when it was built, and whether it was built to end the log.
    spool_rows: u64,
    finishing: bool,
    /// A row was left out for want of space, so rows spooled since would not have fit either.
    full: bool,
}

impl PreparedLog {
    fn n_rows(&self) -> u64 {
        self.request.n_rows() as u64
    }

    /// Whether it is the request to send now: it starts at the first unacknowledged row, and no
    /// row spooled since it was built would have fit in it.
    fn still_next(&self, acked_rows: u64, spool_rows: u64, finishing: bool) -> bool {
        self.from_row == acked_rows
            && self.finishing == finishing
            && (self.full || self.spool_rows == spool_rows)
    }
}

/// Sends one UpdateLog with the rows after the last ack. With `finishing`, the request that
/// reaches the last row carries `no_more`. `Ok(true)` when every row, including a `no_more`
/// request, is acknowledged.
pub(super) async fn send_log<A: RunnerApi>(
    api: &Arc<A>,
    core: &Arc<Core>,
    buffers: &mut LogBuffers,
    finishing: bool,
) -> Result<bool, Failure> {
    let (acked_rows, acked_bytes, spool_rows) = {
        let shared = core.lock();
        (shared.acked_rows, shared.acked_bytes, shared.spool.rows())
    };
    let prepared = match buffers.next.take() {
        Some(next) if next.still_next(acked_rows, spool_rows, finishing) => next,
        stale => {
            if let Some(stale) = stale {
                buffers.recycle(stale.window, stale.buffer);
            }
            let (window, buffer) = buffers.take();
            build(core, window, buffer, acked_rows, acked_bytes, finishing).await?
        }
    };
    let n_rows = prepared.n_rows();
    let no_more = prepared.request.no_more();
    let PreparedLog {
        request,
        window,
        buffer,
        from_row,
        from_byte,
        end_byte,
        ..
    } = prepared;
    {
        let mut shared = core.lock();
        shared.sent_rows = shared.sent_rows.max(from_row + n_rows);
    }
    let sending = async {
        let started = Instant::now();
        let answer = call(core, Method::UpdateLog, api.update_log(request)).await;
        (answer, started.elapsed())
    };
    let after = from_row + n_rows;
    let more = core.lock().spool.rows() > after;
    let ((answer, duration), next) = if more {
        let (next_window, next_buffer) = buffers.take();
        let building = build(core, next_window, next_buffer, after, end_byte, finishing);
        let (sent, next) = tokio::join!(sending, building);
        (sent, next.ok())
    } else {
        (sending.await, None)
    };
    buffers.next = next;
    let outcome = if answer.is_ok() {
        ReportOutcome::Success
    } else {
        ReportOutcome::Error
    };
    core.observer
        .observe(&DaemonEvent::ReportLog { outcome, duration });
    let acked = match answer {
        Ok(response) => {
            let sent = SentRows {
                from_row,
                n_rows,
                from_byte,
                end_byte,
                window: &window,
            };
            acked_position(core, response.ack_index.max(0) as u64, &sent).await
        }
        Err(error) => Err(report_failure(core, Method::UpdateLog, &error)),
    };
    buffers.recycle(window, buffer);
    let (ack, ack_bytes) = acked?;
    let mut shared = core.lock();
    let end_rows = shared.spool.rows();
    shared.acked_rows = ack;
    shared.acked_bytes = ack_bytes;
    shared.release_checkpoints();
    let pending = shared.pending_rows();
    shared.first_unsent_at = (pending > 0).then(Instant::now);
    let spool_bytes = shared.spool.bytes();
    drop(shared);
    core.observer
        .observe(&DaemonEvent::LogBufferRows { rows: pending });
    core.observer
        .observe(&DaemonEvent::SpoolBytes { bytes: spool_bytes });
    Ok(no_more && ack == end_rows)
}

/// The rows of a sent request: where they are in the spool.
struct SentRows<'a> {
    from_row: u64,
    n_rows: u64,
    from_byte: u64,
    end_byte: u64,
    window: &'a Window,
}

/// The rows and the log offset Gitea's `ack_index` stands for: any row it has not stored is sent
/// again, from wherever that is in the spool. An `ack_index` past every row ever sent is a
/// protocol error: it is logged once and taken as acknowledging what was sent, so the rows it
/// claims are still delivered.
async fn acked_position(core: &Core, ack: u64, sent: &SentRows<'_>) -> Result<(u64, u64), Failure> {
    let (reader, end_rows, end_bytes, ack) = {
        let mut shared = core.lock();
        let ack = if ack > shared.sent_rows {
            if !shared.warned_ack_beyond_sent {
                shared.warned_ack_beyond_sent = true;
                tracing::error!(
                    task_id = core.task_id,
                    ack,
                    sent = shared.sent_rows,
                    "protocol error: Gitea acknowledged log rows it was never sent; keeping them"
                );
            }
            shared.sent_rows
        } else {
            ack
        };
        (
            shared.spool.reader(),
            shared.spool.rows(),
            shared.spool.bytes(),
            ack,
        )
    };
    let ack_bytes = if ack < sent.from_row {
        // The server has fewer rows than it acknowledged before (restored from a backup?):
        // rewind and resend from its position, the spool still holds every row.
        tracing::warn!(
            task_id = core.task_id,
            ack,
            acked = sent.from_row,
            "Gitea lost log rows; resending"
        );
        seek(&reader, 0, 0, ack, end_bytes).await?
    } else if ack <= sent.from_row + sent.n_rows {
        match ack - sent.from_row {
            0 => sent.from_byte,
            n_acked if n_acked == sent.n_rows => sent.end_byte,
            // A partial ack: the rows read for the request say where it falls.
            n_acked => sent
                .window
                .rows()
                .nth(n_acked as usize - 1)
                .map_or(sent.end_byte, |(_, end)| end),
        }
    } else {
        let ack = ack.min(end_rows);
        let after = sent.from_row + sent.n_rows;
        seek(&reader, after, sent.end_byte, ack, end_bytes).await?
    };
    Ok((ack.min(end_rows), ack_bytes))
}

/// Builds the request for the rows from `from_row`, which starts at byte `from_byte` of the log.
async fn build(
    core: &Arc<Core>,
    window: Window,
    mut buffer: BytesMut,
    from_row: u64,
    from_byte: u64,
    finishing: bool,
) -> Result<PreparedLog, Failure> {
    let (reader, spool_rows, spool_bytes) = {
        let mut shared = core.lock();
        if let Err(error) = shared.spool.flush() {
            tracing::error!(task_id = core.task_id, error = %error, "cannot flush the log spool");
        }
        (
            shared.spool.reader(),
            shared.spool.rows(),
            shared.spool.bytes(),
        )
    };
    let read = tokio::task::spawn_blocking(move || {
        let mut window = window;
        let read = window.read(&reader, from_byte, spool_bytes, WINDOW_BYTES);
        (window, read)
    })
    .await;
    let window = match read {
        Ok((window, Ok(()))) => window,
        Ok((_, Err(error))) => {
            tracing::error!(task_id = core.task_id, error = %error, "cannot read the log spool");
            return Err(Failure::Retry);
        }
        Err(error) => {
            tracing::error!(task_id = core.task_id, error = %error, "log spool reader failed");
            return Err(Failure::Retry);
        }
    };
    let mut builder = EncodedUpdateLog::builder(
        &mut buffer,
        core.task_id,
        from_row as i64,
        MAX_UPDATE_LOG_BYTES,
    );
    // The rows that fit are copied in one go, framed in the spool as in a request. Where an
    // append ended inside the space, the rows before it need not be counted again.
    let space = builder.space_left();
    let known = core
        .lock()
        .spool
        .row_mark(from_byte, from_byte + space as u64)
        .and_then(|mark| {
            Some(Known {
                rows: usize::try_from(mark.rows.checked_sub(from_row)?).ok()?,
                bytes: mark.bytes,
            })
        });
    let fit = window.fitting(space, known);
    builder.push_fields(window.framed_until(fit.end), fit.n_rows);
    let reaches_end = from_row + builder.n_rows() as u64 == spool_rows;
    let request = builder.finish(finishing && reaches_end);
    Ok(PreparedLog {
        request,
        window,
        buffer,
        from_row,
        from_byte,
        end_byte: fit.end,
        spool_rows,
        finishing,
        full: fit.full,
    })
}

async fn seek(
    reader: &Arc<std::fs::File>,
    row: u64,
    byte: u64,
    target: u64,
    end: u64,
) -> Result<u64, Failure> {
    let reader = Arc::clone(reader);
    match tokio::task::spawn_blocking(move || spool::seek_row(&reader, row, byte, target, end))
        .await
    {
        Ok(Ok(byte)) => Ok(byte),
        _ => Err(Failure::Retry),
    }
}
