//! Running one step process: fresh environment files (`GITHUB_ENV`, `GITHUB_OUTPUT`, ...), the
//! process (or a docker action's step container) with its complete environment, its output through
//! workflow commands and masking, the files applied afterwards, and the outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::Either;
use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::backend::{
    Backend, ContainerRun, ExecEnd, ExecRequest, ExitStatus, NewFile, OutputLines,
};
use super::command_files::{self, CommandFileError};
use super::commands::{self, CommandProcessor, Effect};
use super::contexts;
use super::event::Conclusion;
use super::job::{Emitter, JobRun, JobState};
use super::line_batch::LineBatch;
use super::masking;
use super::step::{BodyResult, temp_dir};

/// How long output still arriving after a command ended is waited for.
const OUTPUT_TAIL_LIMIT: Duration = Duration::from_secs(2);
/// Output batches (one per read of the stream, each at most a frame plus one long line) the
/// backend may get ahead of the step.
const OUTPUT_CHANNEL_CAPACITY: usize = 16;
const FILE_COMMANDS_DIR: &str = "_runner_file_commands";
/// Enables the deprecated `set-env` and `add-path` commands when `true`.
const ALLOW_UNSECURE_COMMANDS: &str = "ACTIONS_ALLOW_UNSECURE_COMMANDS";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment files of one step, as paths inside the job environment, alone in their
/// directory so they are read back in one call.
struct CommandFiles {
    dir: String,
    env: String,
    output: String,
    path: String,
    state: String,
    summary: String,
}

