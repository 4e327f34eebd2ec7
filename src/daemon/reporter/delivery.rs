//! The delivery loop of one task: live reporting while the job runs, then the final flush.
//! See the reporter's module doc for the cadence and the order; this file holds the calls and the
//! ack bookkeeping, `retry` what a failure means.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tokio::time::Instant;

use super::retry::{Failure, Retry, classify};
use super::{Core, Delivery, MAX_UPDATE_LOG_BYTES};
use crate::client::proto::runner::UpdateTaskRequest;
use crate::client::{ClientError, EncodedUpdateLog, Method, RunnerApi};
use crate::daemon::observe::{DaemonEvent, ReportOutcome};
use crate::daemon::spool::{self, Window};

/// While rows keep coming, batch-triggered sends are spaced by this unless a full request is
/// ready: Gitea rewrites the task's whole log index on every UpdateLog, so a burst must go in few
/// large calls rather than one call per `log_report_batch_size` rows.
const BATCH_SPACING: Duration = Duration::from_secs(1);
/// Pending spool bytes that make a request worth sending at once.
const FULL_REQUEST_BYTES: u64 = (MAX_UPDATE_LOG_BYTES as u64) * 9 / 10;
/// How much of the spool one UpdateLog reads. A row takes 4 bytes of framing in the spool and 2
/// or 3 in a request, at most 17 spool bytes for 15 request bytes (the smallest row with a
/// time): a quarter more than the request cap always fills a request.
const WINDOW_BYTES: usize = MAX_UPDATE_LOG_BYTES + MAX_UPDATE_LOG_BYTES / 4;
/// Persist the spool record at most this often while the job runs.
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Successful UpdateTask answers that still leave outputs unacknowledged before we stop trying
/// (the server dropped them, e.g. as too long).
const OUTPUT_ATTEMPTS: u32 = 3;

/// The memory UpdateLog calls reuse: the spool window read and the request built from it.
#[derive(Default)]
struct LogBuffers {
    window: Window,
    request: BytesMut,
}

/// Runs the live phase until the events end, then the final flush.
pub(super) async fn run<A: RunnerApi>(api: Arc<A>, core: Arc<Core>) -> Delivery {
    let mut live = Live::new();
    loop {
        if core.exit.is_cancelled() {
            persist(&core).await;
            return Delivery::Kept;
        }
        if core.lock().events_done {
            break;
        }
        match live.step(&api, &core).await {
            Step::Again => continue,
            Step::Abandon => {
                core.job_cancel.cancel();
                // Keep reading events so the executor is never blocked, but send nothing more.
                wait_events_done(&core).await;
                return remove(&core, Delivery::Abandoned);
            }
            Step::Sleep(deadline) => {
                tokio::select! {
                    _ = core.wake.notified() => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = core.exit.cancelled() => {}
                }
            }
        }
    }
    final_flush(&api, &core, &mut live.buffers).await
}

enum Step {
    Again,
    Sleep(Instant),
    Abandon,
}

/// Timers of the live phase.
struct Live {
    last_log_send: Instant,
    last_state_send: Instant,
    last_persist: Instant,
    log_retry_at: Option<Instant>,
    state_retry_at: Option<Instant>,
    log_retry: Retry,
    state_retry: Retry,
    log_archived: bool,
    buffers: LogBuffers,
}

impl Live {
    fn new() -> Live {
        let now = Instant::now();
        Live {
            last_log_send: now,
            last_state_send: now,
            last_persist: now,
            log_retry_at: None,
            state_retry_at: None,
            log_retry: Retry::new(),
            state_retry: Retry::new(),
            log_archived: false,
            buffers: LogBuffers::default(),
        }
    }

