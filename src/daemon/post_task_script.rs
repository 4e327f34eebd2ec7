//! `runner.post_task_script`: a host executable run once after each task, when its job has ended
//! and its containers or directories are gone, while the task still holds its capacity slot (so
//! host housekeeping never races the next job). As upstream's:
//! - it is executed directly (no shell), in a process group of its own;
//! - its environment is `runner.envs` alone (no `PATH` unless given there) plus `GITEA_TASK_ID`,
//!   `GITEA_WORKSPACE`, `GITEA_JOB_RESULT` (`success|failure|cancelled|skipped|unknown`) and,
//!   when known, `GITEA_RUN_ID` and `GITEA_REPOSITORY`;
//! - it gets `runner.post_task_script_timeout` of its own, detached from the task's deadline and
//!   cancellation; past it the whole group is killed;
//! - each line it prints goes to the runner's log (never the job's), bounded in length and count;
//! - a failure, a timeout or a failed start is a warning: the job's result stands.
//!
//! May use: `config`, `executor::event`, tokio, nix (the group kill). Never: `client`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use indexmap::IndexMap;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::time::Instant;

use crate::config::RunnerConfig;
use crate::executor::conclusion_name;
use crate::executor::event::Conclusion;

/// How long output still arriving after the script exited is read (a background child may hold
/// the pipes open for ever).
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long a killed script's group is given to be reaped.
const REAP_LIMIT: Duration = Duration::from_secs(5);
/// A longer line is cut here in the runner's log.
const MAX_LINE_BYTES: usize = 4096;
/// Lines per stream written to the runner's log; the rest is read and dropped.
const MAX_LOGGED_LINES: usize = 1000;

/// What the script is told about the task.
#[derive(Debug, Clone)]
pub struct FinishedTask {
    pub task_id: i64,
    /// The workspace the job used (it may be gone already); empty when no job ran.
    pub workspace: String,
    /// `None` when the job never reached a result.
    pub result: Option<Conclusion>,
    /// Empty when unknown.
    pub run_id: String,
    /// `owner/name`; empty when unknown.
    pub repository: String,
}

impl FinishedTask {
    /// A task refused before any job ran (it failed).
    pub fn refused(task_id: i64) -> FinishedTask {
        FinishedTask {
            task_id,
            workspace: String::new(),
            result: Some(Conclusion::Failure),
            run_id: String::new(),
            repository: String::new(),
        }
    }
}

/// Runs `runner.post_task_script`, when set, within `runner.post_task_script_timeout`.
pub async fn run_configured(runner: &RunnerConfig, task: &FinishedTask) {
    if let Some(script) = &runner.post_task_script {
        run(script, runner.post_task_script_timeout, &runner.envs, task).await;
    }
}

/// Runs the script to its end or its timeout; every problem is a warning in the runner's log.
pub async fn run(
    script: &Path,
    timeout: Duration,
    runner_envs: &IndexMap<String, String>,
    task: &FinishedTask,
) {
    let task_id = task.task_id;
    let mut command = tokio::process::Command::new(script);
    command
        .env_clear()
        .envs(runner_envs)
        .envs(task_env(task))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    tracing::info!(task_id, script = %script.display(), "running the post-task script");
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(task_id, script = %script.display(), error = %error, "the post-task script did not start");
            return;
        }
    };
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let output = async {
        tokio::join!(
            log_stream(task_id, "stdout", stdout),
            log_stream(task_id, "stderr", stderr)
        );
    };
    tokio::pin!(output);
    let deadline = Instant::now() + timeout;
    let mut output_done = false;
    let ended = loop {
        tokio::select! {
            status = child.wait() => break Some(status),
            () = &mut output, if !output_done => output_done = true,
            () = tokio::time::sleep_until(deadline) => break None,
        }
    };
    let status = match ended {
        Some(status) => status,
        None => {
            // The whole group: a child the script started in the background goes too.
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            let _ = tokio::time::timeout(REAP_LIMIT, child.wait()).await;
            tracing::warn!(task_id, script = %script.display(), timeout = %humantime::format_duration(timeout), "the post-task script timed out and was killed");
            return;
        }
    };
    if !output_done
        && tokio::time::timeout(DRAIN_LIMIT, &mut output)
            .await
            .is_err()
    {
        tracing::warn!(task_id, script = %script.display(), "the post-task script's output stayed open after it exited; the rest is not read");
    }
    match status {
        Ok(status) if status.success() => {
            tracing::info!(task_id, script = %script.display(), "the post-task script finished");
        }
        Ok(status) => {
            let code = status.code().map_or_else(
                || String::from("none (killed by a signal)"),
                |code| code.to_string(),
            );
            tracing::warn!(task_id, script = %script.display(), exit_code = %code, "the post-task script failed");
        }
        Err(error) => {
            tracing::warn!(task_id, script = %script.display(), error = %error, "cannot wait for the post-task script");
        }
    }
}

/// The `GITEA_*` variables the script gets.
fn task_env(task: &FinishedTask) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("GITEA_TASK_ID", task.task_id.to_string()),
        ("GITEA_WORKSPACE", task.workspace.to_string()),
        (
            "GITEA_JOB_RESULT",
            task.result.map_or("unknown", conclusion_name).to_string(),
        ),
    ];
    if !task.run_id.is_empty() {
        env.push(("GITEA_RUN_ID", task.run_id.to_string()));
    }
    if !task.repository.is_empty() {
        env.push(("GITEA_REPOSITORY", task.repository.to_string()));
    }
    env
}

