//! The bridge from the daemon's events to the metrics: `impl Observer for Metrics`.
//!
//! The daemon announces what happened as `daemon::observe::DaemonEvent`s and never imports this
//! room; `cli::daemon` hands a `Metrics` to the daemon as one of its observers. May use:
//! `daemon::observe` (the event vocabulary only), `super`.

use crate::daemon::observe::{self, DaemonEvent, Observer};

use super::{FetchOutcome, JobOutcome, Metrics, ReportResult};

impl Observer for Metrics {
    fn observe(&self, event: &DaemonEvent) {
        match event {
            DaemonEvent::Fetch { outcome, duration } => {
                let outcome = match outcome {
                    observe::FetchOutcome::Task => FetchOutcome::Task,
                    observe::FetchOutcome::Empty => FetchOutcome::Empty,
                    observe::FetchOutcome::Error => FetchOutcome::Error,
                };
                self.fetch_observed(outcome, *duration);
            }
            DaemonEvent::ClientError { method } => self.client_error(*method),
            DaemonEvent::Backoff { interval } => self.backoff_changed(*interval),
            DaemonEvent::PollProgress => {}
            DaemonEvent::JobStarted { .. } => self.job_started(),
            DaemonEvent::JobFinished {
                result, duration, ..
            } => {
                let status = result.map_or(JobOutcome::Unknown, JobOutcome::from);
                self.job_finished(status, *duration);
            }
            DaemonEvent::ReportLog { outcome, duration } => {
                self.report_log(report_result(*outcome), *duration);
            }
            DaemonEvent::ReportState { outcome, duration } => {
                self.report_state(report_result(*outcome), *duration);
            }
            DaemonEvent::LogBufferRows { rows } => {
                self.log_buffer_rows(usize::try_from(*rows).unwrap_or(usize::MAX));
            }
            DaemonEvent::SpoolBytes { bytes } => self.log_spool_bytes(*bytes),
            DaemonEvent::Draining { .. } => self.set_draining(true),
            DaemonEvent::Availability { unavailable } => {
                self.readiness().set_unavailable(unavailable.clone());
            }
        }
    }
}

fn report_result(outcome: observe::ReportOutcome) -> ReportResult {
    match outcome {
        observe::ReportOutcome::Success => ReportResult::Success,
        observe::ReportOutcome::Error => ReportResult::Error,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client::Method;
    use crate::executor::event::Conclusion;
    use crate::metrics::RunnerInfo;

    #[test]
    fn events_move_their_families() {
        let metrics = Metrics::new(RunnerInfo {
            name: "runner-1".into(),
            capacity: 2,
            readiness_grace: Duration::from_secs(30),
        });
        let events = [
            DaemonEvent::Fetch {
                outcome: observe::FetchOutcome::Error,
                duration: Some(Duration::from_millis(3)),
            },
            DaemonEvent::ClientError {
                method: Method::FetchTask,
            },
            DaemonEvent::Backoff {
                interval: Duration::from_secs(4),
            },
            DaemonEvent::JobStarted {
                task_id: 7,
                repository: "owner/repo".into(),
                job: "build".into(),
                running: 1,
                capacity: 2,
            },
            DaemonEvent::JobFinished {
                task_id: 7,
                result: None,
                duration: Duration::from_secs(2),
                running: 0,
                capacity: 2,
            },
            DaemonEvent::JobFinished {
                task_id: 8,
                result: Some(Conclusion::Cancelled),
                duration: Duration::from_secs(2),
                running: 0,
                capacity: 2,
            },
            DaemonEvent::ReportLog {
                outcome: observe::ReportOutcome::Error,
                duration: Duration::from_millis(20),
            },
            DaemonEvent::LogBufferRows { rows: 12 },
            DaemonEvent::Draining { running: 0 },
        ];
        for event in &events {
            metrics.observe(event);
        }
        let text = metrics.render().unwrap();
        for line in [
            r#"act_runner_poll_fetch_total{result="error"} 1"#,
            r#"act_runner_client_errors_total{method="FetchTask"} 1"#,
            "act_runner_poll_backoff_seconds 4",
            r#"act_runner_job_total{status="unknown"} 1"#,
            r#"act_runner_job_total{status="cancelled"} 1"#,
            r#"act_runner_report_log_total{result="error"} 1"#,
            "act_runner_report_log_buffer_rows 12",
            "act_runner_draining 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}`");
        }
        // The task id, repository and job name never become labels.
        assert!(!text.contains("owner/repo") && !text.contains("build"));
    }
}