impl CommandFiles {
    /// Fresh names for every process: pre, main and post stages of one step each get their own.
    fn new(temp: &str) -> CommandFiles {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = format!("{temp}/{FILE_COMMANDS_DIR}/{id}");
        let file = |name: &str| format!("{dir}/{name}");
        CommandFiles {
            dir: dir.clone(),
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
/// A process to run as a step body, with what it needs besides the step's env.
pub struct StepCommand {
    /// The process (ignored when `container` is set).
    pub argv: Vec<String>,
    /// The script `argv` runs, written together with the environment files (one call).
    pub script: Option<NewFile>,
    /// Applied last, over the step env and the runner's variables (`INPUT_*`, `GITHUB_ACTION_*`,
    /// `STATE_*` for actions).
    pub extra_env: IndexMap<String, String>,
    pub working_dir: Option<String>,
    pub step_timeout: Option<Duration>,
    /// Run a step container (a docker action) instead of a process in the job environment.
    pub container: Option<StepContainer>,
}

impl StepCommand {
    /// An action stage run as a process in the job environment (`node <script>`).
    pub fn process(
        argv: Vec<String>,
        extra_env: IndexMap<String, String>,
        step_timeout: Option<Duration>,
    ) -> StepCommand {
        StepCommand {
            argv,
            script: None,
            extra_env,
            working_dir: None,
            step_timeout,
            container: None,
        }
    }

    /// An action stage run in a step container (a docker action).
    pub fn container(
        container: StepContainer,
        extra_env: IndexMap<String, String>,
        step_timeout: Option<Duration>,
    ) -> StepCommand {
        StepCommand {
            container: Some(container),
            ..StepCommand::process(Vec::new(), extra_env, step_timeout)
        }
    }
}

/// The image, entrypoint and arguments of a step container.
#[derive(Debug, Clone)]
pub struct StepContainer {
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub args: Vec<String>,
}

/// Runs a step's process: fresh environment files, the output through workflow commands and masking,
/// the files applied afterwards, and the outcome. Lines go to the step `step_idx`, or to the job
/// log when `None` (pre and post stages).
pub async fn execute<B: Backend>(
    job_run: &mut JobRun<'_, B>,
    step_idx: Option<usize>,
    command: StepCommand,
    step_env: IndexMap<String, String>,
) -> Result<BodyResult, String> {
    let state = &mut *job_run.state;
    let emitter = &mut *job_run.emitter;
    let (backend, cancel) = (job_run.backend, job_run.cancel);
    let step_timeout = command.step_timeout;
    let temp = temp_dir(backend);
    let files = CommandFiles::new(&temp);
    let mut new_files: Vec<NewFile> = files
        .all()
        .into_iter()
        .map(|(_, path)| NewFile {
            path: path.to_string(),
            contents: Vec::new(),
            mode: 0o666,
        })
        .collect();
    new_files.extend(command.script);
    new_files.append(&mut state.pending_files);
    // An exec takes its files along; a step container copies them from the job's directories,
    // so they must be there first.
    let exec_files = if command.container.is_some() {
        backend.write_files(new_files).await.map_err(|error| {
            format!("cannot write the step's script and environment files: {error}")
        })?;
        Vec::new()
    } else {
        new_files
    };

    let mut env = step_environment(state, &step_env, &files);
    env.extend(command.extra_env);
    // As on GitHub, the variable counts from the runner's settings or from any `env:` the step
    // sees (workflow, job, step, `GITHUB_ENV`).
    let allow_unsecure_commands = state.allow_unsecure_commands
        || env
            .get(ALLOW_UNSECURE_COMMANDS)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let remaining = state.deadline.saturating_duration_since(Instant::now());
    let timeout = step_timeout.map_or(remaining, |step_timeout| step_timeout.min(remaining));
    let job_deadline_binds = step_timeout.is_none_or(|step_timeout| remaining <= step_timeout);
    let container = command.container.map(|container| ContainerRun {
        image: container.image,
        entrypoint: container.entrypoint,
        args: container.args,
        env: env.clone(),
        timeout: Some(timeout),
    });
    let request = ExecRequest {
        argv: command.argv,
        env,
        working_dir: command.working_dir,
        timeout: Some(timeout),
        files: exec_files,
        command_dir: Some(files.dir.clone()),
    };

    let mut processor = CommandProcessor::new(state.step_debug, allow_unsecure_commands);
    let mut outputs = IndexMap::new();
    let mut saved_state = IndexMap::new();
    let (tx, mut rx) = mpsc::channel::<OutputLines>(OUTPUT_CHANNEL_CAPACITY);
    let status = {
        let exec = match container {
            None => Either::Left(backend.exec(request, tx, cancel.clone())),
            Some(run) => Either::Right(
                backend
                    .run_container(run, tx, cancel.clone())
                    .map(|ended| ended.map(ExecEnd::from)),
            ),
        };
        tokio::pin!(exec);
        loop {
            tokio::select! {
                Some(output) = rx.recv() => {
                    let mut sinks = Sinks { outputs: &mut outputs, saved_state: &mut saved_state };
                    handle_output(step_idx, output.lines, &mut processor, state, emitter, &mut sinks).await;
                }
                status = &mut exec => break status,
            }
        }
    };
    while let Ok(Some(output)) = tokio::time::timeout(OUTPUT_TAIL_LIMIT, rx.recv()).await {
        let mut sinks = Sinks {
            outputs: &mut outputs,
            saved_state: &mut saved_state,
        };
        handle_output(
            step_idx,
            output.lines,
            &mut processor,
            state,
            emitter,
            &mut sinks,
        )
        .await;
    }

    // Environment files count even when the step failed, as upstream reads them after every step.
    let sinks = Sinks {
        outputs: &mut outputs,
        saved_state: &mut saved_state,
    };
    let command_dir_empty = matches!(
        status,
        Ok(ExecEnd {
            command_dir_empty: true,
            ..
        })
    );
    let files_result = match command_dir_empty {
        true => Ok(()),
        false => apply_command_files(&files, state, backend, sinks, (emitter, step_idx)).await,
    };

    let outcome = match status.map(|end| end.status) {
        Ok(ExitStatus::Exited(0)) => Conclusion::Success,
        Ok(ExitStatus::Exited(code)) => {
            let hint = if code == 127 {
                " (command not found)"
            } else {
                ""
            };
            emitter
                .log(
                    step_idx,
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
                        step_idx,
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
            emitter.log(step_idx, "The step was cancelled").await;
            Conclusion::Cancelled
        }
        Err(error) => {
            emitter.log(step_idx, &format!("::error::{error}")).await;
            Conclusion::Failure
        }
    };
    let outcome = match files_result {
        Ok(()) => outcome,
        Err(message) => {
            emitter.log(step_idx, &format!("::error::{message}")).await;
            if outcome == Conclusion::Success {
                Conclusion::Failure
            } else {
                outcome
            }
        }
    };
    Ok(BodyResult {
        outcome,
        outputs,
        state: saved_state,
    })
}

/// Where a step's outputs and saved state go.
struct Sinks<'a> {
    outputs: &'a mut IndexMap<String, String>,
    saved_state: &'a mut IndexMap<String, String>,
}

/// The complete environment of a step process: the backend's base env, then
/// [`step_variables`], `GITHUB_PATH` entries in front of `PATH`, and the file-command paths.
fn step_environment(
    state: &JobState,
    step_env: &IndexMap<String, String>,
    files: &CommandFiles,
) -> BTreeMap<String, String> {
    let layers = &state.env;
    let mut env = layers.base.clone();
    env.extend(step_variables(state, step_env));
    if !layers.extra_paths.is_empty() {
        let base = env
            .get("PATH")
            .cloned()
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        let mut path = layers.extra_paths.join(":");
        path.push(':');
        path.push_str(&base);
        env.insert("PATH".into(), path);
    }
    // Only these cannot be changed by any `env:`.
    for (suffix, path) in files.all() {
        env.insert(format!("GITHUB_{suffix}"), path.to_string());
        env.insert(format!("GITEA_{suffix}"), path.to_string());
    }
    env
}

/// A step's variables above the backend's base env: the job env, the job's `container.env`, the
/// built-ins over those (as in act they override the workflow and job env), the step's `env:`
/// over all. This is also the
/// `env` context of the step's fields once its `env:` is evaluated, as act's step evaluator sees
/// the step's env: built-ins included, a job container's own env (`RUNNER_OS`, ...) not.
pub fn step_variables(
    state: &JobState,
    step_env: &IndexMap<String, String>,
) -> IndexMap<String, String> {
    let layers = &state.env;
    let mut env = layers.job.clone();
    env.extend(
        layers
            .container
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    env.extend(
        layers
            .builtin
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    env.extend(
        step_env
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    env
}

/// The env a composite action's steps inherit, as act's composite run context: the calling
/// step's env without its `INPUT_*`, the action's own variables (`action_env`: its inputs as
/// `INPUT_*`, `GITHUB_ACTION_*`), and the built-ins act sets for every step (`CI`, `GITHUB_*`,
/// ...) over those again, so the caller's `env:` does not change them inside the action while the
/// rest (`ImageOS`, `RUNNER_OS`, ...) keeps the caller's value. A nested step's own `env:` wins.
pub fn composite_env(
    state: &JobState,
    caller_env: &IndexMap<String, String>,
    action_env: IndexMap<String, String>,
) -> IndexMap<String, String> {
    let mut env = caller_env.clone();
    env.retain(|name, _| !name.starts_with("INPUT_"));
    env.extend(action_env);
    env.extend(
        state
            .env
            .builtin
            .iter()
            .filter(|(name, _)| contexts::set_for_every_step(name))
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    env
}

/// Runs a batch of output through workflow commands and masking. Runs of plain lines (no command
/// possible) go on as one batch; a command line is handled on its own, after the lines before it
/// were sent and before the lines after it are masked, so an `add-mask` covers exactly the lines
/// that follow it.
async fn handle_output(
    step_idx: Option<usize>,
    lines: LineBatch,
    processor: &mut CommandProcessor,
    state: &mut JobState,
    emitter: &mut Emitter,
    sinks: &mut Sinks<'_>,
) {
    if commands::all_plain(&lines) {
        emitter.log_lines(step_idx, lines).await;
        return;
    }
    let mut plain = LineBatch::new();
    for line in lines.iter() {
        if commands::is_plain(line) {
            plain.push(line);
            continue;
        }
        emitter
            .log_lines(step_idx, std::mem::take(&mut plain))
            .await;
        handle_line(step_idx, line, processor, state, emitter, sinks).await;
    }
    emitter.log_lines(step_idx, plain).await;
}

async fn handle_line(
    step_idx: Option<usize>,
    line: &str,
    processor: &mut CommandProcessor,
    state: &mut JobState,
    emitter: &mut Emitter,
    sinks: &mut Sinks<'_>,
) {
    let processed = processor.process(line);
    for effect in processed.effects {
        match effect {
            Effect::AddMask(value) => {
                if !emitter.masker.add(&value) && emitter.masker.n_refused() == 1 {
                    emitter.log(step_idx, &masking::cap_warning()).await;
                }
            }
            Effect::SetOutput { name, value } => {
                sinks.outputs.insert(name, value);
            }
            Effect::SaveState { name, value } => {
                sinks.saved_state.insert(name, value);
            }
            Effect::SetEnv { name, .. } if command_files::is_refused_env(&name) => {
                let error = format!(
                    "::error::Can't update {name} environment variable using ::set-env:: command."
                );
                emitter.log(step_idx, &error).await;
            }
            Effect::SetEnv { name, value } => {
                state.env.job.insert(name, value);
            }
            Effect::AddPath(path) => state.env.extra_paths.insert(0, path),
        }
    }
    for log_line in processed.log {
        emitter.log(step_idx, &log_line).await;
    }
}

/// The text of the environment file at `path` (empty when the step removed it).
fn file_text(written: &BTreeMap<String, Vec<u8>>, path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    written
        .get(name)
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default()
}

async fn apply_command_files<B: Backend>(
    files: &CommandFiles,
    state: &mut JobState,
    backend: &B,
    sinks: Sinks<'_>,
    (emitter, step_idx): (&Emitter, Option<usize>),
) -> Result<(), String> {
    let describe = |name: &str, error: CommandFileError| format!("{name}: {error}");
    let written = backend
        .read_dir_files(&files.dir)
        .await
        .map_err(|error| format!("cannot read {}: {error}", files.dir))?;
    let env_text = file_text(&written, &files.env);
    for (name, value) in
        command_files::parse_key_values(&env_text).map_err(|error| describe("GITHUB_ENV", error))?
    {
        if command_files::is_refused_env(&name) {
            let error = format!(
                "::error::Can't store {name} output parameter using '$GITHUB_ENV' command."
            );
            emitter.log(step_idx, &error).await;
            continue;
        }
        state.env.job.insert(name, value);
    }
    let output_text = file_text(&written, &files.output);
    for (name, value) in command_files::parse_key_values(&output_text)
        .map_err(|error| describe("GITHUB_OUTPUT", error))?
    {
        sinks.outputs.insert(name, value);
    }
    let state_text = file_text(&written, &files.state);
    for (name, value) in command_files::parse_key_values(&state_text)
        .map_err(|error| describe("GITHUB_STATE", error))?
    {
        sinks.saved_state.insert(name, value);
    }
    let path_text = file_text(&written, &files.path);
    for path in command_files::parse_paths(&path_text) {
        state.env.extra_paths.insert(0, path);
    }
    // Pre and post stages (no step index) have no step of their own to show a summary under.
    if let Some(step_idx) = step_idx {
        let name = files.summary.rsplit('/').next().unwrap_or_default();
        if let Some(written) = written.get(name) {
            state.summaries.add(step_idx, written);
        }
    }
    Ok(())
}
