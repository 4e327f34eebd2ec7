//! Steps by `docker exec`: output forwarded as frames arrive (the lines each frame completes, in
//! one batch), the exit code taken from the wrapping `sh`'s report or else read with
//! `inspect_exec`, and on timeout or cancellation every process the exec started killed inside
//! the container (not merely detached from, which would leave it running).
//!
//! With `runner.allocate_pty` the exec gets a terminal (`Tty`) as stdin, stdout and stderr, as
//! upstream's act does: `test -t 1` holds and tools print colours and progress as for a person.
//! What that means for the log: the terminal is one stream, so stdout and stderr arrive merged in
//! the order written, which is what the wrapping `sh` does for a step without a terminal too (see
//! `inline_files`), and an `add-mask` on one covers the other. The exec is started without `Tty`
//! all the same, so Docker still frames the output (all of it as stdout): a raw stream has no
//! frames, and bollard guesses them from a read's first byte, which binary output can fool. The
//! terminal turns `\n` into `\r\n`; the line splitter ends a line at either, so the log and the
//! masker see the same lines as without a terminal. The wrapping `sh`'s report arrives on that
//! same stream, possibly after a step's unterminated last line, and is taken out of it as it is
//! out of stderr otherwise. Reading stdin waits for input that never comes (no one attaches it),
//! as it does upstream.
//!
//! How the kill finds the processes: each exec gets a unique `ACT_RUNNER_EXEC_ID` in its environment;
//! children inherit it, so a root `sh` exec that scans `/proc/*/environ` for it finds the step's
//! whole process tree, including daemons that left its process group.

use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inline_files;
use super::lines::LineSplitter;
use super::{bounded, resolve_path};
use crate::executor::backend::{
    BackendError, ExecEnd, ExecRequest, ExitStatus, OutputLines, Stream,
};
use crate::executor::line_batch::LineBatch;

/// The variable marking a step's processes.
pub const EXEC_MARKER_VAR: &str = "ACT_RUNNER_EXEC_ID";
/// How long the output may keep flowing after a kill before we stop reading.
const KILL_DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long `inspect_exec` may report "running" after the output ended.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(10);

/// Runs one command in `container` and forwards its output; with `terminal`, on a terminal.
pub async fn run(
    docker: &Docker,
    container: &str,
    workspace: &str,
    terminal: bool,
    request: ExecRequest,
    output: mpsc::Sender<OutputLines>,
    cancel: CancellationToken,
) -> Result<ExecEnd, BackendError> {
    let deadline = request.timeout.map(|timeout| Instant::now() + timeout);
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let mut env: Vec<String> = request
        .env
        .iter()
        .filter(|(key, _)| key.as_str() != EXEC_MARKER_VAR)
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    env.push(format!("{EXEC_MARKER_VAR}={marker}"));
    let working_dir = match request.working_dir.as_deref() {
        Some(dir) => resolve_path(workspace, dir),
        None => workspace.to_string(),
    };
    let mut files = request.files;
    for file in &mut files {
        file.path = resolve_path(workspace, &file.path);
    }
    let command_dir = request
        .command_dir
        .as_deref()
        .map(|dir| resolve_path(workspace, dir));
    // Not the process marker: that one is in the step's environment, which steps print.
    let report_marker = uuid::Uuid::new_v4().simple().to_string();
    let report = command_dir
        .as_deref()
        .map(|command_dir| inline_files::Report {
            marker: &report_marker,
            command_dir,
        });
    let (argv, files, mut watch) = match inline_files::wrap(&request.argv, &files, report) {
        Some(wrapped) => (
            wrapped,
            Vec::new(),
            report.map(|report| ReportWatch::new(report, terminal)),
        ),
        // A terminal is one stream already.
        None if terminal => (request.argv, files, None),
        None => {
            let (argv, one_stream_env) = inline_files::one_stream(request.argv, env);
            env = one_stream_env;
            (argv, files, None)
        }
    };
    let create = CreateExecOptions {
        cmd: Some(argv),
        env: Some(env),
        working_dir: Some(working_dir),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        attach_stdin: Some(false),
        tty: Some(terminal),
        ..Default::default()
    };
    let write_files = async {
        match files.is_empty() {
            true => Ok(()),
            false => super::files::write_all(docker, container, &files).await,
        }
    };
    // Both run to their end (`join`, not `try_join`): the exec starts only once its files exist.
    let (written, created) = tokio::join!(
        write_files,
        bounded("create exec", docker.create_exec(container, create))
    );
    written?;
    let exec_id = created?.id;
    let start = StartExecOptions {
        output_capacity: Some(64 * 1024),
        ..Default::default()
    };
    let started = bounded("start exec", docker.start_exec(&exec_id, Some(start))).await?;
    let StartExecResults::Attached {
        output: mut frames, ..
    } = started
    else {
        return Err(BackendError::Docker(String::from(
            "start exec: not attached",
        )));
    };

    let mut stdout = LineSplitter::default();
    let mut stderr = LineSplitter::default();
    let ending = loop {
        let frame = tokio::select! {
            biased;
            _ = cancel.cancelled() => break Ending::Cancelled,
            _ = sleep_until_deadline(deadline) => break Ending::TimedOut,
            frame = frames.next() => frame,
        };
        match frame {
            None => break Ending::Finished,
            Some(Err(err)) => break Ending::Broken(super::describe(&err)),
            Some(Ok(frame)) => {
                let forwarded = forward(frame, &mut stdout, &mut stderr, &output, watch.as_mut());
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break Ending::Cancelled,
                    _ = sleep_until_deadline(deadline) => break Ending::TimedOut,
                    _ = forwarded => {}
                }
            }
        }
    };

    if !matches!(ending, Ending::Finished) {
        tracing::debug!(container, "killing exec processes");
        kill_marked(docker, container, &marker).await;
        // Whatever the step printed before dying still belongs in its log.
        let drain = async {
            while let Some(Ok(frame)) = frames.next().await {
                forward(frame, &mut stdout, &mut stderr, &output, watch.as_mut()).await;
            }
        };
        let _ = tokio::time::timeout(KILL_DRAIN_LIMIT, drain).await;
    }
    for (splitter, stream) in [(&mut stdout, Stream::Stdout), (&mut stderr, Stream::Stderr)] {
        if let Some(line) = splitter.finish() {
            let lines = match watch.as_mut() {
                Some(watch) if watch.stream == stream => watch.take_from(LineBatch::one(line)),
                _ => LineBatch::one(line),
            };
            if !lines.is_empty() {
                let _ = output.send(OutputLines { stream, lines }).await;
            }
        }
    }

    match ending {
        Ending::Cancelled => Ok(ExitStatus::Cancelled.into()),
        Ending::TimedOut => Ok(ExitStatus::TimedOut.into()),
        Ending::Broken(reason) => Err(BackendError::Docker(format!(
            "exec output stream broke: {reason}"
        ))),
        Ending::Finished => match watch.and_then(|watch| watch.seen) {
            Some(reported) => Ok(ExecEnd {
                status: ExitStatus::Exited(reported.status),
                command_dir_empty: !reported.command_files_written,
            }),
            None => Ok(ExitStatus::Exited(exit_code(docker, &exec_id).await?).into()),
        },
    }
}

