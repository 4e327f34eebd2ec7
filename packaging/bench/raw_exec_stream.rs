//! The physical limit of the log-pipeline benchmark (packaging/bench/log-pipeline.sh): one
//! `docker exec` of a command in a running container, its output read through the Engine API's
//! attach stream (bollard, as the runner reads a step's output) and thrown away.
//!
//! Usage: `raw_exec_stream CONTAINER COMMAND`, the command run by `bash -c`. Prints
//! `<seconds from the first output byte to the end of the stream> <seconds from the exec's creation
//! to the end> <output bytes>`. The first figure is the streaming alone, what the runner's side of
//! the benchmark times too (from the first line read to the last line stored); timing it inside
//! one process, not as the difference of two CLI runs, keeps the CLI's start out of it.

use std::process::ExitCode;
use std::time::Instant;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [container, command] = args.as_slice() else {
        eprintln!("usage: raw_exec_stream CONTAINER COMMAND");
        return ExitCode::from(2);
    };
    match stream(container, command).await {
        Ok((streaming, total, n_bytes)) => {
            println!("{streaming:.6} {total:.6} {n_bytes}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("raw_exec_stream: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn stream(container: &str, command: &str) -> Result<(f64, f64, u64), String> {
    let docker = Docker::connect_with_local_defaults().map_err(|error| error.to_string())?;
    let started = Instant::now();
    let create = CreateExecOptions {
        cmd: Some(vec![
            "bash".to_string(),
            "-c".to_string(),
            command.to_string(),
        ]),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker
        .create_exec(container, create)
        .await
        .map_err(|error| format!("create exec: {error}"))?;
    // The runner's own frame capacity, so both read the stream alike.
    let start = StartExecOptions {
        output_capacity: Some(64 * 1024),
        ..Default::default()
    };
    let started_exec = docker
        .start_exec(&exec.id, Some(start))
        .await
        .map_err(|error| format!("start exec: {error}"))?;
    let StartExecResults::Attached { mut output, .. } = started_exec else {
        return Err("start exec: not attached".to_string());
    };
    let mut first_byte = None;
    let mut n_bytes = 0u64;
    while let Some(frame) = output.next().await {
        let frame = frame.map_err(|error| format!("read exec output: {error}"))?;
        let message = match frame {
            LogOutput::StdOut { message }
            | LogOutput::StdErr { message }
            | LogOutput::Console { message } => message,
            LogOutput::StdIn { .. } => continue,
        };
        if !message.is_empty() {
            first_byte.get_or_insert_with(Instant::now);
            n_bytes += message.len() as u64;
        }
    }
    let ended = Instant::now();
    let streaming = first_byte.map_or(0.0, |first| (ended - first).as_secs_f64());
    Ok((streaming, (ended - started).as_secs_f64(), n_bytes))
}
