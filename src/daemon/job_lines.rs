//! The daemon's own lines in a task's log: upstream's set-up block before any step, a single
//! line, and the refusal of a task that cannot run (an error line and a failed end).
//! May use: `executor::event`, `daemon::execution`'s configuration.

use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::daemon::execution::ExecutionConfig;
use crate::daemon::task::TaskSummary;
use crate::executor::event::{Conclusion, JobEvent, LogLines};

/// Upstream's set-up lines, before any step.
pub(super) async fn setup_lines(
    events: &mpsc::Sender<JobEvent>,
    snapshot: &ExecutionConfig,
    summary: &TaskSummary,
) {
    let mut lines = vec![
        format!("{}(version:{})", snapshot.runner.name, crate::VERSION),
        "::group::Runner Information".to_string(),
    ];
    if !snapshot.labels.is_empty() {
        let names: Vec<&str> = snapshot
            .labels
            .iter()
            .map(|label| label.name.as_str())
            .collect();
        lines.push(format!("Runner labels: {}", names.join(", ")));
    }
    lines.push(format!("Task: {}", summary.task_id));
    lines.push(format!("Job: {}", summary.job_id));
    lines.push(format!("Repository: {}", summary.repository));
    lines.push(format!("Triggered by event: {}", summary.event_name));
    lines.push("::endgroup::".to_string());
    lines.push("::group::Operating System".to_string());
    if let Ok(os_release) = std::fs::read_to_string("/etc/os-release")
        && let Some(pretty) = os_release
            .lines()
            .find_map(|line| line.strip_prefix("PRETTY_NAME="))
    {
        lines.push(pretty.trim_matches('"').to_string());
    }
    lines.push(format!(
        "{}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    ));
    lines.push("::endgroup::".to_string());
    for line in lines {
        send_line(events, &line).await;
    }
}

pub(super) async fn send_line(events: &mpsc::Sender<JobEvent>, content: &str) {
    let _ = events
        .send(JobEvent::Log(LogLines::one(
            SystemTime::now(),
            None,
            content,
        )))
        .await;
}

pub(super) async fn refuse(events: &mpsc::Sender<JobEvent>, reason: &str) {
    send_line(events, &format!("::error::{reason}")).await;
    let _ = events
        .send(JobEvent::JobFinished {
            at: SystemTime::now(),
            result: Conclusion::Failure,
        })
        .await;
}
