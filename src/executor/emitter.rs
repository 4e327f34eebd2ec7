//! The job's event emitter: every event a job sends goes through it, its log lines masked first,
//! its step indices shifted when the job is one of a called workflow's.

use std::time::SystemTime;

use tokio::sync::mpsc;

use super::event::{JobEvent, LogLines};
use super::line_batch::LineBatch;
use super::masking::Masker;
use super::summary::Summaries;

/// Sends events, masking log lines first. Sending never fails the job: a gone receiver only
/// means nobody listens any more.
pub struct Emitter {
    events: mpsc::Sender<JobEvent>,
    pub masker: Masker,
    /// Added to every step index sent: the jobs of a called workflow number their steps after
    /// the ones before them in the caller's one log.
    pub step_offset: usize,
    /// The steps' `GITHUB_STEP_SUMMARY` texts, by the step index the job's log uses (offset
    /// included), so a called workflow's jobs add theirs where its steps stand.
    pub summaries: Summaries,
}

impl Emitter {
    pub fn new(events: mpsc::Sender<JobEvent>, masker: Masker) -> Emitter {
        Emitter {
            events,
            masker,
            step_offset: 0,
            summaries: Summaries::default(),
        }
    }

    pub async fn send(&self, mut event: JobEvent) {
        if self.step_offset > 0 {
            match &mut event {
                JobEvent::StepStarted { step_idx, .. }
                | JobEvent::StepFinished { step_idx, .. } => {
                    *step_idx += self.step_offset;
                }
                JobEvent::Log(lines) => {
                    if let Some(step_idx) = &mut lines.step_idx {
                        *step_idx += self.step_offset;
                    }
                }
                _ => {}
            }
        }
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
