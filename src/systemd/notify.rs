//! The notify protocol (sd_notify(3)): `READY=1` behind a latch, `STATUS=` kept current,
//! `RELOADING=1` with `MONOTONIC_USEC=`, `STOPPING=1` with `EXTEND_TIMEOUT_USEC=` while the drain
//! runs. The watchdog lives in `watchdog`, on top of the [`Notifier`] defined here.
//!
//! May use: `sd_notify` (message formatting only), std, tokio, tokio-util, tracing.
//! Never: `daemon`, `client`, `executor`, `config`: callers hand in plain numbers and texts.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How far each `EXTEND_TIMEOUT_USEC=` pushes the stop timeout from the moment it is sent.
pub const EXTEND_BY: Duration = Duration::from_secs(30);
/// How often `EXTEND_TIMEOUT_USEC=` is repeated while the drain runs (well inside [`EXTEND_BY`]).
pub const EXTEND_EVERY: Duration = Duration::from_secs(10);
/// Time granted after `runner.shutdown_timeout` for cancelled jobs to report their final state.
pub const REPORT_FLUSH_MARGIN: Duration = Duration::from_secs(30);
/// STATUS texts are cut here: `systemctl status` shows one line.
const STATUS_MAX_CHARS: usize = 200;

/// The service manager's notification socket, captured from `NOTIFY_SOCKET` at start-up.
///
/// Unlike `sd_notify::notify`, which reads the environment on every call, the address is kept
/// here, so the environment can be scrubbed for children and tests can point at their own socket.
pub struct NotifySocket {
    address: SocketAddr,
    shown: OsString,
    socket: UnixDatagram,
}

impl std::fmt::Debug for NotifySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySocket")
            .field("address", &self.shown)
            .finish()
    }
}

impl NotifySocket {
    /// The socket named by `NOTIFY_SOCKET`, or `None` when the variable is unset or empty.
    pub fn from_env() -> io::Result<Option<Self>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(value) if !value.is_empty() => Self::new(&value).map(Some),
            _ => Ok(None),
        }
    }

    /// A socket path; a leading `@` names an abstract socket, as systemd's own parser does.
    pub fn new(path: &OsStr) -> io::Result<Self> {
        let bytes = path.as_bytes();
        let address = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(path)?,
        };
        let socket = UnixDatagram::unbound()?;
        // A full receive queue must never stall the runtime: a lost STATUS is better than a stall.
        socket.set_nonblocking(true)?;
        Ok(Self {
            address,
            shown: path.to_owned(),
            socket,
        })
    }

    /// Sends the states as one datagram of `KEY=value` lines.
    pub fn send(&self, states: &[NotifyState<'_>]) -> io::Result<()> {
        let mut message = String::new();
        for state in states {
            // Writing into a String cannot fail.
            let _ = writeln!(message, "{state}");
        }
        let n_sent = self
            .socket
            .send_to_addr(message.as_bytes(), &self.address)?;
        if n_sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "notify datagram truncated",
            ));
        }
        Ok(())
    }
}

/// What `STATUS=` says; `systemctl status` shows it as the unit's status line.
#[derive(Debug, Clone, Copy)]
pub enum Status<'a> {
    /// Before READY: what start-up waits for ("starting: waiting for Docker").
    Starting(&'a str),
    /// Polling with no job running: `idle 0/4`.
    Idle { capacity: usize },
    /// `running 2/4: owner/repo build, owner/other test`; `jobs` names each running job.
    Running {
        running: usize,
        capacity: usize,
        jobs: &'a [String],
    },
    /// `backoff 10s: <reason>`.
    Backoff { delay: Duration, reason: &'a str },
    /// `draining 2 jobs`.
    Draining { jobs: usize },
}

impl Status<'_> {
    /// The one-line text sent as `STATUS=`: no newline can inject another key.
    pub fn render(&self) -> String {
        let text = match self {
            Status::Starting(what) => format!("starting: {what}"),
            Status::Idle { capacity } => format!("idle 0/{capacity}"),
            Status::Running {
                running,
                capacity,
                jobs: [],
            } => format!("running {running}/{capacity}"),
            Status::Running {
                running,
                capacity,
                jobs,
            } => {
                format!("running {running}/{capacity}: {}", jobs.join(", "))
            }
            Status::Backoff { delay, reason } => {
                format!("backoff {}: {reason}", go_duration(*delay))
            }
            Status::Draining { jobs: 1 } => "draining 1 job".to_owned(),
            Status::Draining { jobs } => format!("draining {jobs} jobs"),
        };
        one_line(&text)
    }
}

