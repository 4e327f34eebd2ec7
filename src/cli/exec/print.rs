//! `exec`'s printer: job events as log lines with step boundaries.

use std::io::Write;
use std::time::SystemTime;

use indexmap::IndexMap;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use crate::executor::event::{JobEvent, PlannedStep};
use crate::executor::{conclusion_mark, conclusion_name};

/// How `exec` prints the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `[label] message` lines.
    Text,
    /// `--json`: one JSON object a line with `time`, `job`, `level`, `msg` and, inside a step, `step`.
    Json,
}

/// Prints events as they come, with step boundaries; returns the job's outputs.
pub async fn print_events(
    mut received: mpsc::Receiver<JobEvent>,
    label: String,
    format: Format,
) -> IndexMap<String, String> {
    let mut names: Vec<String> = Vec::new();
    let mut outputs = IndexMap::new();
    while let Some(event) = received.recv().await {
        let (step_idx, messages): (Option<usize>, Vec<String>) = match event {
            JobEvent::JobStarted { steps, .. } => {
                add_names(&mut names, steps);
                (None, vec![String::from("🚀 Start job")])
            }
            JobEvent::StepsPlanned(steps) => {
                add_names(&mut names, steps);
                continue;
            }
            JobEvent::StepStarted { step_idx, .. } => {
                let name = names.get(step_idx).map_or("", String::as_str);
                (Some(step_idx), vec![format!("⭐ {name}")])
            }
            JobEvent::Log(log) => {
                let prefix = match (log.step_idx, format) {
                    (Some(_), Format::Text) => "  | ",
                    _ => "",
                };
                let messages = log.lines.iter().map(|line| format!("{prefix}{line}"));
                (log.step_idx, messages.collect())
            }
            JobEvent::StepFinished {
                step_idx,
                outcome,
                conclusion,
                ..
            } => {
                let name = names.get(step_idx).map_or("", String::as_str);
                let mark = conclusion_mark(conclusion);
                let message = if outcome == conclusion {
                    format!("  {mark} - {name}")
                } else {
                    format!("  {mark} - {name} (outcome: {})", conclusion_name(outcome))
                };
                (Some(step_idx), vec![message])
            }
            JobEvent::Outputs(job_outputs) => {
                outputs = job_outputs;
                continue;
            }
            // Lines are printed as they come: nothing is left to deliver, so dropping it lets
            // the job clean up at once.
            JobEvent::LogCheckpoint(_) => continue,
            JobEvent::JobFinished { result, .. } => {
                (None, vec![format!("🏁 Job {}", conclusion_name(result))])
            }
        };
        let mut out = std::io::stdout().lock();
        let step_name = step_idx.and_then(|step_idx| names.get(step_idx));
        for message in messages {
            let _ = match format {
                Format::Text => writeln!(out, "[{label}] {message}"),
                Format::Json => {
                    let mut object = json!({
                        "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                        "job": label,
                        "level": "info",
                        "msg": message,
                    });
                    if let Some(name) = step_name {
                        object["step"] = json!(name);
                    }
                    writeln!(out, "{object}")
                }
            };
        }
    }
    outputs
}

/// Puts each planned step's name at its index.
fn add_names(names: &mut Vec<String>, steps: Vec<PlannedStep>) {
    for step in steps {
        if names.len() <= step.step_idx {
            names.resize(step.step_idx + 1, String::new());
        }
        names[step.step_idx] = step.name;
    }
}

/// A matrix value as shown in a job label.
pub fn json_scalar(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}