/// Watches stderr for the wrapping `sh`'s report (see `inline_files`).
pub(super) struct ReportWatch {
    marker: String,
    /// Where the report comes: stderr, or with a terminal the one stream there is, stdout.
    stream: Stream,
    seen: Option<inline_files::Reported>,
}

impl ReportWatch {
    fn new(report: inline_files::Report, terminal: bool) -> ReportWatch {
        ReportWatch {
            marker: report.marker.to_string(),
            stream: if terminal {
                Stream::Stdout
            } else {
                Stream::Stderr
            },
            seen: None,
        }
    }

    /// The lines without the report, which is kept if there was one.
    fn take_from(&mut self, lines: LineBatch) -> LineBatch {
        let (kept, reported) = inline_files::take_report(lines, &self.marker);
        if reported.is_some() {
            self.seen = reported;
        }
        kept
    }
}

enum Ending {
    Finished,
    Cancelled,
    TimedOut,
    Broken(String),
}

pub(super) async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sends the lines `frame` completes; those of the stream the report comes on go through `watch`
/// first, when there is one.
pub(super) async fn forward(
    frame: LogOutput,
    stdout: &mut LineSplitter,
    stderr: &mut LineSplitter,
    output: &mpsc::Sender<OutputLines>,
    watch: Option<&mut ReportWatch>,
) {
    let (lines, stream) = match frame {
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            (stdout.push(&message), Stream::Stdout)
        }
        LogOutput::StdErr { message } => (stderr.push(&message), Stream::Stderr),
        LogOutput::StdIn { .. } => return,
    };
    let lines = match watch {
        Some(watch) if watch.stream == stream => watch.take_from(lines),
        _ => lines,
    };
    if !lines.is_empty() {
        // A dropped receiver means nobody wants the output; the command still runs to its end.
        let _ = output.send(OutputLines { stream, lines }).await;
    }
}

/// The exit code, once Docker has recorded it (it can lag the end of the output briefly).
async fn exit_code(docker: &Docker, exec_id: &str) -> Result<i64, BackendError> {
    let give_up = Instant::now() + EXIT_CODE_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        let inspect = bounded("inspect exec", docker.inspect_exec(exec_id)).await?;
        if inspect.running != Some(true)
            && let Some(code) = inspect.exit_code
        {
            return Ok(code);
        }
        if Instant::now() >= give_up {
            return Err(BackendError::Docker(String::from(
                "exec output ended but no exit code was recorded",
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Kills, as root inside the container, every process whose environment carries `marker`. Best
/// effort: an image without `sh` keeps its processes until the container is removed at cleanup.
pub async fn kill_marked(docker: &Docker, container: &str, marker: &str) {
    // Stop every marked process first, then kill them: killed one by one, a parent could see its
    // child die and run its next command before its own turn came.
    const SCRIPT: &str = r#"m="$1"
for round in 1 2 3 4 5; do
  pids=
  for d in /proc/[0-9]*; do
    if tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qxF "$m"; then
      pids="$pids ${d#/proc/}"
    fi
  done
  [ -z "$pids" ] && exit 0
  kill -STOP $pids 2>/dev/null
  kill -KILL $pids 2>/dev/null
  sleep 0.1 2>/dev/null || sleep 1
done"#;
    let create = CreateExecOptions {
        cmd: Some(vec![
            String::from("sh"),
            String::from("-c"),
            String::from(SCRIPT),
            String::from("act-runner-kill"),
            format!("{EXEC_MARKER_VAR}={marker}"),
        ]),
        user: Some(String::from("0")),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let kill = async {
        let exec_id = bounded("create kill exec", docker.create_exec(container, create))
            .await?
            .id;
        if let StartExecResults::Attached { mut output, .. } =
            bounded("start kill exec", docker.start_exec(&exec_id, None)).await?
        {
            while output.next().await.is_some() {}
        }
        Ok::<(), BackendError>(())
    };
    match tokio::time::timeout(super::API_TIMEOUT, kill).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(container, error = %err, "cannot kill exec processes"),
        Err(_) => tracing::warn!(container, "killing exec processes did not finish"),
    }
}