    /// Sends what is due, or says when something will be.
    async fn step<A: RunnerApi>(&mut self, api: &Arc<A>, core: &Arc<Core>) -> Step {
        let settings = &core.settings;
        let now = Instant::now();
        let (pending, pending_bytes, first_unsent_at, urgent) = {
            let shared = core.lock();
            (
                shared.pending_rows(),
                shared.pending_bytes(),
                shared.first_unsent_at,
                shared.urgent,
            )
        };
        let log_ready =
            pending > 0 && !self.log_archived && self.log_retry_at.is_none_or(|at| now >= at);
        let latency_due = first_unsent_at.map(|at| at + settings.log_report_max_latency);
        let interval_due = self.last_log_send + settings.log_report_interval;
        let batch_full = pending >= settings.log_report_batch_size.max(1) as u64;
        let spacing_due = self.last_log_send + BATCH_SPACING;
        let log_due = log_ready
            && ((batch_full && (now >= spacing_due || pending_bytes >= FULL_REQUEST_BYTES))
                || urgent
                || latency_due.is_some_and(|due| now >= due)
                || now >= interval_due);
        if log_due {
            self.last_log_send = now;
            match send_log(api, core, &mut self.buffers, false).await {
                Ok(_) => {
                    self.log_retry_at = None;
                    self.log_retry.reset();
                }
                Err(Failure::Retry) => {
                    self.log_retry_at = Some(Instant::now() + self.log_retry.wait())
                }
                Err(Failure::LogArchived) => self.log_archived = true,
                Err(Failure::Unauthenticated | Failure::Abandon) => return Step::Abandon,
            }
            self.maybe_persist(core).await;
            return Step::Again;
        }
        let state_ready = self.state_retry_at.is_none_or(|at| now >= at);
        let heartbeat_due = self.last_state_send + settings.state_report_interval;
        if state_ready && (urgent || now >= heartbeat_due) {
            self.last_state_send = now;
            match send_state(api, core, false).await {
                Ok(()) => {
                    self.state_retry_at = None;
                    self.state_retry.reset();
                }
                Err(Failure::Retry | Failure::LogArchived) => {
                    self.state_retry_at = Some(Instant::now() + self.state_retry.wait())
                }
                Err(Failure::Unauthenticated | Failure::Abandon) => return Step::Abandon,
            }
            self.maybe_persist(core).await;
            return Step::Again;
        }
        let mut deadline = match self.state_retry_at {
            // Not ready means a retry is scheduled; an urgent change waits only for it.
            Some(retry_at) if urgent => retry_at,
            Some(retry_at) => retry_at.max(heartbeat_due),
            None => heartbeat_due,
        };
        if pending > 0 && !self.log_archived {
            let mut log_deadline = latency_due.map_or(interval_due, |due| due.min(interval_due));
            if batch_full {
                log_deadline = log_deadline.min(spacing_due);
            }
            if let Some(retry_at) = self.log_retry_at {
                log_deadline = log_deadline.max(retry_at);
            }
            deadline = deadline.min(log_deadline);
        }
        Step::Sleep(deadline)
    }

    async fn maybe_persist(&mut self, core: &Arc<Core>) {
        if self.last_persist.elapsed() >= PERSIST_EVERY {
            self.last_persist = Instant::now();
            persist(core).await;
        }
    }
}

/// The final flush: every row with `no_more`, then the outputs, then the result.
async fn final_flush<A: RunnerApi>(
    api: &Arc<A>,
    core: &Arc<Core>,
    buffers: &mut LogBuffers,
) -> Delivery {
    {
        let mut shared = core.lock();
        if !shared.log_finished && shared.pending_rows() == 0 {
            // Gitea 1.25 ignores `no_more` on a request without rows, which would leave the log
            // unarchived: make sure the last request carries one.
            let row = crate::client::proto::runner::LogRow {
                time: Some(SystemTime::now().into()),
                content: String::new(),
            };
            shared.append(core.task_id, &row);
        }
    }
    persist(core).await;
    let deadline = delivery_deadline(core);
    let mut retry = Retry::new();

    // 1. Logs, ending with `no_more`.
    while !core.lock().log_finished {
        match send_log(api, core, buffers, true).await {
            Ok(true) => {
                core.lock().log_finished = true;
                retry.reset();
            }
            Ok(false) => retry.reset(),
            Err(Failure::LogArchived) => {
                tracing::warn!(
                    task_id = core.task_id,
                    "Gitea archived the log before all rows arrived"
                );
                core.lock().log_finished = true;
            }
            Err(Failure::Unauthenticated | Failure::Abandon) => {
                return remove(core, Delivery::Abandoned);
            }
            Err(Failure::Retry) => {
                if let Some(end) = pause(core, &mut retry, deadline).await {
                    return end;
                }
            }
        }
        persist(core).await;
    }

    // 2. Outputs, acknowledged before the result (an ephemeral runner is gone after the result).
    let mut fruitless = 0;
    while !core.lock().job.unsent_outputs().is_empty() {
        let before = core.lock().job.unsent_outputs().len();
        match send_state(api, core, false).await {
            Ok(()) => {
                retry.reset();
                if core.lock().job.unsent_outputs().len() == before {
                    fruitless += 1;
                    if fruitless >= OUTPUT_ATTEMPTS {
                        tracing::warn!(
                            task_id = core.task_id,
                            "Gitea did not acknowledge some job outputs; giving up on them"
                        );
                        break;
                    }
                }
            }
            Err(Failure::Unauthenticated | Failure::Abandon) => {
                return remove(core, Delivery::Abandoned);
            }
            Err(Failure::Retry | Failure::LogArchived) => {
                if let Some(end) = pause(core, &mut retry, deadline).await {
                    return end;
                }
            }
        }
    }
    persist(core).await;

    // 3. The result, with `stopped_at`.
    let mut attempted = false;
    loop {
        match send_state(api, core, true).await {
            Ok(()) => return remove(core, Delivery::Delivered),
            Err(Failure::Unauthenticated) if attempted && core.settings.ephemeral => {
                // The first attempt arrived and Gitea deleted the ephemeral runner right after.
                return remove(core, Delivery::Delivered);
            }
            Err(Failure::Unauthenticated | Failure::Abandon) => {
                return remove(core, Delivery::Abandoned);
            }
            Err(Failure::Retry | Failure::LogArchived) => {
                attempted = true;
                if let Some(end) = pause(core, &mut retry, deadline).await {
                    return end;
                }
            }
        }
    }
}

