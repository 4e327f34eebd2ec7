//! The real daemon under systemd's protocols, without systemd: `systemd-socket-activate` hands
//! `act_runner daemon` a listening socket named `metrics`, and the test plays the service manager
//! by binding the `NOTIFY_SOCKET` datagram socket and setting `WATCHDOG_USEC`. Against the fake
//! Gitea it checks: `/metrics` served on the inherited socket, a host job that sees none of the
//! systemd variables, the exact notify sequence (READY with STATUS, STATUS per job, STOPPING,
//! EXTEND_TIMEOUT on SIGTERM) and the watchdog period, also through a Gitea outage, which is not
//! a wedge of the runner.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use act_runner::client::Method;
use act_runner::client::proto::runner::Result as TaskResult;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::net::UnixDatagram;
use tokio::time::Instant;

use super::require_tool;
use crate::daemon::harness::{RunnerDir, bounded, start_fake};
use crate::support::fake_gitea::{FakeGitea, Faults, InjectedError, TaskSpec};

/// `WatchdogSec=2s`: pings are due every second.
pub const WATCHDOG: Duration = Duration::from_secs(2);

/// What the test, as the service manager, received on `NOTIFY_SOCKET`.
#[derive(Clone, Default)]
pub struct Received {
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Received {
    pub fn listen(socket: UnixDatagram) -> Received {
        let received = Received::default();
        let messages = Arc::clone(&received.messages);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).trim_end().to_owned();
                act_runner::sync::lock(&messages).push((Instant::now(), text));
            }
        });
        received
    }

    /// Everything but the watchdog pings, in arrival order, from message `from` on.
    pub fn lifecycle(&self, from: usize) -> Vec<String> {
        act_runner::sync::lock(&self.messages)[from..]
            .iter()
            .filter(|(_, text)| text != "WATCHDOG=1")
            .map(|(_, text)| text.clone())
            .collect()
    }

    pub fn pings_between(&self, start: Instant, end: Instant) -> Vec<Instant> {
        act_runner::sync::lock(&self.messages)
            .iter()
            .filter(|(at, text)| text == "WATCHDOG=1" && *at >= start && *at <= end)
            .map(|(at, _)| *at)
            .collect()
    }

    fn len(&self) -> usize {
        act_runner::sync::lock(&self.messages).len()
    }

    pub async fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&self.lifecycle(0)) {
            assert!(
                Instant::now() < deadline,
                "no {what} within 30 s: {:?}",
                self.lifecycle(0)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `act_runner daemon` started through `systemd-socket-activate`, or directly with the notify
/// and watchdog variables.
pub struct Activated {
    child: tokio::process::Child,
    log_path: PathBuf,
}

impl Activated {
    fn start(dir: &RunnerDir, metrics_addr: &str, notify_path: &std::path::Path) -> Activated {
        let mut command = tokio::process::Command::new("systemd-socket-activate");
        command
            .args(["-l", metrics_addr, "--fdname=metrics"])
            .arg("-E")
            .arg(format!("NOTIFY_SOCKET={}", notify_path.display()))
            .arg("-E")
            .arg(format!("WATCHDOG_USEC={}", WATCHDOG.as_micros()))
            .arg(env!("CARGO_BIN_EXE_act_runner"));
        Activated::spawn(command, dir)
    }

    /// `act_runner daemon` with `NOTIFY_SOCKET` and `WATCHDOG_USEC`, without a passed socket.
    pub fn direct(dir: &RunnerDir, notify_path: &std::path::Path) -> Activated {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_act_runner"));
        command
            .env("NOTIFY_SOCKET", notify_path)
            .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string());
        Activated::spawn(command, dir)
    }

    /// Appends `-c <config> daemon` to `command` and starts it in the runner's directory.
    fn spawn(mut command: tokio::process::Command, dir: &RunnerDir) -> Activated {
        let log_path = dir.path().join("daemon-under-test.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = command
            .arg("-c")
            .arg(dir.config_path())
            .arg("daemon")
            .env("XDG_CACHE_HOME", dir.path().join("xdg-cache"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start the daemon");
        Activated { child, log_path }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn signal(&self, signal: Signal) {
        // systemd-socket-activate execs the daemon: same pid.
        let pid = Pid::from_raw(self.child.id().expect("running") as i32);
        signal::kill(pid, signal).unwrap();
    }

    pub async fn wait_exit(&mut self) -> Option<i32> {
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => None,
        }
    }
}

/// Fails the job if any of the runner's systemd interface reached it.
const JOB_ENV_CHECK: &str =
    "if env | grep -E '^(LISTEN_|NOTIFY_SOCKET|WATCHDOG_)'; then exit 1; fi";

fn workflow(run: &str) -> String {
    let indented: String = run
        .lines()
        .map(|line| format!("          {line}\n"))
        .collect();
    format!(
        "on: push\njobs:\n  job:\n    runs-on: host-test\n    steps:\n      - run: |\n{indented}"
    )
}

fn scrape(addr: &str) -> String {
    // systemd-socket-activate binds the socket a moment after it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match std::net::TcpStream::connect(addr) {
            Ok(stream) => break stream,
            Err(error) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "cannot connect to {addr}: {error}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

async fn wait_final(gitea: &FakeGitea, task_id: i64, daemon: &Activated) -> TaskResult {
    let task = gitea
        .wait_task_final(task_id, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("task {task_id} not final; log:\n{}", daemon.log()));
    task.result
}

/// Asserts pings came at about half of `WatchdogSec=` and never a whole `WatchdogSec=` apart.
pub fn assert_ping_period(pings: &[Instant], what: &str) {
    assert!(pings.len() >= 3, "{what}: only {} pings", pings.len());
    let mut gaps: Vec<Duration> = pings.windows(2).map(|pair| pair[1] - pair[0]).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    let half = WATCHDOG / 2;
    assert!(
        median >= half.mul_f64(0.8) && median <= half.mul_f64(1.3),
        "{what}: median gap {median:?}, expected about {half:?}: {gaps:?}"
    );
    assert!(
        gaps[gaps.len() - 1] < WATCHDOG,
        "{what}: a gap reached WatchdogSec: {gaps:?}"
    );
}

#[tokio::test]
async fn socket_activated_daemon_notifies_pings_and_drains() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let extra = "  shutdown_timeout: 20s\n  state_report_interval: 1s\n  log_report_interval: 1s\n  log_report_max_latency: 300ms\n";
        let dir = RunnerDir::register(&gitea, "host-test:host", extra).await;
        let notify_path = dir.path().join("notify");
        let received = Received::listen(UnixDatagram::bind(&notify_path).unwrap());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let mut daemon = Activated::start(&dir, &metrics_addr, &notify_path);
        // The first connection starts the daemon (as systemd does); it waits in the socket's
        // backlog until the daemon serves it. metrics.enabled is off: only the inherited socket
        // can answer.
        let answer = {
            let metrics_addr = metrics_addr.clone();
            tokio::task::spawn_blocking(move || scrape(&metrics_addr))
                .await
                .unwrap()
        };
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}\n{}", daemon.log());
        assert!(answer.contains("act_runner_"), "{answer}");

        received
            .wait_for("READY", |messages| messages.iter().any(|m| m.starts_with("READY=1")))
            .await;
        assert_eq!(
            received.lifecycle(0),
            ["STATUS=idle 0/1", "READY=1\nSTATUS=idle 0/1"],
            "{}",
            daemon.log()
        );
        assert!(
            daemon.log().contains(&format!("addr={metrics_addr}")),
            "{}",
            daemon.log()
        );

        // Gitea failing every FetchTask is a backoff, not a wedge: pings go on.
        let healthy_from = Instant::now();
        tokio::time::sleep(WATCHDOG * 2).await;
        let fault_from = received.len();
        let fault_start = Instant::now();
        gitea.set_faults(Method::FetchTask, Faults::always(InjectedError::GiteaInternal));
        tokio::time::sleep(WATCHDOG * 2).await;
        gitea.clear_faults();
        received
            .wait_for("idle after the outage", |messages| {
                messages.last().is_some_and(|m| m == "STATUS=idle 0/1")
            })
            .await;
        let during_fault = received.lifecycle(fault_from);
        assert!(
            during_fault[..during_fault.len() - 1]
                .iter()
                .all(|m| m.starts_with("STATUS=backoff ") && m.ends_with(": cannot reach Gitea")),
            "{during_fault:?}"
        );
        assert!(!during_fault.is_empty(), "no backoff status");
        assert_ping_period(
            &received.pings_between(healthy_from, fault_start),
            "while polling",
        );
        assert_ping_period(
            &received.pings_between(fault_start, Instant::now()),
            "while Gitea fails",
        );

        // A job: STATUS says so, and the job sees no systemd variable.
        let job_from = received.len();
        let first = gitea.enqueue_task(
            TaskSpec::from_workflow(&workflow(&format!("{JOB_ENV_CHECK}\necho clean"))).unwrap(),
        );
        assert_eq!(wait_final(&gitea, first, &daemon).await, TaskResult::Success);
        assert!(gitea.task_log_lines(first).iter().any(|line| line == "clean"));
        received
            .wait_for("idle after the job", |messages| {
                messages.last().is_some_and(|m| m == "STATUS=idle 0/1")
            })
            .await;
        let job_messages = received.lifecycle(job_from);
        assert_eq!(job_messages.len(), 2, "{job_messages:?}");
        assert!(
            job_messages[0].starts_with("STATUS=running 1/1: "),
            "{job_messages:?}"
        );
        assert_eq!(job_messages[1], "STATUS=idle 0/1");

        // SIGTERM while a second job runs: STOPPING, EXTEND_TIMEOUT, and the job still reports.
        let second_from = received.len();
        let second = gitea.enqueue_task(
            TaskSpec::from_workflow(&workflow("echo started\nsleep 3\necho finished")).unwrap(),
        );
        received
            .wait_for("the second job's STATUS", |messages| {
                messages.last().is_some_and(|m| m.starts_with("STATUS=running 1/1: "))
            })
            .await;
        daemon.signal(Signal::SIGTERM);
        assert_eq!(daemon.wait_exit().await, Some(0), "{}", daemon.log());
        assert_eq!(wait_final(&gitea, second, &daemon).await, TaskResult::Success);
        assert!(gitea.task_log_lines(second).iter().any(|line| line == "finished"));
        assert!(gitea.log_archived(second));
        // Sent before the exit; the listener may not have read the last datagrams yet.
        received
            .wait_for("the drained STATUS", |messages| {
                messages.last().is_some_and(|m| m == "STATUS=draining 0 jobs")
            })
            .await;
        let messages = received.lifecycle(second_from);
        assert!(messages[0].starts_with("STATUS=running 1/1: "), "{messages:?}");
        assert_eq!(
            messages[1..4],
            [
                "STOPPING=1",
                "STATUS=draining 1 job",
                "EXTEND_TIMEOUT_USEC=30000000"
            ],
            "{messages:?}"
        );
        assert_eq!(
            messages.last().map(String::as_str),
            Some("STATUS=draining 0 jobs"),
            "{messages:?}"
        );
        // EXTEND_TIMEOUT_USEC repeats every 10 s while the drain runs, nothing else comes.
        assert!(
            messages[4..messages.len() - 1]
                .iter()
                .all(|m| m == "EXTEND_TIMEOUT_USEC=30000000"),
            "{messages:?}"
        );
    })
    .await;
}
