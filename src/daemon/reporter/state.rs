//! The task's state as Gitea sees it, built from job events: step results with timestamps and
//! log ranges, the job result, `stopped_at`, and the job outputs with their delivery marks.
//!
//! Pure: no I/O, no clock except the timestamps the events carry. Serialisable so the spool can
//! persist it and a restarted daemon can finish delivering it.
//!
//! Log ranges: Gitea's UI splits the task log into "Set up job" (rows before the first step),
//! each step's `[log_index, log_index + log_length)`, contiguous, and "Complete job" (the rest).
//! So every row that arrives while steps run (job-level lines too) is counted into the step that
//! started last, which keeps the ranges contiguous without dropping a row.

use std::time::SystemTime;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::client::proto::runner::{self as proto, TaskState};
use crate::executor::event::{Conclusion, JobEvent, LogLines, PlannedStep};

/// Gitea drops output keys longer than this (bytes).
pub const MAX_OUTPUT_KEY_BYTES: usize = 255;
/// Gitea drops output values longer than this (bytes).
pub const MAX_OUTPUT_VALUE_BYTES: usize = 1024 * 1024;

/// Gitea truncates a row at 64 KiB; cutting it here also keeps any single row far below the
/// 1 MiB request cap.
pub const MAX_ROW_BYTES: usize = 64 * 1024;

/// A log line as it goes into a row: at most [`MAX_ROW_BYTES`], cut without splitting a character.
pub fn row_content(line: &str) -> &str {
    if line.len() <= MAX_ROW_BYTES {
        return line;
    }
    let mut cut = MAX_ROW_BYTES;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    &line[..cut]
}

/// One step as reported in `TaskState.steps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// A `proto::Result` value; 0 (unspecified) while the step has not finished.
    pub result: i32,
    pub started_at: Option<SystemTime>,
    pub stopped_at: Option<SystemTime>,
    pub log_index: u64,
    pub log_length: u64,
}

/// One job output and whether Gitea acknowledged it (`sent_outputs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub value: String,
    pub sent: bool,
}

/// Everything the reporter knows about a task besides its log rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub task_id: i64,
    /// A `proto::Result` value; 0 until the job finished.
    pub result: i32,
    pub started_at: Option<SystemTime>,
    pub stopped_at: Option<SystemTime>,
    pub steps: Vec<StepRecord>,
    pub outputs: IndexMap<String, OutputRecord>,
    /// The step that receives rows arriving now, while steps run.
    current_step: Option<usize>,
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// The event holds log lines: spool each as the next row (its content through [`row_content`]).
    pub log: Option<LogLines>,
    /// Gitea should hear about this soon (a step started or finished, the job ended, outputs).
    pub urgent: bool,
}

/// Maps an executor conclusion to Gitea's result value.
pub fn result_code(conclusion: Conclusion) -> i32 {
    let result = match conclusion {
        Conclusion::Success => proto::Result::Success,
        Conclusion::Failure => proto::Result::Failure,
        Conclusion::Cancelled => proto::Result::Cancelled,
        Conclusion::Skipped => proto::Result::Skipped,
    };
    result as i32
}

/// Maps Gitea's result value back (`None` for unspecified or out of range).
pub fn conclusion_of(code: i32) -> Option<Conclusion> {
    match proto::Result::try_from(code).ok()? {
        proto::Result::Success => Some(Conclusion::Success),
        proto::Result::Failure => Some(Conclusion::Failure),
        proto::Result::Cancelled => Some(Conclusion::Cancelled),
        proto::Result::Skipped => Some(Conclusion::Skipped),
        proto::Result::Unspecified => None,
    }
}

impl TaskReport {
    pub fn new(task_id: i64) -> TaskReport {
        TaskReport {
            task_id,
            result: 0,
            started_at: None,
            stopped_at: None,
            steps: Vec::new(),
            outputs: IndexMap::new(),
            current_step: None,
        }
    }

    /// Whether the job result is known.
    pub fn is_finished(&self) -> bool {
        self.result != 0
    }

