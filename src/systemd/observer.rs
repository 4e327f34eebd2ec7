//! The bridge from the daemon's events to systemd: `impl Observer for StatusBoard`, so STATUS and
//! the watchdog's poll progress follow the daemon without the daemon importing this room, and
//! [`RunningJobs`], which feeds the logind inhibitor.
//!
//! May use: `daemon::observe` (the event vocabulary only), `super`.

use std::sync::Arc;

use tokio::sync::watch;

use crate::daemon::observe::{DaemonEvent, FetchOutcome, Observer};

use super::StatusBoard;

/// Publishes the running jobs' descriptions, as the [`StatusBoard`] tracks them, whenever a job
/// starts or ends, for [`super::dbus::ShutdownInhibitor::follow`]. An observer cannot await, so
/// the inhibitor's D-Bus calls happen on the receiving side. Register it after the board.
#[derive(Debug)]
pub struct RunningJobs {
    board: Arc<StatusBoard>,
    sender: watch::Sender<Vec<String>>,
}

impl RunningJobs {
    pub fn new(board: Arc<StatusBoard>) -> (RunningJobs, watch::Receiver<Vec<String>>) {
        let (sender, receiver) = watch::channel(Vec::new());
        (RunningJobs { board, sender }, receiver)
    }
}

impl Observer for RunningJobs {
    fn observe(&self, event: &DaemonEvent) {
        if matches!(
            event,
            DaemonEvent::JobStarted { .. } | DaemonEvent::JobFinished { .. }
        ) {
            self.sender.send_replace(self.board.running_jobs());
        }
    }
}

impl Observer for StatusBoard {
    fn observe(&self, event: &DaemonEvent) {
        match event {
            DaemonEvent::PollProgress => self.poll_progress(),
            DaemonEvent::Fetch {
                outcome: FetchOutcome::Error,
                ..
            } => self.fetch_failed("cannot reach Gitea"),
            DaemonEvent::Fetch { .. } => self.fetch_succeeded(),
            DaemonEvent::Backoff { interval } => self.poll_interval(*interval),
            DaemonEvent::JobStarted {
                task_id,
                repository,
                job,
                running,
                capacity,
            } => self.job_started(*task_id, repository, job, *running, *capacity),
            DaemonEvent::JobFinished {
                task_id,
                running,
                capacity,
                ..
            } => self.job_finished(*task_id, *running, *capacity),
            DaemonEvent::Draining { .. } => self.draining(),
            // The poller backs off while the health check fails: STATUS says why.
            DaemonEvent::Availability {
                unavailable: Some(reason),
            } => self.fetch_failed(reason),
            DaemonEvent::Availability { unavailable: None } => self.fetch_succeeded(),
            DaemonEvent::ClientError { .. }
            | DaemonEvent::ReportLog { .. }
            | DaemonEvent::ReportState { .. }
            | DaemonEvent::LogBufferRows { .. }
            | DaemonEvent::SpoolBytes { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::systemd::{Notifier, NotifySocket, Progress};

    #[test]
    fn running_jobs_follow_job_starts_and_ends() {
        let (notifier, _latches) = Notifier::new(None);
        let board = Arc::new(StatusBoard::new(notifier, Progress::new(), 2));
        let (running_jobs, receiver) = RunningJobs::new(Arc::clone(&board));
        let observers: [&dyn Observer; 2] = [board.as_ref(), &running_jobs];
        let started = |task_id: i64, job: &str, running: usize| DaemonEvent::JobStarted {
            task_id,
            repository: "o/r".into(),
            job: job.into(),
            running,
            capacity: 2,
        };
        let finished = |task_id: i64, running: usize| DaemonEvent::JobFinished {
            task_id,
            result: None,
            duration: Duration::from_secs(1),
            running,
            capacity: 2,
        };
        let mut seen = Vec::new();
        for event in [
            started(1, "build", 1),
            DaemonEvent::PollProgress,
            started(2, "test", 2),
            finished(1, 1),
            finished(2, 0),
        ] {
            for observer in observers {
                observer.observe(&event);
            }
            seen.push(receiver.borrow().clone());
        }
        assert_eq!(
            seen,
            [
                vec!["o/r build"],
                vec!["o/r build"],
                vec!["o/r build", "o/r test"],
                vec!["o/r test"],
                vec![],
            ]
        );
    }

    #[test]
    fn daemon_events_drive_the_status_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (notifier, _latches) =
            Notifier::new(Some(NotifySocket::new(path.as_os_str()).unwrap()));
        let board = StatusBoard::new(notifier, Progress::new(), 2);
        let events = [
            DaemonEvent::Backoff {
                interval: Duration::from_secs(4),
            },
            DaemonEvent::Fetch {
                outcome: FetchOutcome::Error,
                duration: None,
            },
            DaemonEvent::Fetch {
                outcome: FetchOutcome::Task,
                duration: Some(Duration::from_millis(3)),
            },
            DaemonEvent::JobStarted {
                task_id: 7,
                repository: "o/r".into(),
                job: "build".into(),
                running: 1,
                capacity: 2,
            },
            DaemonEvent::Draining { running: 1 },
        ];
        for event in &events {
            board.observe(event);
        }
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        for _ in 0..5 {
            let n = receiver.recv(&mut buf).unwrap();
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            seen,
            [
                "STATUS=idle 0/2\n",
                "STATUS=backoff 4s: cannot reach Gitea\n",
                "STATUS=idle 0/2\n",
                "STATUS=running 1/2: o/r build\n",
                "STATUS=draining 1 job\n",
            ]
        );
    }
}
