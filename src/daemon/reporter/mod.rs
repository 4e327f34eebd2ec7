//! Reporter: turns one task's job events into UpdateLog and UpdateTask calls and owns their
//! delivery.
//!
//! Two loops per task share one [`Shared`] state behind a std mutex (never held across `.await`):
//! - *ingest* reads [`JobEvent`]s, updates the [`state::TaskReport`] and appends each log row to the
//!   task's [`spool`](crate::daemon::spool). It never waits on the network, so a step printing fast
//!   is slowed by nothing but the disk.
//! - *delivery* ([`delivery`]) sends rows from the spool as upstream batches them
//!   (`log_report_batch_size` rows, `log_report_max_latency` after the first unsent row, every
//!   `log_report_interval`), each UpdateLog at most 1 MiB so a burst goes in few large calls; step
//!   states at once when a step starts or ends and as a heartbeat every `state_report_interval`;
//!   then the final flush: all rows with `no_more`, the outputs until acknowledged, and only then
//!   the final result (the order ephemeral runners need). Gitea's `ack_index` decides what is
//!   resent; failures are retried with backoff until `runner.timeout` after the job ended.
//!   A CANCELLED or FAILURE result in an UpdateTask answer cancels the job.
//!
//! The spool outlives the process: a restarted daemon hands each leftover spool to
//! [`deliver_recovered`] before it asks for new work.
//! May use: `client`, `executor::event`, `daemon::spool`, `daemon::observe`. Never: `metrics`,
//! `systemd`.

mod delivery;
mod persist;
mod retry;
mod send_log;
pub mod state;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::RunnerApi;
use crate::client::proto::runner::LogRow;
use crate::daemon::job_log::{JobLog, JobLogSettings};
use crate::daemon::observe::Observer;
use crate::daemon::spool::{SpoolError, SpoolRecord, SpoolRoot, TaskSpool};
use crate::executor::event::{Conclusion, JobEvent, LogCheckpoint, LogLines};
use state::TaskReport;

/// Gitea's cap is not documented; 1 MiB keeps each `log_indexes` rewrite and request bounded.
pub const MAX_UPDATE_LOG_BYTES: usize = 1024 * 1024;

/// How many job events the executor may get ahead of the spool. Log lines travel in batches (one
/// per read of the step's output, at most a frame plus one long line), so this also bounds memory.
pub const EVENT_CHANNEL_CAPACITY: usize = 64;

/// Reporting cadence and bounds (from `runner.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterSettings {
    pub log_report_interval: Duration,
    pub log_report_max_latency: Duration,
    pub log_report_batch_size: usize,
    pub state_report_interval: Duration,
    /// Bound of each UpdateLog / UpdateTask call.
    pub report_close_timeout: Duration,
    /// How long undelivered logs and state are retried after the job ended (`runner.timeout`).
    pub delivery_timeout: Duration,
    /// An ephemeral runner is deleted by its final UpdateTask, so an "unauthenticated" answer to
    /// a retry of it means the first attempt arrived.
    pub ephemeral: bool,
    /// `log.job.*`: where the local copy of the task's rows goes; `None` writes none.
    pub job_log: Option<JobLogSettings>,
}

/// How a task's delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Gitea acknowledged every row, the outputs and the final state; the spool is gone.
    Delivered,
    /// The daemon is exiting (or the deadline passed while it was); the spool stays for the next start.
    Kept,
    /// Gitea refused the task for good (unknown task, runner removed); the spool is gone.
    Abandoned,
}

/// What [`Reporter::finish`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The job's final result (`None` only if it could not be decided).
    pub result: Option<Conclusion>,
    pub delivery: Delivery,
}

/// A running task's reporter.
pub struct Reporter {
    events: Option<mpsc::Sender<JobEvent>>,
    ingest: JoinHandle<()>,
    delivery: JoinHandle<Delivery>,
    core: Arc<Core>,
}

