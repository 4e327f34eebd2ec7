//! The watchdog pings every half of `WatchdogSec=`, only while the poll loop advances and Docker
//! answers, and sends `WATCHDOG=trigger` once the loop is wedged. Paused time makes it exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use act_runner::systemd::watchdog::run_watchdog;
use act_runner::systemd::{HealthProbe, Notifier, NotifySocket, Progress, WatchdogConfig};
use tokio::net::UnixDatagram;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::LIMIT;

/// Messages with the (paused) time they were received at, relative to `start`.
async fn collect(
    socket: &UnixDatagram,
    start: Instant,
    until: Duration,
) -> Vec<(Duration, String)> {
    let mut messages = Vec::new();
    let mut buf = vec![0u8; 512];
    let end = start + until;
    while let Ok(received) = tokio::time::timeout_at(end, socket.recv(&mut buf)).await {
        let n = received.unwrap();
        messages.push((
            start.elapsed(),
            String::from_utf8(buf[..n].to_vec()).unwrap(),
        ));
    }
    messages
}

fn ready_notifier() -> (Notifier, UnixDatagram, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let (notifier, latches) = Notifier::new(Some(NotifySocket::new(path.as_os_str()).unwrap()));
    for latch in [
        latches.config,
        latches.registration,
        latches.docker,
        latches.declared,
        latches.metrics_listener,
    ] {
        latch.release();
    }
    (notifier, socket, dir)
}

#[tokio::test(start_paused = true)]
async fn pings_every_half_interval_while_polling_and_triggers_once_wedged() {
    let (notifier, socket, _dir) = ready_notifier();
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"READY=1\n");

    let progress = Progress::new();
    let wedge = CancellationToken::new();
    let poller = {
        let (progress, wedge) = (progress.clone(), wedge.clone());
        tokio::spawn(async move {
            // The poll loop: a turn every 2 s until the injected fault wedges it.
            while !wedge.is_cancelled() {
                progress.advance();
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let shutdown = CancellationToken::new();
    let config = WatchdogConfig {
        interval: Duration::from_secs(10),
        poll: progress.clone(),
        poll_stall_limit: Duration::from_secs(12),
        docker: None,
    };
    let start = Instant::now();
    let watchdog = tokio::spawn(run_watchdog(notifier, config, shutdown.clone()));

    let healthy = collect(&socket, start, Duration::from_secs(31)).await;
    let times: Vec<u64> = healthy.iter().map(|(at, _)| at.as_secs()).collect();
    assert!(
        healthy.iter().all(|(_, m)| m == "WATCHDOG=1\n"),
        "{healthy:?}"
    );
    assert_eq!(
        times,
        vec![0, 5, 10, 15, 20, 25, 30],
        "one ping per WatchdogSec/2"
    );

    // The fault: the poll loop stops turning at t≈32 s.
    wedge.cancel();
    let wedged = collect(&socket, start, Duration::from_secs(120)).await;
    let pings_after_stall: Vec<_> = wedged
        .iter()
        .filter(|(at, m)| m == "WATCHDOG=1\n" && at.as_secs() > 32 + 12 + 5)
        .collect();
    assert!(
        pings_after_stall.is_empty(),
        "pinged while wedged: {wedged:?}"
    );
    let triggers: Vec<_> = wedged
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=trigger\n")
        .collect();
    assert_eq!(triggers.len(), 1, "{wedged:?}");
    assert!(
        triggers[0].0 >= Duration::from_secs(44) && triggers[0].0 <= Duration::from_secs(50),
        "{triggers:?}"
    );

    shutdown.cancel();
    tokio::time::timeout(LIMIT, watchdog)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(LIMIT, poller).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn no_ping_while_docker_does_not_answer() {
    let (notifier, socket, _dir) = ready_notifier();
    let mut buf = [0u8; 64];
    let _ready = socket.recv(&mut buf).await.unwrap();
    let docker_up = Arc::new(AtomicBool::new(true));
    let probe: HealthProbe = {
        let docker_up = docker_up.clone();
        Arc::new(move || {
            let up = docker_up.load(Ordering::SeqCst);
            Box::pin(async move { up })
        })
    };
    let progress = Progress::new();
    let _always_polling = progress.waiting();
    let shutdown = CancellationToken::new();
    let config = WatchdogConfig {
        interval: Duration::from_secs(4),
        poll: progress,
        poll_stall_limit: Duration::from_secs(60),
        docker: Some(probe),
    };
    let start = Instant::now();
    let watchdog = tokio::spawn(run_watchdog(notifier, config, shutdown.clone()));
    let up = collect(&socket, start, Duration::from_secs(5)).await;
    assert_eq!(up.len(), 3, "{up:?}");

    docker_up.store(false, Ordering::SeqCst);
    let down = collect(&socket, start, Duration::from_secs(20)).await;
    assert_eq!(
        down,
        vec![],
        "Docker down: no ping, and no trigger (not our wedge)"
    );

    docker_up.store(true, Ordering::SeqCst);
    let back = collect(&socket, start, Duration::from_secs(25)).await;
    assert!(
        back.len() >= 2 && back.iter().all(|(_, m)| m == "WATCHDOG=1\n"),
        "{back:?}"
    );
    shutdown.cancel();
    tokio::time::timeout(LIMIT, watchdog)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hanging_docker_ping_counts_as_unhealthy() {
    let (notifier, socket, _dir) = ready_notifier();
    let mut buf = [0u8; 64];
    let _ready = socket.recv(&mut buf).await.unwrap();
    let probe: HealthProbe = Arc::new(|| Box::pin(std::future::pending::<bool>()));
    let progress = Progress::new();
    let _always_polling = progress.waiting();
    let shutdown = CancellationToken::new();
    let config = WatchdogConfig {
        interval: Duration::from_secs(4),
        poll: progress,
        poll_stall_limit: Duration::from_secs(60),
        docker: Some(probe),
    };
    let start = Instant::now();
    let watchdog = tokio::spawn(run_watchdog(notifier, config, shutdown.clone()));
    assert_eq!(
        collect(&socket, start, Duration::from_secs(20)).await,
        vec![]
    );
    shutdown.cancel();
    tokio::time::timeout(LIMIT, watchdog)
        .await
        .unwrap()
        .unwrap();
}
