//! The delivery loop of one task: live reporting while the job runs, then the final flush.
//! See the reporter's module doc for the cadence and the order; this file holds the loop and the
//! UpdateTask calls, `send_log` one UpdateLog call and its ack bookkeeping, `persist` the spool
//! record's writes, `retry` what a failure means.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::persist::Persister;
use super::retry::{Failure, Retry, classify};
use super::send_log::{LogBuffers, send_log};
use super::{Core, Delivery, MAX_UPDATE_LOG_BYTES};
use crate::client::proto::runner::UpdateTaskRequest;
use crate::client::{ClientError, Method, RunnerApi};
use crate::daemon::observe::{DaemonEvent, ReportOutcome};

/// While rows keep coming, batch-triggered sends are spaced by this unless a full request is
/// ready: Gitea rewrites the task's whole log index on every UpdateLog, so a burst must go in few
/// large calls rather than one call per `log_report_batch_size` rows.
const BATCH_SPACING: Duration = Duration::from_secs(1);
/// Pending spool bytes that make a request worth sending at once.
const FULL_REQUEST_BYTES: u64 = (MAX_UPDATE_LOG_BYTES as u64) * 9 / 10;
/// Successful UpdateTask answers that still leave outputs unacknowledged before we stop trying
/// (the server dropped them, e.g. as too long).
const OUTPUT_ATTEMPTS: u32 = 3;

/// Runs the live phase until the events end, then the final flush.
pub(super) async fn run<A: RunnerApi>(api: Arc<A>, core: Arc<Core>) -> Delivery {
    let mut live = Live::new();
    loop {
        if core.exit.is_cancelled() {
            core.lock().stop_delivery();
            live.persister.settle(&core).await;
            return Delivery::Kept;
        }
        if core.lock().events_done {
            break;
        }
        match live.step(&api, &core).await {
            Step::Again => continue,
            Step::Abandon => {
                core.lock().stop_delivery();
                core.job_cancel.cancel();
                // Keep reading events so the executor is never blocked, but send nothing more.
                wait_events_done(&core).await;
                return remove(&core, &mut live.persister, Delivery::Abandoned).await;
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
    final_flush(&api, &core, &mut live.buffers, &mut live.persister).await
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
    log_retry_at: Option<Instant>,
    state_retry_at: Option<Instant>,
    log_retry: Retry,
    state_retry: Retry,
    log_archived: bool,
    buffers: LogBuffers,
    persister: Persister,
}

impl Live {
    fn new() -> Live {
        let now = Instant::now();
        Live {
            last_log_send: now,
            last_state_send: now,
            log_retry_at: None,
            state_retry_at: None,
            log_retry: Retry::new(),
            state_retry: Retry::new(),
            log_archived: false,
            buffers: LogBuffers::default(),
            persister: Persister::new(),
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
                Err(Failure::LogArchived) => {
                    self.log_archived = true;
                    core.lock().stop_delivery();
                }
                Err(Failure::Unauthenticated | Failure::Abandon) => return Step::Abandon,
            }
            self.persister.start_when_due(core);
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
            self.persister.start_when_due(core);
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
}

/// The final flush: every row with `no_more`, then the outputs, then the result.
async fn final_flush<A: RunnerApi>(
    api: &Arc<A>,
    core: &Arc<Core>,
    buffers: &mut LogBuffers,
    persister: &mut Persister,
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
    // The finished job's state is on disk before its last rows go: a crash from here on is
    // recovered as this result, not as a job lost mid-run.
    persister.settle(core).await;
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
                return remove(core, persister, Delivery::Abandoned).await;
            }
            Err(Failure::Retry) => {
                if let Some(end) = pause(core, persister, &mut retry, deadline).await {
                    return end;
                }
            }
        }
        persister.start_when_due(core);
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
                return remove(core, persister, Delivery::Abandoned).await;
            }
            Err(Failure::Retry | Failure::LogArchived) => {
                if let Some(end) = pause(core, persister, &mut retry, deadline).await {
                    return end;
                }
            }
        }
    }
    persister.start(core);

    // 3. The result, with `stopped_at`.
    let mut attempted = false;
    loop {
        match send_state(api, core, true).await {
            Ok(()) => return remove(core, persister, Delivery::Delivered).await,
            Err(Failure::Unauthenticated) if attempted && core.settings.ephemeral => {
                // The first attempt arrived and Gitea deleted the ephemeral runner right after.
                return remove(core, persister, Delivery::Delivered).await;
            }
            Err(Failure::Unauthenticated | Failure::Abandon) => {
                return remove(core, persister, Delivery::Abandoned).await;
            }
            Err(Failure::Retry | Failure::LogArchived) => {
                attempted = true;
                if let Some(end) = pause(core, persister, &mut retry, deadline).await {
                    return end;
                }
            }
        }
    }
}

/// Waits before a retry; `Some` ends the delivery (exit requested, or the deadline passed).
async fn pause(
    core: &Arc<Core>,
    persister: &mut Persister,
    retry: &mut Retry,
    deadline: Instant,
) -> Option<Delivery> {
    let wait = retry.wait();
    if Instant::now() + wait > deadline {
        tracing::error!(
            task_id = core.task_id,
            "giving up delivering the task's report: runner.timeout passed"
        );
        return Some(remove(core, persister, Delivery::Abandoned).await);
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => None,
        _ = core.exit.cancelled() => {
            persister.settle(core).await;
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
pub(super) async fn call<T>(
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

pub(super) fn report_failure(core: &Core, method: Method, error: &ClientError) -> Failure {
    core.observer.observe(&DaemonEvent::ClientError { method });
    let failure = classify(error);
    tracing::warn!(task_id = core.task_id, error = %error, ?failure, "report call failed");
    failure
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
async fn remove(core: &Core, persister: &mut Persister, delivery: Delivery) -> Delivery {
    // A persist still running would write into the removed directory.
    persister.finish(core).await;
    let dir = core.lock().spool.dir().to_path_buf();
    if let Err(error) = std::fs::remove_dir_all(&dir) {
        tracing::error!(task_id = core.task_id, error = %error, "cannot remove the task spool");
    }
    delivery
}
