//! Running one step: its `if`, env, shell and script, the output stream through workflow commands and
//! masking, the environment files afterwards, and outcome versus conclusion.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use indexmap::IndexMap;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::{Backend, ExecRequest, ExitStatus, OutputLine};
use super::command_files::{self, CommandFileError};
use super::commands::{CommandProcessor, Effect};
use super::contexts::{self, EVENT_FILE};
use super::event::{Conclusion, JobEvent};
use super::expr::Value;
use super::job::{Emitter, JobState, conclusion_name, job_context};
use super::local_action;
use super::model::Step;
use super::shell::{self, Available};

/// How long output still arriving after a command ended is waited for.
const OUTPUT_TAIL_LIMIT: Duration = Duration::from_secs(2);
const FILE_COMMANDS_DIR: &str = "_runner_file_commands";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment files of one step, as paths inside the job environment.
struct CommandFiles {
    env: String,
    output: String,
    path: String,
    state: String,
    summary: String,
}

impl CommandFiles {
    fn new(temp: &str, step_idx: usize) -> CommandFiles {
        let file = |name: &str| format!("{temp}/{FILE_COMMANDS_DIR}/{name}_{step_idx}");
        CommandFiles {
            env: file("set_env"),
            output: file("set_output"),
            path: file("add_path"),
            state: file("save_state"),
            summary: file("step_summary"),
        }
    }