/// Replaces control characters (newlines above all) by spaces and cuts the text to one short line.
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() > STATUS_MAX_CHARS {
        line = line.chars().take(STATUS_MAX_CHARS - 1).collect();
        line.push('…');
    }
    line
}

/// `1h2m3s` style, whole seconds (sub-second delays show as milliseconds).
fn go_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 {
        return format!("{}ms", duration.as_millis());
    }
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut text = String::new();
    if hours > 0 {
        let _ = write!(text, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(text, "{minutes}m");
    }
    let _ = write!(text, "{seconds}s");
    text
}

/// Where the service is in its life; the watchdog gates its pings on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before READY; start-up is bounded by the unit's `TimeoutStartSec=`.
    Starting,
    /// READY sent; the poll loop must show progress.
    Running,
    /// Between `RELOADING=1` and the next `READY=1`.
    Reloading,
    /// `STOPPING=1` sent; the drain may run until `deadline`.
    Draining { deadline: Instant },
}

/// Sends lifecycle notifications; a cheap clone shared by the daemon's tasks.
///
/// Every method is a no-op (apart from bookkeeping) when the process was not started with
/// `NOTIFY_SOCKET`. Send failures are logged at debug level and otherwise ignored: a notification
/// is an observation, never a reason to stop running jobs.
#[derive(Clone, Debug)]
pub struct Notifier {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    socket: Option<NotifySocket>,
    /// Never held across an await; every critical section is a few assignments.
    state: Mutex<NotifierState>,
}

#[derive(Debug)]
struct NotifierState {
    phase: Phase,
    status: String,
    ready_sent: bool,
}

/// The five preconditions of `READY=1`. Each latch must be [`released`](ReadyLatch::release)
/// explicitly; dropping one unreleased (an error path) keeps the service not-ready for good.
#[derive(Debug)]
pub struct ReadyLatches {
    /// `config.yaml` parsed and valid.
    pub config: ReadyLatch,
    /// `.runner` loaded.
    pub registration: ReadyLatch,
    /// Docker answered a ping (release at once when no label needs Docker).
    pub docker: ReadyLatch,
    /// `Declare` succeeded.
    pub declared: ReadyLatch,
    /// The metrics listener is held (inherited or bound).
    pub metrics_listener: ReadyLatch,
}

/// One precondition of `READY=1`; see [`ReadyLatches`].
#[derive(Debug)]
#[must_use = "an unreleased latch keeps the service from becoming ready"]
pub struct ReadyLatch {
    pending: Arc<AtomicUsize>,
    notifier: Notifier,
}

impl ReadyLatch {
    /// Marks this precondition as met; the last one released sends `READY=1` with the current STATUS.
    pub fn release(self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.notifier.ready();
        }
    }
}

/// Held while the drain runs: repeats `EXTEND_TIMEOUT_USEC=` until the drain deadline or until
/// dropped (dropping only signals the background task).
#[derive(Debug)]
pub struct DrainNotice {
    notifier: Notifier,
    stop_extending: CancellationToken,
}

impl DrainNotice {
    /// Updates `STATUS=draining N jobs` as jobs finish.
    pub fn jobs_left(&self, n_jobs: usize) {
        self.notifier.status(Status::Draining { jobs: n_jobs });
    }
}

impl Drop for DrainNotice {
    fn drop(&mut self) {
        self.stop_extending.cancel();
    }
}

impl Notifier {
    /// A notifier sending to `socket` (or to nobody), plus the latches that gate `READY=1`.
    pub fn new(socket: Option<NotifySocket>) -> (Self, ReadyLatches) {
        let notifier = Self {
            shared: Arc::new(Shared {
                socket,
                state: Mutex::new(NotifierState {
                    phase: Phase::Starting,
                    status: String::new(),
                    ready_sent: false,
                }),
            }),
        };
        let pending = Arc::new(AtomicUsize::new(5));
        let latch = || ReadyLatch {
            pending: pending.clone(),
            notifier: notifier.clone(),
        };
        let latches = ReadyLatches {
            config: latch(),
            registration: latch(),
            docker: latch(),
            declared: latch(),
            metrics_listener: latch(),
        };
        (notifier, latches)
    }

    /// Whether a service manager listens (`NOTIFY_SOCKET` was set).
    pub fn is_enabled(&self) -> bool {
        self.shared.socket.is_some()
    }

    /// The current phase (for the watchdog and for tests).
    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// Whether `READY=1` has been sent.
    pub fn is_ready(&self) -> bool {
        self.lock().ready_sent
    }

