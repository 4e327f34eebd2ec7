//! The real daemon's watchdog gate on Docker: with `container.require_docker`, the daemon reaches
//! Docker through a proxy the test can freeze. While Docker does not answer, `WATCHDOG=1` stops
//! (and no `WATCHDOG=trigger`: a stuck Docker is not the runner's wedge); once it answers again,
//! pings resume. A Gitea fault never stops them (see `daemon.rs`): every poll is bounded by
//! `fetch_timeout`, so the poll loop keeps turning through an outage, and a restart would only
//! kill running jobs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::Signal;
use tokio::net::{UnixDatagram, UnixListener, UnixStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::daemon::{Activated, Received, WATCHDOG, assert_ping_period};
use crate::daemon::harness::{RunnerDir, bounded, start_fake};

const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Forwards connections to Docker's socket until frozen; frozen, it cuts every open connection
/// and leaves new ones unanswered, as a hung Docker daemon does.
struct FreezableDocker {
    frozen: Arc<AtomicBool>,
    cut: Arc<std::sync::Mutex<CancellationToken>>,
    path: PathBuf,
}

impl FreezableDocker {
    fn start(dir: &Path) -> FreezableDocker {
        let path = dir.join("docker-proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let (frozen_in_loop, cut_in_loop) = (Arc::clone(&frozen), Arc::clone(&cut));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let cut = act_runner::sync::lock(&cut_in_loop).clone();
                let frozen = frozen_in_loop.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if frozen {
                        // Held open, never answered, until the proxy thaws.
                        cut.cancelled().await;
                        return;
                    }
                    let Ok(mut docker) = UnixStream::connect(DOCKER_SOCKET).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut docker) => {}
                        _ = cut.cancelled() => {}
                    }
                });
            }
        });
        FreezableDocker { frozen, cut, path }
    }

    fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
        let mut cut = act_runner::sync::lock(&self.cut);
        cut.cancel();
        *cut = CancellationToken::new();
    }
}

#[tokio::test]
async fn pings_stop_while_docker_does_not_answer_and_resume_after() {
    let reason = format!("{DOCKER_SOCKET} is required");
    if !crate::support::require(Path::new(DOCKER_SOCKET).exists(), &reason) {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let docker = FreezableDocker::start(dir.path());
        let mut config = std::fs::read_to_string(dir.config_path()).unwrap();
        config.push_str(&format!(
            "container:\n  require_docker: true\n  docker_host: unix://{}\n",
            docker.path.display()
        ));
        std::fs::write(dir.config_path(), config).unwrap();
        let notify_path = dir.path().join("notify");
        let received = Received::listen(UnixDatagram::bind(&notify_path).unwrap());
        let mut daemon = Activated::direct(&dir, &notify_path);
        received
            .wait_for("READY", |messages| {
                messages.iter().any(|m| m.starts_with("READY=1"))
            })
            .await;
        let answering = Instant::now();
        tokio::time::sleep(WATCHDOG * 2).await;

        docker.set_frozen(true);
        let frozen_at = Instant::now();
        tokio::time::sleep(WATCHDOG * 3).await;
        docker.set_frozen(false);
        let thawed_at = Instant::now();
        tokio::time::sleep(WATCHDOG * 2).await;

        assert_ping_period(
            &received.pings_between(answering, frozen_at),
            "Docker answering",
        );
        // One tick may already be under way when Docker freezes.
        let while_frozen = received.pings_between(frozen_at + WATCHDOG / 2, thawed_at);
        assert!(
            while_frozen.is_empty(),
            "{} pings while Docker did not answer; log:\n{}",
            while_frozen.len(),
            daemon.log()
        );
        assert!(
            received.pings_between(thawed_at, Instant::now()).len() >= 2,
            "pings did not resume; log:\n{}",
            daemon.log()
        );
        let log = daemon.log();
        assert!(
            log.contains("watchdog: not pinging systemd") && log.contains("Docker"),
            "{log}"
        );
        assert!(
            log.contains("watchdog: healthy again, pings resume"),
            "{log}"
        );
        assert!(
            !received
                .lifecycle(0)
                .iter()
                .any(|m| m == "WATCHDOG=trigger"),
            "{:?}",
            received.lifecycle(0)
        );
        daemon.signal(Signal::SIGTERM);
        assert_eq!(daemon.wait_exit().await, Some(0), "{}", daemon.log());
    })
    .await;
}
