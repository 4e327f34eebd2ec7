//! SIGHUP through the real binary: the new `log.level` applies without a restart, and an invalid
//! new configuration is refused with its file, line and key while the running one stays.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};

/// The poller's line for an empty FetchTask answer, logged at debug level.
const DEBUG_LINE: &str = "DEBUG no task";

/// Waits (at most 20 s) until the daemon's log satisfies `done`.
async fn wait_log(daemon: &Daemon, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(&daemon.log()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 20 s for {what}; daemon log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sighup_applies_a_new_log_level_and_refuses_an_invalid_config() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let config = std::fs::read_to_string(dir.config_path()).unwrap();
        assert!(config.contains("level: info"), "{config}");
        let daemon = Daemon::start(&dir, &[]).await;

        // At info, several empty polls print nothing at debug level.
        let polled = gitea
            .wait_until(Duration::from_secs(20), |gitea| {
                gitea.rpc_count(act_runner::client::Method::FetchTask) >= 3
            })
            .await;
        assert!(polled, "the daemon did not poll: {}", daemon.log());
        assert!(!daemon.log().contains(DEBUG_LINE), "{}", daemon.log());

        std::fs::write(
            dir.config_path(),
            config.replace("level: info", "level: debug"),
        )
        .unwrap();
        daemon.signal(Signal::SIGHUP);
        wait_log(&daemon, "debug lines after the reload", |log| {
            log.contains("log level changed") && log.contains(DEBUG_LINE)
        })
        .await;

        // An invalid level: refused, with where and what; the running config (debug) stays.
        std::fs::write(
            dir.config_path(),
            config.replace("level: info", "level: loud"),
        )
        .unwrap();
        let n_debug_before = daemon.log().matches(DEBUG_LINE).count();
        daemon.signal(Signal::SIGHUP);
        wait_log(&daemon, "the refusal", |log| {
            log.contains("the new configuration is invalid; keeping the running one")
        })
        .await;
        let log = daemon.log();
        let refusal = log
            .lines()
            .find(|line| line.contains("keeping the running one"))
            .unwrap();
        let config_path = dir.config_path();
        for part in [config_path.to_str().unwrap(), "log.level", "loud", "ERROR"] {
            assert!(refusal.contains(part), "{part:?} missing in {refusal}");
        }
        wait_log(&daemon, "debug lines after the refusal", |log| {
            log.matches(DEBUG_LINE).count() >= n_debug_before + 3
        })
        .await;
        daemon.stop().await;
    })
    .await;
}