    /// Applies one event; `next_row` is the task-wide index the next spooled row gets.
    pub fn apply(&mut self, event: JobEvent, next_row: u64) -> Applied {
        match event {
            JobEvent::JobStarted { at, steps } => {
                self.started_at.get_or_insert(at);
                self.plan(&steps);
                Applied {
                    log: None,
                    urgent: true,
                }
            }
            JobEvent::StepsPlanned(steps) => {
                self.plan(&steps);
                Applied::default()
            }
            JobEvent::StepStarted { step_idx, at } => {
                self.started_at.get_or_insert(at);
                let step = self.step_mut(step_idx);
                if step.started_at.is_none() {
                    step.started_at = Some(at);
                    step.log_index = next_row;
                    step.log_length = 0;
                }
                self.current_step = Some(step_idx);
                Applied {
                    log: None,
                    urgent: true,
                }
            }
            JobEvent::Log(log) => {
                self.started_at.get_or_insert(log.at);
                let n_rows = log.lines.len() as u64;
                if let Some(step_idx) = self.current_step
                    && n_rows > 0
                {
                    let step = self.step_mut(step_idx);
                    if step.log_length == 0 {
                        step.log_index = next_row;
                    }
                    step.log_length += n_rows;
                }
                Applied {
                    log: Some(log),
                    urgent: false,
                }
            }
            JobEvent::StepFinished {
                step_idx,
                at,
                conclusion,
                ..
            } => {
                let step = self.step_mut(step_idx);
                if step.started_at.is_none() && step.log_length == 0 {
                    step.log_index = next_row;
                }
                step.result = result_code(conclusion);
                step.stopped_at = Some(at);
                if step_idx + 1 >= self.steps.len() {
                    // The last step is done: what follows is "Complete job".
                    self.current_step = None;
                }
                Applied {
                    log: None,
                    urgent: true,
                }
            }
            JobEvent::Outputs(outputs) => {
                for (key, value) in outputs {
                    if key.len() > MAX_OUTPUT_KEY_BYTES || value.len() > MAX_OUTPUT_VALUE_BYTES {
                        tracing::warn!(
                            task_id = self.task_id,
                            output = %key.chars().take(64).collect::<String>(),
                            "ignoring a job output whose key or value is too long"
                        );
                        continue;
                    }
                    // The first value for a key wins, as on the server.
                    self.outputs
                        .entry(key)
                        .or_insert(OutputRecord { value, sent: false });
                }
                Applied {
                    log: None,
                    urgent: true,
                }
            }
            JobEvent::JobFinished { at, result } => {
                self.finish(result, at);
                Applied {
                    log: None,
                    urgent: true,
                }
            }
            // Not state: ingest keeps it until the rows before it are delivered, and sends them
            // at once.
            JobEvent::LogCheckpoint(_) => Applied {
                log: None,
                urgent: true,
            },
        }
    }

    /// Sets the job result (once) and `stopped_at`; steps that never finished become cancelled
    /// (skipped when the job was skipped), so the UI shows no step running forever.
    pub fn finish(&mut self, result: Conclusion, at: SystemTime) {
        if self.is_finished() {
            return;
        }
        self.result = result_code(result);
        self.stopped_at = Some(at);
        self.started_at.get_or_insert(at);
        let leftover = if result == Conclusion::Skipped {
            Conclusion::Skipped
        } else {
            Conclusion::Cancelled
        };
        for step in &mut self.steps {
            if step.result == 0 {
                step.result = result_code(leftover);
                if step.started_at.is_some() {
                    step.stopped_at.get_or_insert(at);
                }
            }
        }
        self.current_step = None;
    }

    /// Outputs Gitea has not acknowledged yet.
    pub fn unsent_outputs(&self) -> std::collections::HashMap<String, String> {
        self.outputs
            .iter()
            .filter(|(_, output)| !output.sent)
            .map(|(key, output)| (key.clone(), output.value.clone()))
            .collect()
    }

    /// Marks what the server listed in `sent_outputs`; returns how many became sent.
    pub fn mark_sent(&mut self, sent_outputs: &[String]) -> usize {
        let mut n_marked = 0;
        for key in sent_outputs {
            if let Some(output) = self.outputs.get_mut(key)
                && !output.sent
            {
                output.sent = true;
                n_marked += 1;
            }
        }
        n_marked
    }

