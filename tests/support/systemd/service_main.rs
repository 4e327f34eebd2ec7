//! A small service assembled from the systemd room alone, for the system test under real systemd
//! (`tests/steps.d/80-systemd-system.sh`): it takes the inherited `metrics` listener, logs to the
//! journal with the task fields, gates READY on latches, keeps STATUS current, pings the watchdog,
//! reloads on SIGHUP, holds a logind inhibitor while its one job runs, and drains on SIGTERM with
//! STOPPING and EXTEND_TIMEOUT_USEC. It is a test program, not the runner.
//!
//! Files it reads: `capacity` (a number, re-read on SIGHUP) and `job` (seconds the one job runs,
//! optional) in the directory given as the first argument.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use act_runner::systemd::dbus::{ShutdownInhibitor, SystemBus};
use act_runner::systemd::watchdog::run_watchdog;
use act_runner::systemd::{Inherited, Notifier, Progress, StatusBoard, WatchdogConfig, journald};
use tokio::io::AsyncWriteExt as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    let mut inherited = Inherited::capture();
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "/etc/act-runner".into()),
    );
    match journald::layer_if_wanted(false) {
        Some(layer) => tracing_subscriber::registry().with(layer).init(),
        None => tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return ExitCode::from(1);
    };
    let listener = match std::mem::replace(&mut inherited.metrics_listener, Ok(None)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(serve(inherited, listener, dir))
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

async fn serve(
    mut inherited: Inherited,
    listener: Option<std::net::TcpListener>,
    dir: PathBuf,
) -> ExitCode {
    let (notifier, latches) = Notifier::new(inherited.notify_socket.take());
    let progress = Progress::new();
    let capacity = read_number(&dir.join("capacity")).unwrap_or(1) as usize;
    let board = Arc::new(StatusBoard::new(
        notifier.clone(),
        progress.clone(),
        capacity,
    ));
    latches.config.release();
    latches.registration.release();
    latches.docker.release();

    let listener = match listener {
        Some(listener) => listener,
        None => match std::net::TcpListener::bind("127.0.0.1:9101")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
        {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot bind 127.0.0.1:9101");
                return ExitCode::from(1);
            }
        },
    };
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return ExitCode::from(1);
    };
    latches.metrics_listener.release();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nprobe_up 1\r\n").await;
        }
    });

    let shutdown = CancellationToken::new();
    let drain_requested = CancellationToken::new();
    // The "poll loop": a turn every second.
    {
        let (progress, shutdown) = (progress.clone(), shutdown.clone());
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                progress.advance();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    if let Some(interval) = inherited.watchdog {
        let config = WatchdogConfig {
            interval,
            poll: progress.clone(),
            poll_stall_limit: Duration::from_secs(10),
            docker: None,
        };
        tokio::spawn(run_watchdog(notifier.clone(), config, shutdown.clone()));
    }
    let bus = SystemBus::connect().await;
    let inhibitor = match &bus {
        Some(bus) => ShutdownInhibitor::new(bus, drain_requested.clone())
            .await
            .map(Arc::new),
        None => None,
    };
    latches.declared.release();
    tracing::info!(capacity, "service ready");

    let job_done = CancellationToken::new();
    match read_number(&dir.join("job")) {
        Some(seconds) => {
            let (board, job_done, inhibitor) = (board.clone(), job_done.clone(), inhibitor.clone());
            let span = journald::task_span(42, "owner/repo", "ci.yml", "build", "probe-runner");
            // `instrument`, not `enter`: the task may resume on another worker thread.
            let job = async move {
                board.job_started(42, "owner/repo", "build", 1, capacity);
                if let Some(inhibitor) = &inhibitor {
                    inhibitor.update(&board.running_jobs()).await;
                }
                tracing::info!("job started");
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                tracing::info!("job finished");
                board.job_finished(42, 0, capacity);
                if let Some(inhibitor) = &inhibitor {
                    inhibitor.update(&[]).await;
                }
                job_done.cancel();
            };
            tokio::spawn(job.instrument(span));
        }
        None => job_done.cancel(),
    }

    let (Ok(mut hangups), Ok(mut terms)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
    ) else {
        return ExitCode::from(1);
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => {
                notifier.reloading();
                match read_number(&dir.join("capacity")) {
                    Some(capacity) => {
                        board.capacity_changed(capacity as usize);
                        tracing::info!(capacity, "reloaded");
                    }
                    None => tracing::error!("reload refused: capacity unreadable; keeping the running config"),
                }
                notifier.reloaded();
            }
            _ = terms.recv() => break,
            _ = drain_requested.cancelled() => break,
        }
    }
    let n_jobs = usize::from(!job_done.is_cancelled());
    let drain = notifier.drain_started(n_jobs, Duration::from_secs(120));
    board.draining();
    tracing::info!(n_jobs, "draining");
    if tokio::time::timeout(Duration::from_secs(120), job_done.cancelled())
        .await
        .is_err()
    {
        tracing::error!("drain timed out");
    }
    drain.jobs_left(0);
    tracing::info!("drained");
    drop(drain);
    shutdown.cancel();
    ExitCode::SUCCESS
}
