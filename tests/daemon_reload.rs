//! SIGHUP through the real binary: the new `log.level` applies without a restart, an invalid new
//! configuration is refused with its file, line and key while the running one stays, a
//! failing `health_check` holds tasks back until a reload lifts it, and changed `cache.*` keys
//! are named as needing a restart.

use std::time::Duration;

use act_runner::client::Method;
use act_runner::client::proto::runner::Result as TaskResult;
use nix::sys::signal::Signal;

use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::support::fake_gitea::TaskSpec;

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
                gitea.rpc_count(Method::FetchTask) >= 3
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

#[tokio::test]
async fn a_failed_health_check_holds_tasks_back_until_a_reload_lifts_it() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics = format!("metrics:\n  enabled: true\n  addr: 127.0.0.1:{port}\n");
        let config = std::fs::read_to_string(dir.config_path()).unwrap() + &metrics;
        let health = "health_check:\n  enabled: true\n  min_free_disk_space_mb: 1000000000000\n";
        std::fs::write(dir.config_path(), format!("{config}{health}")).unwrap();
        let daemon = Daemon::start(&dir, &[]).await;
        let workflow =
            "on: push\njobs:\n  one:\n    runs-on: host-test\n    steps:\n      - run: echo ran\n";
        let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
        wait_log(&daemon, "the refusal", |log| {
            log.contains("runner temporarily unavailable") && log.contains("low disk space on ")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(gitea.rpc_count(Method::FetchTask), 0, "{}", daemon.log());
        assert!(gitea.task_state(task_id).unwrap().runner_id.is_none());
        let readyz = get(port, "/readyz");
        assert!(
            readyz.starts_with("HTTP/1.1 503") && readyz.contains("low disk space on "),
            "{readyz}"
        );

        std::fs::write(dir.config_path(), &config).unwrap();
        daemon.signal(Signal::SIGHUP);
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Success, "{}", daemon.log());
        assert!(
            daemon
                .log()
                .contains("runner local health recovered, resuming task polling"),
            "{}",
            daemon.log()
        );
        assert!(get(port, "/readyz").starts_with("HTTP/1.1 200"));
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_names_the_cache_keys_that_need_a_restart() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = RunnerDir::register(&gitea, "host-test:host", "").await;
        let config = std::fs::read_to_string(dir.config_path()).unwrap();
        let daemon = Daemon::start(&dir, &[]).await;
        // Polling shows the signal handlers are in place (a SIGHUP before them would end it).
        let polled = gitea
            .wait_until(Duration::from_secs(20), |gitea| {
                gitea.rpc_count(Method::FetchTask) >= 1
            })
            .await;
        assert!(polled, "the daemon did not poll: {}", daemon.log());
        assert!(
            daemon.log().contains("cache server listening"),
            "{}",
            daemon.log()
        );

        let changed = format!("{config}cache:\n  retention: 1h\n  offline_mode: true\n");
        std::fs::write(dir.config_path(), changed).unwrap();
        daemon.signal(Signal::SIGHUP);
        wait_log(&daemon, "the reload", |log| {
            log.contains("configuration reloaded")
        })
        .await;
        let log = daemon.log();
        let line = log
            .lines()
            .find(|line| line.contains("the changed cache keys apply after a restart"))
            .unwrap_or_else(|| panic!("no restart notice: {log}"));
        // offline_mode applies to the next task; retention belongs to the running server.
        assert!(line.contains("keys=cache.retention"), "{line}");
        assert!(!line.contains("offline_mode"), "{line}");
        daemon.stop().await;
    })
    .await;
}

/// A plain HTTP/1.1 GET on 127.0.0.1:`port`; the whole answer.
fn get(port: u16, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}