/// State shared by ingest and delivery.
struct Shared {
    job: TaskReport,
    spool: TaskSpool,
    acked_rows: u64,
    acked_bytes: u64,
    /// The most rows Gitea can hold: those sent in this run, or for a recovered spool every row
    /// it holds (the run before may have sent them all). An `ack_index` beyond it is a lie.
    sent_rows: u64,
    /// An `ack_index` beyond `sent_rows` was logged (once per task: a lying server lies often).
    warned_ack_beyond_sent: bool,
    log_finished: bool,
    /// When the oldest row not yet sent arrived (drives `log_report_max_latency`).
    first_unsent_at: Option<Instant>,
    /// A step started or ended, the job ended or outputs arrived: report state soon.
    urgent: bool,
    /// No more events will come; the job state is final.
    events_done: bool,
    /// A final result Gitea answered while the job ran (user cancel, zombie reaper).
    server_result: Option<i32>,
    deliver_until: SystemTime,
    warned_spool_error: bool,
    /// Checkpoints the job waits on before its clean-up, each with the number of rows spooled
    /// before it: let go once Gitea acknowledged those rows.
    checkpoints: Vec<(u64, LogCheckpoint)>,
    /// Delivery stopped for this run (the log archived, delivery abandoned, the daemon exiting):
    /// checkpoints are let go at once, nothing would release them.
    delivery_stopped: bool,
    /// The local copy of every row spooled (`log.job.*`); a recovered spool has none.
    job_log: Option<JobLog>,
}

/// What both loops need.
struct Core {
    task_id: i64,
    shared: Mutex<Shared>,
    wake: Notify,
    settings: ReporterSettings,
    observer: Arc<dyn Observer>,
    job_cancel: CancellationToken,
    exit: CancellationToken,
}

impl Reporter {
    /// Creates the task's spool and starts both loops. `job_cancel` is cancelled when Gitea ends
    /// the task; `exit` stops delivery and keeps the spool (daemon exit).
    pub fn start<A: RunnerApi + 'static>(
        api: Arc<A>,
        spool_root: &SpoolRoot,
        task_id: i64,
        settings: ReporterSettings,
        job_cancel: CancellationToken,
        exit: CancellationToken,
        observer: Arc<dyn Observer>,
    ) -> Result<Reporter, SpoolError> {
        let deliver_until = SystemTime::now() + settings.delivery_timeout.saturating_mul(2);
        let record = SpoolRecord {
            job: TaskReport::new(task_id),
            acked_rows: 0,
            acked_bytes: 0,
            log_finished: false,
            deliver_until,
        };
        let spool = spool_root.create(&record)?;
        let job_log = settings
            .job_log
            .as_ref()
            .and_then(|job_log| JobLog::open(job_log, task_id, SystemTime::now()));
        let core = Arc::new(Core::new(
            record, spool, settings, observer, job_cancel, exit,
        ));
        core.lock().job_log = job_log;
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let ingest = tokio::spawn(ingest(Arc::clone(&core), events_rx));
        let delivery = tokio::spawn(delivery::run(api, Arc::clone(&core)));
        Ok(Reporter {
            events: Some(events_tx),
            ingest,
            delivery,
            core,
        })
    }

    /// A sender for the executor (and for the daemon's own job-level lines).
    pub fn events(&self) -> mpsc::Sender<JobEvent> {
        self.events
            .clone()
            .expect("the sender is only taken by finish, which consumes the reporter")
    }

    /// Ends ingestion once every other sender is dropped, then waits for delivery to finish
    /// (bounded by the delivery deadline and by the `exit` token).
    pub async fn finish(mut self) -> Finished {
        drop(self.events.take());
        if let Err(error) = self.ingest.await {
            tracing::error!(task_id = self.core.task_id, error = %error, "report ingest failed");
            self.core.mark_done_after_failure();
        }
        let delivery = match self.delivery.await {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::error!(task_id = self.core.task_id, error = %error, "report delivery failed");
                Delivery::Kept
            }
        };
        let (result, job_log) = {
            let mut shared = self.core.lock();
            (
                state::conclusion_of(shared.job.result),
                shared.job_log.take(),
            )
        };
        if let Some(job_log) = job_log {
            job_log.finish(&trailer(self.core.task_id, result, delivery));
        }
        Finished { result, delivery }
    }
}

/// The local job log's last line.
fn trailer(task_id: i64, result: Option<Conclusion>, delivery: Delivery) -> String {
    let result = result.map_or("unknown", crate::executor::conclusion_name);
    let delivery = match delivery {
        Delivery::Delivered => "",
        Delivery::Kept => ", not delivered to Gitea yet (kept in the spool for the next start)",
        Delivery::Abandoned => ", Gitea refused the task's report",
    };
    format!("task {task_id} finished: {result}{delivery}")
}

