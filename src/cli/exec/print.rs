//! `exec`'s printer: job events as log lines with step boundaries.

use std::io::Write;

use indexmap::IndexMap;
use serde_json::Value as Json;
use tokio::sync::mpsc;

use crate::executor::conclusion_name;
use crate::executor::event::{Conclusion, JobEvent};

/// Prints events as they come, with step boundaries; returns the job's outputs.
pub async fn print_events(
    mut received: mpsc::Receiver<JobEvent>,
    label: String,
) -> IndexMap<String, String> {
    let mut names: Vec<String> = Vec::new();
    let mut outputs = IndexMap::new();
    while let Some(event) = received.recv().await {
        let mut out = std::io::stdout().lock();
        let _ = match event {
            JobEvent::JobStarted { steps, .. } => {
                names = steps.into_iter().map(|step| step.name).collect();
                writeln!(out, "[{label}] 🚀 Start job")
            }
            JobEvent::StepStarted { step_idx, .. } => {
                let name = names.get(step_idx).map_or("", String::as_str);
                writeln!(out, "[{label}] ⭐ {name}")
            }
            JobEvent::Log(log) => log.lines.iter().try_for_each(|line| match log.step_idx {
                Some(_) => writeln!(out, "[{label}]   | {line}"),
                None => writeln!(out, "[{label}] {line}"),
            }),
            JobEvent::StepFinished {
                step_idx,
                outcome,
                conclusion,
                ..
            } => {
                let name = names.get(step_idx).map_or("", String::as_str);
                let mark = match conclusion {
                    Conclusion::Success => "✅ Success",
                    Conclusion::Failure => "❌ Failure",
                    Conclusion::Cancelled => "🚫 Cancelled",
                    Conclusion::Skipped => "⏭ Skipped",
                };
                if outcome == conclusion {
                    writeln!(out, "[{label}]   {mark} - {name}")
                } else {
                    writeln!(
                        out,
                        "[{label}]   {mark} - {name} (outcome: {})",
                        conclusion_name(outcome)
                    )
                }
            }
            JobEvent::Outputs(job_outputs) => {
                outputs = job_outputs;
                Ok(())
            }
            JobEvent::JobFinished { result, .. } => {
                writeln!(out, "[{label}] 🏁 Job {}", conclusion_name(result))
            }
        };
    }
    outputs
}

/// A matrix value as shown in a job label.
pub fn json_scalar(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}
