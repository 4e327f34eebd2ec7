//! The notify protocol as systemd receives it: one datagram per message on `NOTIFY_SOCKET`.

use std::time::Duration;

use act_runner::systemd::{Notifier, NotifySocket, Progress, StatusBoard};
use tokio::net::UnixDatagram;

use super::LIMIT;

struct Listener {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
}

impl Listener {
    fn new() -> (Self, NotifySocket) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        let notify_socket = NotifySocket::new(path.as_os_str()).unwrap();
        (Self { socket, _dir: dir }, notify_socket)
    }

    async fn next(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(LIMIT, self.socket.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn pending(&self) -> Vec<String> {
        let mut messages = Vec::new();
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = self.socket.try_recv(&mut buf) {
            messages.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        messages
    }
}

#[tokio::test(start_paused = true)]
async fn lifecycle_sends_ready_status_stopping_extend_in_order() {
    let (listener, socket) = Listener::new();
    let (notifier, latches) = Notifier::new(Some(socket));
    let board = StatusBoard::new(notifier.clone(), Progress::new(), 4);
    assert_eq!(listener.next().await, "STATUS=idle 0/4\n");

    latches.config.release();
    latches.registration.release();
    latches.docker.release();
    latches.declared.release();
    assert!(listener.pending().is_empty(), "READY before the last latch");
    latches.metrics_listener.release();
    assert_eq!(listener.next().await, "READY=1\nSTATUS=idle 0/4\n");

    board.job_started(42, "owner/repo", "build", 1, 4);
    assert_eq!(
        listener.next().await,
        "STATUS=running 1/4: owner/repo build\n"
    );
    board.job_started(43, "owner/other", "test\nREADY=1", 2, 4);
    assert_eq!(
        listener.next().await,
        "STATUS=running 2/4: owner/repo build, owner/other test READY=1\n"
    );

    let drain = notifier.drain_started(2, Duration::from_secs(60));
    board.draining();
    assert_eq!(listener.next().await, "STOPPING=1\n");
    assert_eq!(listener.next().await, "STATUS=draining 2 jobs\n");
    assert_eq!(listener.next().await, "EXTEND_TIMEOUT_USEC=30000000\n");
    // Repeated every 10 s while the drain runs.
    sleep_paused(Duration::from_secs(10)).await;
    assert_eq!(listener.next().await, "EXTEND_TIMEOUT_USEC=30000000\n");
    board.job_finished(42, 1, 4);
    drain.jobs_left(1);
    assert_eq!(listener.next().await, "STATUS=draining 1 job\n");
    drop(drain);
    sleep_paused(Duration::from_secs(60)).await;
    assert_eq!(
        listener.pending(),
        Vec::<String>::new(),
        "nothing after the drain ended"
    );
}

#[tokio::test(start_paused = true)]
async fn extension_stops_at_the_shutdown_timeout() {
    let (listener, socket) = Listener::new();
    let (notifier, _latches) = Notifier::new(Some(socket));
    let _drain = notifier.drain_started(3, Duration::from_secs(0));
    assert_eq!(listener.next().await, "STOPPING=1\n");
    assert_eq!(listener.next().await, "STATUS=draining 3 jobs\n");
    // Grace 0 s plus the 30 s report margin: extensions at 0, 10, 20 s, then none.
    sleep_paused(Duration::from_secs(120)).await;
    let extensions = listener.pending();
    assert_eq!(extensions, vec!["EXTEND_TIMEOUT_USEC=30000000\n"; 3]);
}

#[tokio::test]
async fn an_unreleased_latch_keeps_the_service_not_ready() {
    let (listener, socket) = Listener::new();
    let (notifier, latches) = Notifier::new(Some(socket));
    latches.config.release();
    latches.registration.release();
    latches.docker.release();
    latches.metrics_listener.release();
    drop(latches.declared); // Declare failed: the daemon exits without READY.
    tokio::task::yield_now().await;
    assert!(!notifier.is_ready());
    assert_eq!(listener.pending(), Vec::<String>::new());
}

#[tokio::test]
async fn reload_announces_reloading_with_monotonic_time_then_ready() {
    let (listener, socket) = Listener::new();
    let (notifier, latches) = Notifier::new(Some(socket));
    let board = StatusBoard::new(notifier.clone(), Progress::new(), 2);
    assert_eq!(listener.next().await, "STATUS=idle 0/2\n");
    for latch in [
        latches.config,
        latches.registration,
        latches.docker,
        latches.declared,
        latches.metrics_listener,
    ] {
        latch.release();
    }
    assert_eq!(listener.next().await, "READY=1\nSTATUS=idle 0/2\n");

    let before = monotonic_usec();
    notifier.reloading();
    let message = listener.next().await;
    let after = monotonic_usec();
    let mut lines = message.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"));
    let usec: u128 = lines
        .next()
        .unwrap()
        .strip_prefix("MONOTONIC_USEC=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= after,
        "{before} <= {usec} <= {after}"
    );
    board.capacity_changed(5);
    notifier.reloaded();
    assert_eq!(listener.next().await, "STATUS=idle 0/5\n");
    assert_eq!(listener.next().await, "READY=1\nSTATUS=idle 0/5\n");
}

#[tokio::test]
async fn backoff_status_names_the_wait_and_the_reason() {
    let (listener, socket) = Listener::new();
    let (notifier, _latches) = Notifier::new(Some(socket));
    let board = StatusBoard::new(notifier, Progress::new(), 1);
    assert_eq!(listener.next().await, "STATUS=idle 0/1\n");
    board.poll_interval(Duration::from_secs(10));
    board.fetch_failed("server unreachable");
    assert_eq!(
        listener.next().await,
        "STATUS=backoff 10s: server unreachable\n"
    );
    board.poll_interval(Duration::from_secs(20));
    assert_eq!(
        listener.next().await,
        "STATUS=backoff 20s: server unreachable\n"
    );
    board.fetch_succeeded();
    assert_eq!(listener.next().await, "STATUS=idle 0/1\n");
}

#[tokio::test]
async fn without_notify_socket_everything_is_a_no_op() {
    let (notifier, latches) = Notifier::new(None);
    assert!(!notifier.is_enabled());
    for latch in [
        latches.config,
        latches.registration,
        latches.docker,
        latches.declared,
        latches.metrics_listener,
    ] {
        latch.release();
    }
    assert!(notifier.is_ready());
    notifier.reloading();
    notifier.reloaded();
    drop(notifier.drain_started(1, Duration::from_secs(1)));
}

#[test]
fn abstract_notify_socket_is_reached() {
    let name = format!("act-runner-test-{}", std::process::id());
    let address =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap();
    let receiver = std::os::unix::net::UnixDatagram::bind_addr(&address).unwrap();
    receiver.set_read_timeout(Some(LIMIT)).unwrap();
    let socket = NotifySocket::new(std::ffi::OsStr::new(&format!("@{name}"))).unwrap();
    socket.send(&[sd_notify::NotifyState::Watchdog]).unwrap();
    let mut buf = [0u8; 64];
    let n = receiver.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"WATCHDOG=1\n");
}

fn monotonic_usec() -> u128 {
    match sd_notify::NotifyState::monotonic_usec_now().unwrap() {
        sd_notify::NotifyState::MonotonicUsec(usec) => usec as u128,
        _ => unreachable!(),
    }
}

/// Sleeps in paused time (bounded like every await here, with room for the sleep itself).
async fn sleep_paused(duration: Duration) {
    tokio::time::timeout(duration + LIMIT, tokio::time::sleep(duration))
        .await
        .unwrap();
}
