//! Socket activation through `systemd-socket-activate` (the same LISTEN_* protocol systemd uses),
//! and what a job process spawned by the runner inherits.

use std::io::Read as _;
use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{LIMIT, example_binary, require_tool};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `systemd-socket-activate <args> systemd-probe`, with systemd's variables set for the probe.
fn activate(args: &[&str]) -> Child {
    Command::new("systemd-socket-activate")
        .args(args)
        .args([
            "-E",
            "NOTIFY_SOCKET=/run/systemd/notify",
            "-E",
            "WATCHDOG_USEC=30000000",
        ])
        .arg("-E")
        .arg("INVOCATION_ID=0123456789abcdef")
        .arg(example_binary("systemd-probe"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn connect(port: u16) -> TcpStream {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => return stream,
            Err(error) if std::time::Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("cannot connect to the activated socket: {error}"),
        }
    }
}

fn finish(mut child: Child) -> String {
    let deadline = std::time::Instant::now() + LIMIT;
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "probe did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut output = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    output
}

#[test]
fn the_metrics_listener_is_taken_by_name_and_jobs_see_no_systemd_interface() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    // Two sockets; the runner's is the second, found by its name.
    let other = format!("127.0.0.1:{}", free_port());
    let child = activate(&["-l", &other, "-l", &address, "--fdname=web:metrics"]);
    let mut stream = connect(port);
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "served by the inherited metrics listener\n");

    let output = finish(child);
    assert!(
        output.contains(&format!("listener: {address}\n")),
        "{output}"
    );
    let child_env: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("child: "))
        .collect();
    assert!(child_env.iter().any(|l| l.starts_with("PATH=")), "{output}");
    for private in ["LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_", "INVOCATION_ID"] {
        assert!(
            !child_env.iter().any(|l| l.starts_with(private)),
            "{private} reached the job: {output}"
        );
    }
    let sockets: Vec<&&str> = child_env
        .iter()
        .filter(|l| l.starts_with("fd: socket:"))
        .collect();
    assert!(
        sockets.is_empty(),
        "inherited sockets leaked into the job: {sockets:?}"
    );
}

#[test]
fn a_socket_under_another_name_is_not_taken() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let child = activate(&["-l", &format!("127.0.0.1:{port}"), "--fdname=web"]);
    drop(connect(port));
    let output = finish(child);
    assert!(output.contains("listener: none\n"), "{output}");
}

#[test]
fn a_datagram_socket_named_metrics_is_refused() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let port = {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let child = activate(&[
        "--datagram",
        "-l",
        &format!("127.0.0.1:{port}"),
        "--fdname=metrics",
    ]);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = std::time::Instant::now() + LIMIT;
    let mut child = child;
    // systemd-socket-activate starts the program on the first datagram; resend until it did.
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "probe never started");
        let _ = sender.send_to(b"x", ("127.0.0.1", port));
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = finish(child);
    assert!(
        output.contains(
            "listener error: the socket named `metrics` (fd 3) is not a TCP stream socket"
        ),
        "{output}"
    );
}

/// Through the real binary: `act_runner exec` on the host backend, started with systemd's
/// variables set, gives a job step none of them (but the ordinary environment).
#[test]
fn a_host_job_sees_no_systemd_variables() {
    let dir = tempfile::tempdir().unwrap();
    let workflow = dir.path().join("env.yml");
    std::fs::write(
        &workflow,
        r#"on: push
jobs:
  env:
    runs-on: ubuntu-latest
    steps:
      - run: |
          test -n "$PATH"
          leaked=$(env | grep -E '^(LISTEN_|NOTIFY_SOCKET|WATCHDOG_|INVOCATION_ID|JOURNAL_STREAM|CREDENTIALS_DIRECTORY)' || true)
          if [ -n "$leaked" ]; then echo "leaked: $leaked"; exit 1; fi
          echo "job environment is clean"
"#,
    )
    .unwrap();
    let work_dir = tempfile::tempdir().unwrap();
    let output = assert_cmd::Command::new(env!("CARGO_BIN_EXE_act_runner"))
        .current_dir(work_dir.path())
        .args(["exec", "-i", "-self-hosted", "-W"])
        .arg(&workflow)
        .arg("-C")
        .arg(work_dir.path())
        .env("NOTIFY_SOCKET", "/run/systemd/notify")
        .env("WATCHDOG_USEC", "30000000")
        .env("WATCHDOG_PID", "1")
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDNAMES", "metrics")
        .env("INVOCATION_ID", "0123456789abcdef")
        .env("JOURNAL_STREAM", "8:1234")
        .env(
            "CREDENTIALS_DIRECTORY",
            "/run/credentials/act-runner.service",
        )
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("job environment is clean"), "{text}");
}