    fn all(&self) -> [(&'static str, &str); 5] {
        [
            ("ENV", &self.env),
            ("OUTPUT", &self.output),
            ("PATH", &self.path),
            ("STATE", &self.state),
            ("STEP_SUMMARY", &self.summary),
        ]
    }
}

fn temp_dir<B: Backend>(backend: &B) -> String {
    backend.paths().temp.to_string_lossy().into_owned()
}

/// Writes `github.event` where `GITHUB_EVENT_PATH` points.
pub async fn write_event_file<B: Backend>(state: &JobState, backend: &B) -> Result<(), String> {
    let github = state.scope.context_json("github");
    let event = github.get("event").cloned().unwrap_or_else(|| json!({}));
    let text = serde_json::to_vec_pretty(&event).map_err(|error| error.to_string())?;
    let path = format!("{}/{EVENT_FILE}", temp_dir(backend));
    backend
        .write_file(&path, &text, 0o644)
        .await
        .map_err(|error| format!("cannot write the event payload: {error}"))
}

/// What a step body produced.
pub struct BodyResult {
    pub outcome: Conclusion,
    pub outputs: IndexMap<String, String>,
}

/// Runs one step and returns its (outcome, conclusion).
pub async fn run_step<B: Backend>(
    step_idx: usize,
    step: &Step,
    state: &mut JobState,
    backend: &B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> (Conclusion, Conclusion) {
    emitter
        .send(JobEvent::StepStarted {
            step_idx,
            at: SystemTime::now(),
        })
        .await;
    let step_key = step.id.clone().unwrap_or_else(|| step_idx.to_string());
    state.scope.set("job", job_context(state));
    state.scope.set(
        "steps",
        Value::from(serde_json::Value::Object(state.steps_context.clone())),
    );
    contexts::set_env_context(state, &IndexMap::new());

    let mut continue_on_error = false;
    let body = match prepare_step(step, &IndexMap::new(), state) {
        Err(message) => Err(message),
        Ok((step_env, run_it, keep_going)) => {
            continue_on_error = keep_going;
            if run_it {
                Ok(Some(
                    run_body(step_idx, step, step_env, state, backend, emitter, cancel).await,
                ))
            } else {
                Ok(None)
            }
        }
    };
    let (outcome, outputs) = match body {
        Ok(Some(result)) => (result.outcome, result.outputs),
        Ok(None) => (Conclusion::Skipped, IndexMap::new()),
        Err(message) => {
            emitter
                .log(Some(step_idx), &format!("::error::{message}"))
                .await;
            (Conclusion::Failure, IndexMap::new())
        }
    };
    let conclusion = if outcome == Conclusion::Failure && continue_on_error {
        Conclusion::Success
    } else {
        outcome
    };
    state.steps_context.insert(
        step_key,
        json!({
            "outputs": outputs,
            "outcome": conclusion_name(outcome),
            "conclusion": conclusion_name(conclusion),
        }),
    );
    emitter
        .send(JobEvent::StepFinished {
            step_idx,
            at: SystemTime::now(),
            outcome,
            conclusion,
        })
        .await;
    (outcome, conclusion)
}

/// Evaluates the step's env, `if` and `continue-on-error`.
pub fn prepare_step(
    step: &Step,
    inherited_env: &IndexMap<String, String>,
    state: &mut JobState,
) -> Result<(IndexMap<String, String>, bool, bool), String> {
    let mut step_env = inherited_env.clone();
    contexts::set_env_context(state, &step_env);
    for (key, field) in &step.env {
        let value = state
            .scope
            .string(field, &format!("env.{key}"))
            .map_err(|error| error.0)?;
        step_env.insert(key.clone(), value);
    }
    contexts::set_env_context(state, &step_env);
    let run_it = state
        .scope
        .condition(step.condition.as_ref(), "if")
        .map_err(|error| error.0)?;
    let continue_on_error = state
        .scope
        .boolean(step.continue_on_error.as_ref(), "continue-on-error")
        .map_err(|error| error.0)?;
    Ok((step_env, run_it, continue_on_error))
}

async fn run_body<B: Backend>(
    step_idx: usize,
    step: &Step,
    step_env: IndexMap<String, String>,
    state: &mut JobState,
    backend: &B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> BodyResult {
    let body = if step.run.is_some() {
        run_script(step_idx, step, step_env, state, backend, emitter, cancel).await
    } else {
        local_action::run(step_idx, step, step_env, state, backend, emitter, cancel).await
    };
    match body {
        Ok(result) => result,
        Err(message) => {
            emitter
                .log(Some(step_idx), &format!("::error::{message}"))
                .await;
            BodyResult {
                outcome: Conclusion::Failure,
                outputs: IndexMap::new(),
            }
        }
    }
}

async fn probe_shells<B: Backend>(
    state: &JobState,
    backend: &B,
    cancel: &CancellationToken,
) -> Available {
    let (tx, mut rx) = mpsc::channel(16);
    let request = ExecRequest {
        argv: vec!["sh".into(), "-c".into(), Available::PROBE.into()],
        env: state.base_env.clone(),
        working_dir: None,
        timeout: Some(Duration::from_secs(30)),
    };
    let status = backend.exec(request, tx, cancel.clone()).await;
    let mut lines = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(OUTPUT_TAIL_LIMIT, rx.recv()).await {
        lines.push(line.line);
    }
    match status {
        Ok(_) => Available::from_probe_output(&lines),
        // Without a probe, assume bash is there; a missing bash then fails the step visibly.
        Err(_) => Available {
            bash: true,
            ..Available::default()
        },
    }
}

/// A process to run as a step body, with what it needs besides the step's env.
pub struct StepCommand {
    pub argv: Vec<String>,
    /// Added to the step env (`INPUT_*`, `GITHUB_ACTION_PATH` for actions).
    pub extra_env: IndexMap<String, String>,
    pub working_dir: Option<String>,
    pub step_timeout: Option<Duration>,
}

/// A `run:` step: evaluates its fields, writes the script and runs it with its shell.
pub async fn run_script<B: Backend>(
    step_idx: usize,
    step: &Step,
    step_env: IndexMap<String, String>,
    state: &mut JobState,
    backend: &B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Result<BodyResult, String> {
    let scope = &state.scope;
    let Some(run) = &step.run else {
        return Err(format!("{}:{}: the step has no `run`", state.file, step.at));
    };
    let shell_field = step.shell.as_ref().or(state.shell_defaults.shell.as_ref());
    let shell_name = shell_field
        .map(|field| scope.string(field, "shell"))
        .transpose()
        .map_err(|error| error.0)?;
    let working_dir = step
        .working_directory
        .as_ref()
        .or(state.shell_defaults.working_directory.as_ref())
        .map(|field| scope.string(field, "working-directory"))
        .transpose()
        .map_err(|error| error.0)?;
    let step_timeout = step_timeout(step, state)?;
    let script_body = scope.string(run, "run").map_err(|error| error.0)?;

    if state.available.is_none() {
        state.available = Some(probe_shells(state, backend, cancel).await);
    }
    let available = state.available.clone().unwrap_or_default();
    let shell = shell::resolve(shell_name.as_deref(), &available)
        .map_err(|message| format!("{}:{}: {message}", state.file, step.at))?;

    let temp = temp_dir(backend);
    let script_path = format!("{temp}/{}{}", uuid::Uuid::new_v4(), shell.extension);
    backend
        .write_file(&script_path, shell.script(&script_body).as_bytes(), 0o755)
        .await
        .map_err(|error| format!("cannot write the step script: {error}"))?;
    let command = StepCommand {
        argv: shell.argv(&script_path),
        extra_env: IndexMap::new(),
        working_dir,
        step_timeout,
    };
    execute(step_idx, command, step_env, state, backend, emitter, cancel).await
}

/// `timeout-minutes` of a step.
pub fn step_timeout(step: &Step, state: &JobState) -> Result<Option<Duration>, String> {
    Ok(state
        .scope
        .minutes(step.timeout_minutes.as_ref(), "timeout-minutes")
        .map_err(|error| error.0)?
        .map(|minutes| Duration::from_secs_f64(minutes * 60.0)))
}

/// Runs a step's process: fresh environment files, the output through workflow commands and masking,
/// the files applied afterwards, and the outcome.
pub async fn execute<B: Backend>(
    step_idx: usize,
    command: StepCommand,
    mut step_env: IndexMap<String, String>,
    state: &mut JobState,
    backend: &B,
    emitter: &mut Emitter,
    cancel: &CancellationToken,
) -> Result<BodyResult, String> {
    step_env.extend(command.extra_env);
    let step_timeout = command.step_timeout;
    let temp = temp_dir(backend);
    let files = CommandFiles::new(&temp, step_idx);
    for (_, path) in files.all() {
        backend
            .write_file(path, b"", 0o666)
            .await
            .map_err(|error| format!("cannot create {path}: {error}"))?;
    }

    let env = step_environment(state, &step_env, &files);
    let remaining = state.deadline.saturating_duration_since(Instant::now());
    let timeout = step_timeout.map_or(remaining, |step_timeout| step_timeout.min(remaining));
    let job_deadline_binds = step_timeout.is_none_or(|step_timeout| remaining <= step_timeout);
    let request = ExecRequest {
        argv: command.argv,
        env,
        working_dir: command.working_dir,
        timeout: Some(timeout),
    };

    let mut processor = CommandProcessor::new(state.step_debug, state.allow_unsecure_commands);
    let mut outputs = IndexMap::new();
    let (tx, mut rx) = mpsc::channel::<OutputLine>(256);
    let status = {
        let exec = backend.exec(request, tx, cancel.clone());
        tokio::pin!(exec);
        loop {
            tokio::select! {
                Some(line) = rx.recv() => {
                    handle_line(step_idx, &line.line, &mut processor, state, emitter, &mut outputs).await;
                }
                status = &mut exec => break status,
            }
        }
    };
    while let Ok(Some(line)) = tokio::time::timeout(OUTPUT_TAIL_LIMIT, rx.recv()).await {
        handle_line(
            step_idx,
            &line.line,
            &mut processor,
            state,
            emitter,
            &mut outputs,
        )
        .await;
    }

    // Environment files count even when the step failed, as upstream reads them after every step.
    let files_result = apply_command_files(&files, state, backend, &mut outputs).await;

    let outcome = match status {
        Ok(ExitStatus::Exited(0)) => Conclusion::Success,
        Ok(ExitStatus::Exited(code)) => {
            let hint = if code == 127 {
                " (command not found)"
            } else {
                ""
            };
            emitter
                .log(
                    Some(step_idx),
                    &format!("::error::Process completed with exit code {code}.{hint}"),
                )
                .await;
            Conclusion::Failure
        }
        Ok(ExitStatus::TimedOut) => {
            if job_deadline_binds {
                state.timed_out = true;
            } else {
                emitter
                    .log(
                        Some(step_idx),
                        &format!(
                            "::error::The step has timed out after {}",
                            humantime::format_duration(timeout)
                        ),
                    )
                    .await;
            }
            Conclusion::Failure
        }
        Ok(ExitStatus::Cancelled) => {
            state.cancelled = true;
            emitter.log(Some(step_idx), "The step was cancelled").await;
            Conclusion::Cancelled
        }
        Err(error) => {
            emitter
                .log(Some(step_idx), &format!("::error::{error}"))
                .await;
            Conclusion::Failure
        }
    };
    let outcome = match files_result {
        Ok(()) => outcome,
        Err(message) => {
            emitter
                .log(Some(step_idx), &format!("::error::{message}"))
                .await;
            if outcome == Conclusion::Success {
                Conclusion::Failure
            } else {
                outcome
            }
        }
    };
    Ok(BodyResult { outcome, outputs })
}

/// The complete environment of a step process.
fn step_environment(
    state: &JobState,
    step_env: &IndexMap<String, String>,
    files: &CommandFiles,
) -> BTreeMap<String, String> {
    let mut env = state.base_env.clone();
    env.extend(
        state
            .env
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    env.extend(
        step_env
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    if !state.extra_paths.is_empty() {
        let base = env
            .get("PATH")
            .cloned()
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        let mut path = state.extra_paths.join(":");
        path.push(':');
        path.push_str(&base);
        env.insert("PATH".into(), path);
    }
    env.extend(
        state
            .builtin_env
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    for (suffix, path) in files.all() {
        env.insert(format!("GITHUB_{suffix}"), path.to_string());
        env.insert(format!("GITEA_{suffix}"), path.to_string());
    }
    env
}

async fn handle_line(
    step_idx: usize,
    line: &str,
    processor: &mut CommandProcessor,
    state: &mut JobState,
    emitter: &mut Emitter,
    outputs: &mut IndexMap<String, String>,
) {
    let processed = processor.process(line);
    for effect in processed.effects {
        match effect {
            Effect::AddMask(value) => emitter.masker.add(&value),
            Effect::SetOutput { name, value } => {
                outputs.insert(name, value);
            }
            // Only actions' post steps read state; `run:` steps have none, so state is dropped.
            Effect::SaveState { .. } => {}
            Effect::SetEnv { name, value } => {
                state.env.insert(name, value);
            }
            Effect::AddPath(path) => state.extra_paths.insert(0, path),
        }
    }
    for log_line in processed.log {
        emitter.log(Some(step_idx), &log_line).await;
    }
}

async fn read_text<B: Backend>(backend: &B, path: &str) -> Result<String, String> {
    match backend.read_file(path).await {
        Ok(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Ok(None) => Ok(String::new()),
        Err(error) => Err(format!("cannot read {path}: {error}")),
    }
}

async fn apply_command_files<B: Backend>(
    files: &CommandFiles,
    state: &mut JobState,
    backend: &B,
    outputs: &mut IndexMap<String, String>,
) -> Result<(), String> {
    let describe = |name: &str, error: CommandFileError| format!("{name}: {error}");
    let env_text = read_text(backend, &files.env).await?;
    for (name, value) in
        command_files::parse_key_values(&env_text).map_err(|error| describe("GITHUB_ENV", error))?
    {
        state.env.insert(name, value);
    }
    let output_text = read_text(backend, &files.output).await?;
    for (name, value) in command_files::parse_key_values(&output_text)
        .map_err(|error| describe("GITHUB_OUTPUT", error))?
    {
        outputs.insert(name, value);
    }
    let state_text = read_text(backend, &files.state).await?;
    command_files::parse_key_values(&state_text)
        .map_err(|error| describe("GITHUB_STATE", error))?;
    let path_text = read_text(backend, &files.path).await?;
    for path in command_files::parse_paths(&path_text) {
        state.extra_paths.insert(0, path);
    }
    Ok(())
}
