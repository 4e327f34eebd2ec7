//! Runs `act_runner` as a real process in a scratch directory against the in-process fake Gitea:
//! register through the CLI, start and signal the daemon, read its log. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::support::fake_gitea::{FakeGitea, FakeOptions, TaskSnapshot};

/// The registration token the fake accepts.
pub const REGISTRATION_TOKEN: &str = "daemon-tests-registration-token";

/// The bound on a whole test.
pub async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(300), test)
        .await
        .expect("the test did not finish within 300 s")
}

pub async fn start_fake() -> FakeGitea {
    let gitea = FakeGitea::start(FakeOptions::default())
        .await
        .expect("the fake Gitea starts");
    gitea.add_registration_token(REGISTRATION_TOKEN);
    gitea
}

/// A runner's scratch directory: `config.yaml`, `.runner`, the spool, host work dirs.
pub struct RunnerDir {
    dir: tempfile::TempDir,
}

impl RunnerDir {
    /// Writes a config (fast polling, plus `runner_extra` lines under `runner:`) and registers
    /// through `act_runner register` with `labels`.
    pub async fn register(gitea: &FakeGitea, labels: &str, runner_extra: &str) -> RunnerDir {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let runner_dir = RunnerDir { dir };
        let config = format!(
            "log:\n  level: info\nrunner:\n  file: {runner_file}\n  fetch_interval: 200ms\n  fetch_interval_max: 1s\n  report_close_timeout: 3s\n{runner_extra}host:\n  workdir_parent: {work}\n",
            runner_file = runner_dir.path().join(".runner").display(),
            work = runner_dir.path().join("work").display(),
        );
        std::fs::write(runner_dir.config_path(), config).expect("write config.yaml");
        let output = Command::new(env!("CARGO_BIN_EXE_act_runner"))
            .arg("-c")
            .arg(runner_dir.config_path())
            .args(["register", "--no-interactive", "--instance"])
            .arg(gitea.connect_url())
            .args([
                "--token",
                REGISTRATION_TOKEN,
                "--name",
                "daemon-test",
                "--labels",
                labels,
            ])
            .current_dir(runner_dir.path())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), output)
            .await
            .expect("register finishes")
            .expect("register runs");
        assert!(
            output.status.success(),
            "register failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        runner_dir
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.yaml")
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.path().join("spool")
    }

    /// Replaces the runner token in `.runner` so Gitea rejects the runner.
    pub fn corrupt_token(&self) {
        let path = self.path().join(".runner");
        let text = std::fs::read_to_string(&path).expect("read .runner");
        let mut registration: serde_json::Value =
            serde_json::from_str(&text).expect(".runner is JSON");
        registration["token"] = serde_json::Value::String("0".repeat(40));
        std::fs::write(&path, registration.to_string()).expect("write .runner");
    }
}

/// A running `act_runner daemon`.
pub struct Daemon {
    child: Child,
    log_path: PathBuf,
}

impl Daemon {
    pub async fn start(dir: &RunnerDir, args: &[&str]) -> Daemon {
        Daemon::start_with_env(dir, args, &[]).await
    }

    /// [`Daemon::start`] with more environment variables for the daemon process.
    pub async fn start_with_env(dir: &RunnerDir, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(
            dir,
            Command::new(env!("CARGO_BIN_EXE_act_runner")),
            args,
            env,
        )
    }

    /// [`Daemon::start`] by `sh -c '<prelude>; exec act_runner …'`: the daemon inherits what the
    /// prelude opens (`exec 7<file`), as from an admin's shell.
    pub async fn start_after_shell(dir: &RunnerDir, prelude: &str) -> Daemon {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!("{prelude}; exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_act_runner"));
        Daemon::spawn(dir, shell, &[], &[])
    }

    fn spawn(dir: &RunnerDir, mut command: Command, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log_path = dir.path().join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let log = std::fs::File::create(&log_path).expect("create the daemon log");
        let child = command
            .arg("-c")
            .arg(dir.config_path())
            .arg("daemon")
            .args(args)
            // Each daemon its own default cache.dir: the index is locked by the process using it.
            .env("XDG_CACHE_HOME", dir.path().join("xdg-cache"))
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start act_runner daemon");
        Daemon { child, log_path }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id().expect("the daemon is running") as i32)
    }

    /// What the daemon printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits (at most 30 s) until the task's log holds `line`; fails with the rows and this log.
    pub async fn wait_for_line(&self, gitea: &FakeGitea, task_id: i64, line: &str) {
        let found = gitea
            .wait_until(Duration::from_secs(30), |gitea| {
                gitea.task_log_lines(task_id).iter().any(|row| row == line)
            })
            .await;
        assert!(
            found,
            "no row {line:?}; rows: {:#?}\ndaemon log:\n{}",
            gitea.task_log_lines(task_id),
            self.log()
        );
    }

    /// Waits (at most 60 s) until the task is final on the fake; fails with this log.
    pub async fn wait_final(&self, gitea: &FakeGitea, task_id: i64) -> TaskSnapshot {
        gitea
            .wait_task_final(task_id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("task not final; daemon log:\n{}", self.log()))
    }

    pub fn signal(&self, signal: Signal) {
        signal::kill(self.pid(), signal).expect("signal the daemon");
    }

    /// The exit code, or `None` if it is still running after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => None,
        }
    }

    /// SIGTERM and wait (bounded); the log is printed if it does not exit 0.
    pub async fn stop(mut self) {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(60)).await;
        let log = self.log();
        assert_eq!(status, Some(0), "daemon did not stop cleanly:\n{log}");
    }

    /// `kill -9`, then reap it.
    pub async fn kill_hard(mut self) {
        self.signal(Signal::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