    /// The state message; `with_result: false` reports the job as still running (heartbeats
    /// never carry the result, so the final UpdateTask is the only one that does).
    pub fn to_proto(&self, with_result: bool) -> TaskState {
        let timestamp = |at: &Option<SystemTime>| at.map(prost_types::Timestamp::from);
        TaskState {
            id: self.task_id,
            result: if with_result { self.result } else { 0 },
            started_at: timestamp(&self.started_at),
            stopped_at: if with_result {
                timestamp(&self.stopped_at)
            } else {
                None
            },
            steps: self
                .steps
                .iter()
                .enumerate()
                .map(|(step_idx, step)| proto::StepState {
                    id: step_idx as i64,
                    result: step.result,
                    started_at: timestamp(&step.started_at),
                    stopped_at: timestamp(&step.stopped_at),
                    log_index: step.log_index as i64,
                    log_length: step.log_length as i64,
                })
                .collect(),
        }
    }

    /// Makes room for the planned steps, so a step counts as the last only when it is.
    fn plan(&mut self, steps: &[PlannedStep]) {
        let n_steps = steps
            .iter()
            .map(|step| step.step_idx + 1)
            .max()
            .unwrap_or(0);
        if self.steps.len() < n_steps {
            self.steps.resize(n_steps, StepRecord::empty());
        }
    }

    fn step_mut(&mut self, step_idx: usize) -> &mut StepRecord {
        if self.steps.len() <= step_idx {
            self.steps.resize(step_idx + 1, StepRecord::empty());
        }
        &mut self.steps[step_idx]
    }
}