/// Delivers a spool left by an earlier run (crash or exit during an outage). A task that never
/// finished is closed as failed, with a last row saying why.
pub async fn deliver_recovered<A: RunnerApi + 'static>(
    api: Arc<A>,
    spool: TaskSpool,
    mut record: SpoolRecord,
    settings: ReporterSettings,
    exit: CancellationToken,
    observer: Arc<dyn Observer>,
) -> Delivery {
    let task_id = record.job.task_id;
    let unfinished = !record.job.is_finished();
    if unfinished {
        let now = SystemTime::now();
        record.job.finish(Conclusion::Failure, now);
        record.deliver_until = now + settings.delivery_timeout;
    }
    let core = Arc::new(Core::new(
        record,
        spool,
        settings,
        observer,
        CancellationToken::new(),
        exit,
    ));
    if unfinished {
        tracing::warn!(
            task_id,
            "the runner stopped while this task ran; reporting it as failed"
        );
        core.append_row(
            &mut core.lock(),
            "The runner stopped while this job was running; the job was lost.",
        );
    }
    core.lock().events_done = true;
    delivery::run(api, core).await
}

impl Core {
    fn new(
        record: SpoolRecord,
        spool: TaskSpool,
        settings: ReporterSettings,
        observer: Arc<dyn Observer>,
        job_cancel: CancellationToken,
        exit: CancellationToken,
    ) -> Core {
        let pending = spool.rows() > record.acked_rows;
        let spool_rows = spool.rows();
        let urgent = record.log_finished || pending || record.job.is_finished();
        Core {
            task_id: record.job.task_id,
            shared: Mutex::new(Shared {
                job: record.job,
                spool,
                acked_rows: record.acked_rows,
                acked_bytes: record.acked_bytes,
                sent_rows: spool_rows,
                warned_ack_beyond_sent: false,
                log_finished: record.log_finished,
                first_unsent_at: pending.then(Instant::now),
                // A recovered task has something to say at once; a new one waits for its events.
                urgent,
                events_done: false,
                server_result: None,
                deliver_until: record.deliver_until,
                warned_spool_error: false,
                checkpoints: Vec::new(),
                delivery_stopped: false,
                job_log: None,
            }),
            wake: Notify::new(),
            settings,
            observer,
            job_cancel,
            exit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        crate::sync::lock(&self.shared)
    }

    /// Appends a row the daemon writes itself (not from the executor).
    fn append_row(&self, shared: &mut Shared, content: &str) {
        let row = LogRow {
            time: Some(SystemTime::now().into()),
            content: content.to_string(),
        };
        shared.append(self.task_id, &row);
    }

    /// Closes a job whose events ended without `JobFinished` (executor crash, channel closed).
    fn close_without_result(&self, shared: &mut Shared) {
        if shared.job.is_finished() {
            return;
        }
        let (result, last_words) = match shared.server_result.and_then(state::conclusion_of) {
            Some(result) => (result, "Ended by the server"),
            None if self.job_cancel.is_cancelled() => (Conclusion::Cancelled, "Cancelled"),
            None => (Conclusion::Failure, "Early termination"),
        };
        self.append_row(shared, last_words);
        shared.job.finish(result, SystemTime::now());
    }

    fn mark_done_after_failure(&self) {
        let mut shared = self.lock();
        self.close_without_result(&mut shared);
        shared.events_done = true;
        drop(shared);
        self.wake.notify_one();
    }
}

impl Shared {
    fn pending_rows(&self) -> u64 {
        self.spool.rows() - self.acked_rows
    }

    fn pending_bytes(&self) -> u64 {
        self.spool.bytes() - self.acked_bytes
    }

    /// Lets go of the checkpoints whose rows are all acknowledged (all of them once delivery
    /// stopped).
    fn release_checkpoints(&mut self) {
        if self.delivery_stopped {
            self.checkpoints.clear();
        } else {
            let acked = self.acked_rows;
            self.checkpoints.retain(|(rows, _)| *rows > acked);
        }
    }