    /// Sets `STATUS=`; an unchanged text is not sent again.
    pub fn status(&self, status: Status<'_>) {
        let text = status.render();
        {
            let mut state = self.lock();
            if state.status == text {
                return;
            }
            state.status.clone_from(&text);
        }
        self.send(&[NotifyState::Status(&text)]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (which `Type=notify-reload` requires), at the start of
    /// a SIGHUP reload. Follow with [`reloaded`](Self::reloaded), whether the new config was taken
    /// or refused.
    pub fn reloading(&self) {
        self.lock().phase = Phase::Reloading;
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(error) => {
                tracing::debug!(%error, "cannot read the monotonic clock for MONOTONIC_USEC");
                self.send(&[NotifyState::Reloading]);
            }
        }
    }

    /// `READY=1` (with the current STATUS) at the end of a reload.
    pub fn reloaded(&self) {
        let status = {
            let mut state = self.lock();
            state.phase = Phase::Running;
            state.status.clone()
        };
        self.send_ready(&status);
    }

    /// `STOPPING=1` and `STATUS=draining N jobs`, then `EXTEND_TIMEOUT_USEC=` every
    /// [`EXTEND_EVERY`] until `shutdown_timeout` plus [`REPORT_FLUSH_MARGIN`] has passed or the
    /// returned notice is dropped. Must be called inside a tokio runtime.
    pub fn drain_started(&self, n_jobs: usize, shutdown_timeout: Duration) -> DrainNotice {
        let deadline = Instant::now() + shutdown_timeout + REPORT_FLUSH_MARGIN;
        self.lock().phase = Phase::Draining { deadline };
        self.send(&[NotifyState::Stopping]);
        self.status(Status::Draining { jobs: n_jobs });
        let stop_extending = CancellationToken::new();
        if self.is_enabled() {
            tokio::spawn(extend_until(self.clone(), deadline, stop_extending.clone()));
        }
        DrainNotice {
            notifier: self.clone(),
            stop_extending,
        }
    }

    /// `WATCHDOG=1`.
    pub fn watchdog_ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// `WATCHDOG=trigger`: asks systemd to apply the watchdog failure action now.
    pub fn watchdog_trigger(&self) {
        self.send(&[NotifyState::WatchdogTrigger]);
    }

    fn ready(&self) {
        let status = {
            let mut state = self.lock();
            if state.ready_sent {
                return;
            }
            state.ready_sent = true;
            if state.phase == Phase::Starting {
                state.phase = Phase::Running;
            }
            state.status.clone()
        };
        self.send_ready(&status);
    }

    fn send_ready(&self, status: &str) {
        if status.is_empty() {
            self.send(&[NotifyState::Ready]);
        } else {
            self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        let Some(socket) = &self.shared.socket else {
            return;
        };
        if let Err(error) = socket.send(states) {
            tracing::debug!(%error, socket = ?socket.shown, "sd_notify message not delivered");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NotifierState> {
        crate::sync::lock(&self.shared.state)
    }
}

async fn extend_until(notifier: Notifier, deadline: Instant, stop: CancellationToken) {
    let extension = u32::try_from(EXTEND_BY.as_micros()).unwrap_or(u32::MAX);
    let mut ticks = tokio::time::interval(EXTEND_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // Past the deadline the unit's own TimeoutStopSec= takes over again.
        if Instant::now() >= deadline {
            return;
        }
        notifier.send(&[NotifyState::ExtendTimeoutUsec(extension)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts_match_the_documented_forms() {
        let jobs = ["owner/repo build".to_owned()];
        assert_eq!(Status::Idle { capacity: 4 }.render(), "idle 0/4");
        assert_eq!(
            Status::Running {
                running: 2,
                capacity: 4,
                jobs: &jobs
            }
            .render(),
            "running 2/4: owner/repo build"
        );
        assert_eq!(
            Status::Backoff {
                delay: Duration::from_secs(10),
                reason: "server unreachable"
            }
            .render(),
            "backoff 10s: server unreachable"
        );
        assert_eq!(Status::Draining { jobs: 2 }.render(), "draining 2 jobs");
        assert_eq!(Status::Draining { jobs: 1 }.render(), "draining 1 job");
    }

    #[test]
    fn status_newlines_cannot_inject_keys() {
        let text = Status::Backoff {
            delay: Duration::from_secs(90),
            reason: "bad\nREADY=1\r\n",
        }
        .render();
        assert_eq!(text, "backoff 1m30s: bad READY=1  ");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn long_status_is_cut_to_one_line() {
        let jobs = vec!["x".repeat(500)];
        let text = Status::Running {
            running: 1,
            capacity: 1,
            jobs: &jobs,
        }
        .render();
        assert_eq!(text.chars().count(), STATUS_MAX_CHARS);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
    }
}
