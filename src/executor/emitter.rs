//! The job's event emitter: every event a job sends goes through it, its log lines masked first,
//! its step indices shifted when the job is one of a called workflow's.
//!
//! A called workflow's steps also get their names and results as log rows (a `::group::` per
//! step): Gitea names a task's steps from its payload's `steps:` only, and a job that `uses:` a
//! workflow has none, so those rows are all its log can show of them.

use std::time::SystemTime;

use tokio::sync::mpsc;

use super::event::{JobEvent, LogLines};
use super::line_batch::LineBatch;
use super::masking::Masker;
use super::spec::conclusion_mark;
use super::summary::Summaries;

/// Sends events, masking log lines first. Sending never fails the job: a gone receiver only
/// means nobody listens any more.
pub struct Emitter {
    events: mpsc::Sender<JobEvent>,
    pub masker: Masker,
    /// Set while a called workflow's job runs: where its steps stand in the caller's one log.
    pub call: Option<CalledSteps>,
    /// The steps' `GITHUB_STEP_SUMMARY` texts, by the step index the job's log uses (offset
    /// included), so a called workflow's jobs add theirs where its steps stand.
    pub summaries: Summaries,
}

impl Emitter {
    pub fn new(events: mpsc::Sender<JobEvent>, masker: Masker) -> Emitter {
        Emitter {
            events,
            masker,
            call: None,
            summaries: Summaries::default(),
        }
    }

    pub async fn send(&self, mut event: JobEvent) {
        let Some(call) = &self.call else {
            let _ = self.events.send(event).await;
            return;
        };
        match &mut event {
            JobEvent::StepStarted { step_idx, .. } => {
                let local_idx = *step_idx;
                *step_idx += call.offset;
                let step_idx = *step_idx;
                let _ = self.events.send(event).await;
                let title = format!("::group::{}", call.name(local_idx));
                self.send_row(step_idx, LineBatch::one(title)).await;
            }
            JobEvent::StepFinished {
                step_idx,
                conclusion,
                ..
            } => {
                let name = call.name(*step_idx);
                *step_idx += call.offset;
                let mut rows = LineBatch::one("::endgroup::");
                rows.push(&format!("{} - {name}", conclusion_mark(*conclusion)));
                self.send_row(*step_idx, rows).await;
                let _ = self.events.send(event).await;
            }
            JobEvent::Log(lines) => {
                if let Some(step_idx) = &mut lines.step_idx {
                    *step_idx += call.offset;
                }
                let _ = self.events.send(event).await;
            }
            _ => {
                let _ = self.events.send(event).await;
            }
        }
    }

    /// The offset a called workflow's job adds to its step indices (0 outside a call).
    pub fn step_offset(&self) -> usize {
        self.call.as_ref().map_or(0, |call| call.offset)
    }

    /// Masks and sends rows of the step at `step_idx` (already shifted).
    async fn send_row(&self, step_idx: usize, rows: LineBatch) {
        let rows = self.masker.mask_lines(rows);
        let event = JobEvent::Log(LogLines {
            at: SystemTime::now(),
            step_idx: Some(step_idx),
            lines: rows,
        });
        let _ = self.events.send(event).await;
    }

    pub async fn log(&self, step_idx: Option<usize>, line: &str) {
        let content = self.masker.mask(line);
        self.send(JobEvent::Log(LogLines::one(
            SystemTime::now(),
            step_idx,
            content,
        )))
        .await;
    }

    /// Masks and sends lines that arrived together, as one event.
    pub async fn log_lines(&self, step_idx: Option<usize>, lines: LineBatch) {
        if lines.is_empty() {
            return;
        }
        let lines = self.masker.mask_lines(lines);
        self.send(JobEvent::Log(LogLines {
            at: SystemTime::now(),
            step_idx,
            lines,
        }))
        .await;
    }
}

/// A called workflow's job as the caller's log shows it: its steps' first index there, and each
/// step's name (with the job, its matrix leg and the calls above it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalledSteps {
    pub offset: usize,
    pub names: Vec<String>,
}

impl CalledSteps {
    fn name(&self, local_idx: usize) -> &str {
        self.names.get(local_idx).map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::event::Conclusion;

    /// What `emitter` sends for its step 1 printing `out`: `<index> <row>` for each row and
    /// `<index> started|finished` for the boundaries.
    async fn one_step(emitter: Emitter, received: &mut mpsc::Receiver<JobEvent>) -> Vec<String> {
        let at = SystemTime::now();
        emitter
            .send(JobEvent::StepStarted { step_idx: 1, at })
            .await;
        emitter.log(Some(1), "out").await;
        emitter
            .send(JobEvent::StepFinished {
                step_idx: 1,
                at,
                outcome: Conclusion::Failure,
                conclusion: Conclusion::Failure,
            })
            .await;
        drop(emitter);
        let mut seen = Vec::new();
        while let Some(event) = received.recv().await {
            match event {
                JobEvent::StepStarted { step_idx, .. } => seen.push(format!("{step_idx} started")),
                JobEvent::StepFinished { step_idx, .. } => {
                    seen.push(format!("{step_idx} finished"));
                }
                JobEvent::Log(log) => {
                    for line in log.lines.iter() {
                        seen.push(format!("{} {line}", log.step_idx.unwrap_or(usize::MAX)));
                    }
                }
                other => seen.push(format!("{other:?}")),
            }
        }
        seen
    }

    #[tokio::test]
    async fn a_called_step_is_shifted_and_named_and_ended_in_its_rows() {
        let (sender, mut received) = mpsc::channel(16);
        let mut masker = Masker::new();
        masker.add("hunter2");
        let mut emitter = Emitter::new(sender, masker);
        emitter.call = Some(CalledSteps {
            offset: 5,
            names: vec!["a".into(), "call (2/3) / build (3/3): say hunter2".into()],
        });
        assert_eq!(emitter.step_offset(), 5);
        assert_eq!(
            one_step(emitter, &mut received).await,
            [
                "6 started",
                "6 ::group::call (2/3) / build (3/3): say ***",
                "6 out",
                "6 ::endgroup::",
                "6 ❌ Failure - call (2/3) / build (3/3): say ***",
                "6 finished",
            ]
        );
    }

    #[tokio::test]
    async fn a_job_of_its_own_sends_its_steps_as_they_are() {
        let (sender, mut received) = mpsc::channel(16);
        let emitter = Emitter::new(sender, Masker::new());
        assert_eq!(emitter.step_offset(), 0);
        assert_eq!(
            one_step(emitter, &mut received).await,
            ["1 started", "1 out", "1 finished"]
        );
    }
}