    /// Delivery stopped for this run: nothing is waited for any more.
    fn stop_delivery(&mut self) {
        self.delivery_stopped = true;
        self.checkpoints.clear();
    }

    fn append(&mut self, task_id: i64, row: &LogRow) {
        if let Some(job_log) = &mut self.job_log {
            let at = row.time.and_then(|time| SystemTime::try_from(time).ok());
            job_log.row(at.unwrap_or_else(SystemTime::now), &row.content);
        }
        let appended = self.spool.append(row);
        self.appended(task_id, appended);
    }

    /// Spools each line as a row stamped `log.at`.
    fn append_lines(&mut self, task_id: i64, log: &LogLines) {
        let text = log.lines.text();
        if let Some(job_log) = &mut self.job_log {
            for (start, end) in log.lines.spans() {
                job_log.row(log.at, state::row_content(&text[start..end]));
            }
        }
        let appended = self.spool.append_lines(
            log.at,
            text,
            log.lines
                .spans()
                .map(|(start, end)| (start, start + state::row_content(&text[start..end]).len())),
        );
        self.appended(task_id, appended);
    }

    fn appended(&mut self, task_id: i64, appended: Result<(), SpoolError>) {
        match appended {
            Ok(()) => {
                self.first_unsent_at.get_or_insert_with(Instant::now);
            }
            Err(error) => {
                if !self.warned_spool_error {
                    self.warned_spool_error = true;
                    tracing::error!(task_id, error = %error, "cannot spool log rows; they are lost");
                }
            }
        }
    }

    fn record(&self) -> SpoolRecord {
        SpoolRecord {
            job: self.job.clone(),
            acked_rows: self.acked_rows,
            acked_bytes: self.acked_bytes,
            log_finished: self.log_finished,
            deliver_until: self.deliver_until,
        }
    }
}

/// Reads events, spooling rows and updating the state, until `JobFinished` (what comes after it,
/// until every sender is gone, is dropped) or until the senders are gone without one.
async fn ingest(core: Arc<Core>, mut events: mpsc::Receiver<JobEvent>) {
    let batch_size = core.settings.log_report_batch_size.max(1) as u64;
    let mut received = Vec::with_capacity(256);
    while events.recv_many(&mut received, 256).await > 0 {
        let mut shared = core.lock();
        if shared.events_done {
            // `JobFinished` came: the job's containers are being removed, and nothing sent
            // now belongs to its report.
            received.clear();
            continue;
        }
        let had_pending = shared.pending_rows() > 0;
        let mut urgent = false;
        for event in received.drain(..) {
            if shared.events_done {
                continue;
            }
            if let JobEvent::LogCheckpoint(checkpoint) = event {
                let rows = shared.spool.rows();
                shared.checkpoints.push((rows, checkpoint));
                urgent = true;
                continue;
            }
            let finished = matches!(event, JobEvent::JobFinished { .. });
            let next_row = shared.spool.rows();
            let applied = shared.job.apply(event, next_row);
            if let Some(log) = applied.log {
                shared.append_lines(core.task_id, &log);
            }
            urgent |= applied.urgent;
            if finished {
                shared.deliver_until = SystemTime::now() + core.settings.delivery_timeout;
                // The final flush starts now, while the executor removes the job's containers.
                shared.events_done = true;
            }
        }
        shared.urgent |= urgent;
        shared.release_checkpoints();
        // Hand the rows to the kernel at once: a `kill -9` of the daemon then loses nothing that
        // left the channel (one write per batch of events, not per row).
        if let Some(job_log) = &mut shared.job_log {
            job_log.flush();
        }
        if let Err(error) = shared.spool.flush()
            && !shared.warned_spool_error
        {
            shared.warned_spool_error = true;
            tracing::error!(task_id = core.task_id, error = %error, "cannot write the log spool");
        }
        let pending = shared.pending_rows();
        drop(shared);
        if urgent || (pending > 0 && !had_pending) || pending >= batch_size {
            core.wake.notify_one();
        }
    }
    let mut shared = core.lock();
    if !shared.events_done {
        core.close_without_result(&mut shared);
        shared.events_done = true;
        shared.urgent = true;
    }
    drop(shared);
    core.wake.notify_one();
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