/// Waits before a retry; `Some` ends the delivery (exit requested, or the deadline passed).
async fn pause(core: &Arc<Core>, retry: &mut Retry, deadline: Instant) -> Option<Delivery> {
    let wait = retry.wait();
    if Instant::now() + wait > deadline {
        tracing::error!(
            task_id = core.task_id,
            "giving up delivering the task's report: runner.timeout passed"
        );
        return Some(remove(core, Delivery::Abandoned));
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => None,
        _ = core.exit.cancelled() => {
            persist(core).await;
            Some(Delivery::Kept)
        }
    }
}

fn delivery_deadline(core: &Core) -> Instant {
    let until = core.lock().deliver_until;
    let left = until
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

/// Sends one UpdateLog with the rows after the last ack (as many as fit in 1 MiB), copied from
/// the spool as they are encoded there. With `finishing`, the request that reaches the last row
/// carries `no_more`. `Ok(true)` when every row, including a `no_more` request, is acknowledged.
async fn send_log<A: RunnerApi>(
    api: &Arc<A>,
    core: &Arc<Core>,
    buffers: &mut LogBuffers,
    finishing: bool,
) -> Result<bool, Failure> {
    let (reader, from_row, from_byte, end_rows, end_bytes) = {
        let mut shared = core.lock();
        if let Err(error) = shared.spool.flush() {
            tracing::error!(task_id = core.task_id, error = %error, "cannot flush the log spool");
        }
        (
            shared.spool.reader(),
            shared.acked_rows,
            shared.acked_bytes,
            shared.spool.rows(),
            shared.spool.bytes(),
        )
    };
    let read = {
        let reader = Arc::clone(&reader);
        let mut window = std::mem::take(&mut buffers.window);
        tokio::task::spawn_blocking(move || {
            let read = window.read(&reader, from_byte, end_bytes, WINDOW_BYTES);
            (window, read)
        })
        .await
    };
    match read {
        Ok((window, read)) => {
            buffers.window = window;
            if let Err(error) = read {
                tracing::error!(task_id = core.task_id, error = %error, "cannot read the log spool");
                return Err(Failure::Retry);
            }
        }
        Err(error) => {
            tracing::error!(task_id = core.task_id, error = %error, "log spool reader failed");
            return Err(Failure::Retry);
        }
    }
    let mut builder = EncodedUpdateLog::builder(
        &mut buffers.request,
        core.task_id,
        from_row as i64,
        MAX_UPDATE_LOG_BYTES,
    );
    let mut batch_end = from_byte;
    for (row, end) in buffers.window.rows() {
        if !builder.push_row(row) {
            break;
        }
        batch_end = end;
    }
    let n_rows = builder.n_rows() as u64;
    let reaches_end = from_row + n_rows == end_rows;
    let no_more = finishing && reaches_end;
    let request = builder.finish(no_more);
    let started = Instant::now();
    let answer = call(core, Method::UpdateLog, api.update_log(request)).await;
    let outcome = if answer.is_ok() {
        ReportOutcome::Success
    } else {
        ReportOutcome::Error
    };
    core.observer.observe(&DaemonEvent::ReportLog {
        outcome,
        duration: started.elapsed(),
    });
    let ack = match answer {
        Ok(response) => response.ack_index.max(0) as u64,
        Err(error) => return Err(report_failure(core, Method::UpdateLog, &error)),
    };
    let ack_bytes = if ack < from_row {
        // The server has fewer rows than it acknowledged before (restored from a backup?):
        // rewind and resend from its position, the spool still holds every row.
        tracing::warn!(
            task_id = core.task_id,
            ack,
            acked = from_row,
            "Gitea lost log rows; resending"
        );
        seek(&reader, 0, 0, ack, end_bytes).await?
    } else if ack <= from_row + n_rows {
        match (ack - from_row) as usize {
            0 => from_byte,
            n_acked if n_acked as u64 == n_rows => batch_end,
            n_acked => buffers
                .window
                .rows()
                .nth(n_acked - 1)
                .map_or(batch_end, |(_, end)| end),
        }
    } else {
        let ack = ack.min(end_rows);
        seek(&reader, from_row + n_rows, batch_end, ack, end_bytes).await?
    };
    let ack = ack.min(end_rows);
    let mut shared = core.lock();
    shared.acked_rows = ack;
    shared.acked_bytes = ack_bytes;
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

/// Sends one UpdateTask with the whole state and the unacknowledged outputs.
async fn send_state<A: RunnerApi>(
    api: &Arc<A>,
    core: &Arc<Core>,
    with_result: bool,
) -> Result<(), Failure> {
    let request = {
        let mut shared = core.lock();
        shared.urgent = false;
        UpdateTaskRequest {
            state: Some(shared.job.to_proto(with_result)),
            outputs: shared.job.unsent_outputs(),
        }
    };
    let started = Instant::now();
    let answer = call(core, Method::UpdateTask, api.update_task(request)).await;
    let outcome = if answer.is_ok() {
        ReportOutcome::Success
    } else {
        ReportOutcome::Error
    };
    core.observer.observe(&DaemonEvent::ReportState {
        outcome,
        duration: started.elapsed(),
    });
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            core.lock().urgent = true;
            return Err(report_failure(core, Method::UpdateTask, &error));
        }
    };
    let mut shared = core.lock();
    shared.job.mark_sent(&response.sent_outputs);
    let server_result = response.state.map_or(0, |state| state.result);
    if server_result != 0 && !shared.events_done && shared.server_result.is_none() {
        shared.server_result = Some(server_result);
        drop(shared);
        tracing::info!(
            task_id = core.task_id,
            server_result,
            "Gitea ended the task; cancelling the job"
        );
        core.job_cancel.cancel();
    }
    Ok(())
}