impl StepRecord {
    fn empty() -> StepRecord {
        StepRecord {
            result: 0,
            started_at: None,
            stopped_at: None,
            log_index: 0,
            log_length: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::executor::event::PlannedStep;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn log(secs: u64, step_idx: Option<usize>, content: &str) -> JobEvent {
        JobEvent::Log(LogLines::one(at(secs), step_idx, content))
    }

    /// Applies events, numbering rows as the spool would; returns the spooled contents.
    fn run(state: &mut TaskReport, events: Vec<JobEvent>) -> Vec<String> {
        let mut rows = Vec::new();
        for event in events {
            if let Some(log) = state.apply(event, rows.len() as u64).log {
                rows.extend(log.lines.iter().map(|line| row_content(line).to_string()));
            }
        }
        rows
    }

    fn planned(n: usize) -> Vec<PlannedStep> {
        (0..n)
            .map(|step_idx| PlannedStep {
                step_idx,
                name: format!("step {step_idx}"),
            })
            .collect()
    }

    #[test]
    fn steps_planned_later_join_the_list_before_they_start() {
        let mut state = TaskReport::new(9);
        state.apply(
            JobEvent::JobStarted {
                at: at(1),
                steps: planned(1),
            },
            0,
        );
        let later = planned(3).split_off(1);
        assert_eq!(
            state.apply(JobEvent::StepsPlanned(later), 0),
            Applied::default()
        );
        assert_eq!(state.steps, vec![StepRecord::empty(); 3]);
    }

    #[test]
    fn steps_get_contiguous_ranges_and_job_lines_stay_outside() {
        let mut state = TaskReport::new(9);
        let rows = run(
            &mut state,
            vec![
                log(0, None, "set up"),
                JobEvent::JobStarted {
                    at: at(1),
                    steps: planned(2),
                },
                log(1, None, "runner info"),
                JobEvent::StepStarted {
                    step_idx: 0,
                    at: at(2),
                },
                log(2, Some(0), "a"),
                log(2, Some(0), "b"),
                JobEvent::StepFinished {
                    step_idx: 0,
                    at: at(3),
                    outcome: Conclusion::Success,
                    conclusion: Conclusion::Success,
                },
                JobEvent::StepStarted {
                    step_idx: 1,
                    at: at(4),
                },
                log(4, Some(1), "c"),
                log(4, None, "job-level while a step runs"),
                JobEvent::StepFinished {
                    step_idx: 1,
                    at: at(5),
                    outcome: Conclusion::Failure,
                    conclusion: Conclusion::Failure,
                },
                log(6, None, "clean up"),
                JobEvent::JobFinished {
                    at: at(7),
                    result: Conclusion::Failure,
                },
            ],
        );
        assert_eq!(rows.len(), 7);
        let proto = state.to_proto(true);
        assert_eq!(proto.started_at, Some(at(0).into()));
        assert_eq!(proto.stopped_at, Some(at(7).into()));
        assert_eq!(proto.result, proto::Result::Failure as i32);
        let ranges: Vec<(i64, i64, i32)> = proto
            .steps
            .iter()
            .map(|step| (step.log_index, step.log_length, step.result))
            .collect();
        assert_eq!(ranges, [(2, 2, 1), (4, 2, 2)]);
        assert_eq!(proto.steps[1].started_at, Some(at(4).into()));
        assert_eq!(proto.steps[1].stopped_at, Some(at(5).into()));
    }

    #[test]
    fn heartbeats_never_carry_the_result() {
        let mut state = TaskReport::new(1);
        state.finish(Conclusion::Success, at(1));
        let heartbeat = state.to_proto(false);
        assert_eq!(heartbeat.result, 0);
        assert_eq!(heartbeat.stopped_at, None);
        assert_eq!(state.to_proto(true).result, 1);
    }

    #[test]
    fn finishing_cancels_unfinished_steps_and_keeps_the_first_result() {
        let mut state = TaskReport::new(1);
        run(
            &mut state,
            vec![
                JobEvent::JobStarted {
                    at: at(0),
                    steps: planned(3),
                },
                JobEvent::StepStarted {
                    step_idx: 0,
                    at: at(1),
                },
            ],
        );
        state.finish(Conclusion::Cancelled, at(9));
        state.finish(Conclusion::Success, at(10));
        let proto = state.to_proto(true);
        assert_eq!(proto.result, proto::Result::Cancelled as i32);
        assert_eq!(proto.stopped_at, Some(at(9).into()));
        assert!(proto.steps.iter().all(|step| step.result == 3));
        assert_eq!(proto.steps[0].stopped_at, Some(at(9).into()));
        assert_eq!(proto.steps[2].stopped_at, None);
    }

    #[test]
    fn outputs_first_value_wins_and_oversized_ones_are_dropped() {
        let mut state = TaskReport::new(1);
        let mut first = IndexMap::new();
        first.insert("a".to_string(), "1".to_string());
        first.insert("k".repeat(256), "x".to_string());
        first.insert("big".to_string(), "v".repeat(MAX_OUTPUT_VALUE_BYTES + 1));
        state.apply(JobEvent::Outputs(first), 0);
        let mut second = IndexMap::new();
        second.insert("a".to_string(), "2".to_string());
        second.insert("b".to_string(), "3".to_string());
        state.apply(JobEvent::Outputs(second), 0);
        let unsent = state.unsent_outputs();
        assert_eq!(unsent.len(), 2);
        assert_eq!(unsent["a"], "1");
        assert_eq!(state.mark_sent(&["a".into(), "zzz".into()]), 1);
        assert_eq!(state.unsent_outputs().len(), 1);
    }

    #[test]
    fn a_skipped_step_without_start_gets_an_empty_range_at_the_current_row() {
        let mut state = TaskReport::new(1);
        state.apply(
            JobEvent::JobStarted {
                at: at(0),
                steps: planned(1),
            },
            0,
        );
        state.apply(
            JobEvent::StepFinished {
                step_idx: 0,
                at: at(1),
                outcome: Conclusion::Skipped,
                conclusion: Conclusion::Skipped,
            },
            5,
        );
        let step = &state.to_proto(true).steps[0];
        assert_eq!((step.log_index, step.log_length, step.result), (5, 0, 4));
    }

    #[test]
    fn long_rows_are_cut_at_64_kib_on_a_char_boundary() {
        let mut state = TaskReport::new(1);
        let long = format!("a{}", "é".repeat(40 * 1024));
        let rows = run(&mut state, vec![log(0, None, &long)]);
        assert!(rows[0].len() <= MAX_ROW_BYTES && rows[0].len() > MAX_ROW_BYTES - 2);
    }

    #[test]
    fn state_survives_a_json_round_trip() {
        let mut state = TaskReport::new(3);
        run(
            &mut state,
            vec![
                JobEvent::JobStarted {
                    at: at(0),
                    steps: planned(1),
                },
                JobEvent::StepStarted {
                    step_idx: 0,
                    at: at(1),
                },
                log(1, Some(0), "x"),
            ],
        );
        let json = serde_json::to_string(&state).unwrap();
        let back: TaskReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
    }
}