/// Logs each line of `stream` (cut at [`MAX_LINE_BYTES`], at most [`MAX_LOGGED_LINES`]) and reads
/// on to its end, so the script never blocks on a full pipe.
async fn log_stream(task_id: i64, stream: &'static str, reader: Option<impl AsyncRead + Unpin>) {
    let Some(mut reader) = reader else {
        return;
    };
    let mut lines = LineCutter::default();
    let mut chunk = [0_u8; 8192];
    loop {
        let n_read = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n_read) => n_read,
        };
        lines.push(&chunk[..n_read], |line| log_line(task_id, stream, line));
    }
    lines.finish(|line| log_line(task_id, stream, line));
    if lines.n_lines > MAX_LOGGED_LINES {
        tracing::warn!(
            task_id,
            stream,
            n_lines = lines.n_lines,
            "the post-task script printed more lines than the runner logs; the rest was dropped"
        );
    }
}

fn log_line(task_id: i64, stream: &'static str, line: Option<&[u8]>) {
    if let Some(line) = line {
        let text = String::from_utf8_lossy(line);
        tracing::info!(task_id, stream, line = %text.trim_end_matches('\r'), "post-task script output");
    }
}

/// Splits bytes into lines of at most [`MAX_LINE_BYTES`], counting them; hands `Some(line)` for
/// the first [`MAX_LOGGED_LINES`] and `None` after.
#[derive(Default)]
struct LineCutter {
    line: Vec<u8>,
    n_lines: usize,
}

impl LineCutter {
    fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(Option<&[u8]>)) {
        for &byte in bytes {
            if byte == b'\n' {
                self.end_line(&mut emit);
            } else if self.line.len() < MAX_LINE_BYTES {
                self.line.push(byte);
            }
        }
    }

    fn finish(&mut self, mut emit: impl FnMut(Option<&[u8]>)) {
        if !self.line.is_empty() {
            self.end_line(&mut emit);
        }
    }

    fn end_line(&mut self, emit: &mut impl FnMut(Option<&[u8]>)) {
        self.n_lines += 1;
        emit((self.n_lines <= MAX_LOGGED_LINES).then_some(self.line.as_slice()));
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn script(dir: &Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("post-task.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        path
    }

    fn task(workspace: &str) -> FinishedTask {
        FinishedTask {
            task_id: 3,
            workspace: workspace.to_string(),
            result: Some(Conclusion::Failure),
            run_id: "99".to_string(),
            repository: "acme/widget".to_string(),
        }
    }

    #[tokio::test]
    async fn the_script_sees_the_runner_envs_and_the_task_but_not_the_runner_process_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let path = script(dir.path(), &format!("/usr/bin/env > {}\n", out.display()));
        let envs = IndexMap::from([("CUSTOM".to_string(), "runner-env".to_string())]);
        run(&path, Duration::from_secs(10), &envs, &task("/tmp/ws")).await;
        let text = std::fs::read_to_string(&out).unwrap();
        // What `sh` sets by itself.
        let shell_own = ["PWD=", "OLDPWD=", "SHLVL=", "_="];
        let mut lines: Vec<&str> = text
            .lines()
            .filter(|line| !shell_own.iter().any(|own| line.starts_with(own)))
            .collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                "CUSTOM=runner-env",
                "GITEA_JOB_RESULT=failure",
                "GITEA_REPOSITORY=acme/widget",
                "GITEA_RUN_ID=99",
                "GITEA_TASK_ID=3",
                "GITEA_WORKSPACE=/tmp/ws",
            ]
        );
    }

    #[tokio::test]
    async fn a_script_past_its_timeout_is_killed_with_its_background_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let path = script(
            dir.path(),
            &format!("/bin/sleep 60 &\necho $! > {}\nwait\n", pid_file.display()),
        );
        let started = std::time::Instant::now();
        run(
            &path,
            Duration::from_millis(500),
            &IndexMap::new(),
            &task(""),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed and reaped by init: gone, or at most a zombie for a moment.
        let mut alive = true;
        for _ in 0..50 {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z ") {
                alive = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!alive, "the background child {pid} outlived the timeout");
    }

    #[tokio::test]
    async fn a_missing_script_or_a_failing_one_is_only_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        run(
            &dir.path().join("missing"),
            Duration::from_secs(5),
            &IndexMap::new(),
            &task(""),
        )
        .await;
        let path = script(dir.path(), "exit 3\n");
        run(&path, Duration::from_secs(5), &IndexMap::new(), &task("")).await;
    }

    #[test]
    fn lines_are_cut_and_counted_and_only_the_first_ones_are_handed_out() {
        let mut cutter = LineCutter::default();
        let mut seen: Vec<Option<usize>> = Vec::new();
        let long = vec![b'x'; MAX_LINE_BYTES * 3];
        cutter.push(&long, |line| seen.push(line.map(<[u8]>::len)));
        cutter.push(b"\nshort\n", |line| seen.push(line.map(<[u8]>::len)));
        assert_eq!(seen, [Some(MAX_LINE_BYTES), Some(5)]);
        let many = b"a\n".repeat(MAX_LOGGED_LINES);
        let mut n_handed = 0;
        let mut n_dropped = 0;
        cutter.push(&many, |line| match line {
            Some(_) => n_handed += 1,
            None => n_dropped += 1,
        });
        cutter.push(b"tail", |_| {});
        cutter.finish(|line| assert!(line.is_none()));
        assert_eq!((n_handed, n_dropped), (MAX_LOGGED_LINES - 2, 2));
        assert_eq!(cutter.n_lines, MAX_LOGGED_LINES + 3);
    }
}