/// Runs one report call under `report_close_timeout`.
async fn call<T>(
    core: &Core,
    method: Method,
    future: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(core.settings.report_close_timeout, future).await {
        Ok(answer) => answer,
        Err(_) => Err(ClientError::DeadlineExceeded {
            method,
            url: String::new(),
            timeout: core.settings.report_close_timeout,
        }),
    }
}

fn report_failure(core: &Core, method: Method, error: &ClientError) -> Failure {
    core.observer.observe(&DaemonEvent::ClientError { method });
    let failure = classify(error);
    tracing::warn!(task_id = core.task_id, error = %error, ?failure, "report call failed");
    failure
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
                path: dir.join("log"),
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

async fn wait_events_done(core: &Arc<Core>) {
    loop {
        if core.lock().events_done {
            return;
        }
        tokio::select! {
            _ = core.wake.notified() => {}
            _ = core.exit.cancelled() => return,
        }
    }
}

/// Deletes the spool (delivered or abandoned for good); a `Kept` delivery never comes here.
fn remove(core: &Core, delivery: Delivery) -> Delivery {
    let dir = core.lock().spool.dir().to_path_buf();
    if let Err(error) = std::fs::remove_dir_all(&dir) {
        tracing::error!(task_id = core.task_id, error = %error, "cannot remove the task spool");
    }
    delivery
}
