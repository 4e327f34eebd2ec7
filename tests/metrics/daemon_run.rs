//! A scripted run of the real daemon against the fake Gitea, scraped over HTTP: every counter
//! moves as the script says (task, empty and error fetches; success, failure and cancelled jobs;
//! log and state report results; client errors by method), and every label stays in its set.

use std::net::SocketAddr;
use std::time::Duration;

use act_runner::client::Method;
use act_runner::client::proto::runner::Result as TaskResult;
use act_runner::metrics::labels::allowed_values;

use super::{get, parse_samples};
use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};
use crate::support::fake_gitea::{FakeGitea, Faults, InjectedError, TaskSpec};

fn job(steps: &str) -> String {
    format!("on: push\njobs:\n  job:\n    runs-on: host-test\n    steps:\n{steps}")
}

/// The value of one series of a scrape, 0 when absent.
async fn series(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let scrape = get(addr, "/metrics").await;
    parse_samples(&scrape.body)
        .into_iter()
        .find(|sample| {
            sample.name == name
                && sample.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| sample.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map_or(0.0, |sample| sample.value)
}

/// Waits (bounded) until the series reaches `at_least`.
async fn wait_series(
    addr: SocketAddr,
    daemon: &Daemon,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while series(addr, name, labels).await < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{labels:?} never reached {at_least}; daemon log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_to_end(gitea: &FakeGitea, daemon: &Daemon, workflow: &str) -> TaskResult {
    let task_id = gitea.enqueue_task(TaskSpec::from_workflow(workflow).unwrap());
    gitea
        .wait_task_final(task_id, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("task not final; daemon log:\n{}", daemon.log()))
        .result
}

#[tokio::test]
async fn a_scripted_daemon_run_moves_every_counter() {
    bounded(async {
        let gitea = start_fake().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let extra = format!("  capacity: 2\nmetrics:\n  enabled: true\n  addr: {addr}\n");
        let dir = RunnerDir::register(&gitea, "host-test:host", &extra).await;
        let daemon = Daemon::start(&dir, &[]).await;

        // Ready once it polls; empty fetches come by themselves.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = tokio::time::timeout(Duration::from_secs(2), async {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(_) => get(addr, "/readyz").await.status == 200,
                    Err(_) => false,
                }
            })
            .await
            .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never ready; daemon log:\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        wait_series(
            addr,
            &daemon,
            "act_runner_poll_fetch_total",
            &[("result", "empty")],
            1.0,
        )
        .await;

        // FetchTask errors.
        gitea.set_faults(
            Method::FetchTask,
            Faults::always(InjectedError::Unavailable),
        );
        wait_series(
            addr,
            &daemon,
            "act_runner_poll_fetch_total",
            &[("result", "error")],
            1.0,
        )
        .await;
        gitea.clear_faults();

        // A successful job whose first reports fail.
        gitea.set_faults(
            Method::UpdateLog,
            Faults::always(InjectedError::Unavailable),
        );
        gitea.set_faults(
            Method::UpdateTask,
            Faults::always(InjectedError::Unavailable),
        );
        // The job runs on after the first reports fail: once it has ended, the final flush sends
        // no state before every row is through, so a job done within the first failed UpdateLog
        // would never try an UpdateTask while the faults last.
        let task_id = gitea.enqueue_task(
            TaskSpec::from_workflow(&job(
                "      - run: echo one\n      - run: sleep 2\n      - run: echo two\n",
            ))
            .unwrap(),
        );
        wait_series(
            addr,
            &daemon,
            "act_runner_report_state_total",
            &[("result", "error")],
            1.0,
        )
        .await;
        wait_series(
            addr,
            &daemon,
            "act_runner_report_log_total",
            &[("result", "error")],
            1.0,
        )
        .await;
        gitea.clear_faults();
        let success = gitea
            .wait_task_final(task_id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("task not final; daemon log:\n{}", daemon.log()));
        assert_eq!(success.result, TaskResult::Success, "{}", daemon.log());

        // A failing job.
        let failure = run_to_end(&gitea, &daemon, &job("      - run: exit 3\n")).await;
        assert_eq!(failure, TaskResult::Failure);
        // Gitea sees the result before the daemon counts the job: wait, so that `job_running`
        // below means the next job and not this one.
        wait_series(
            addr,
            &daemon,
            "act_runner_job_total",
            &[("status", "failure")],
            1.0,
        )
        .await;

        // A job cancelled from the server.
        let task_id =
            gitea.enqueue_task(TaskSpec::from_workflow(&job("      - run: sleep 60\n")).unwrap());
        wait_series(addr, &daemon, "act_runner_job_running", &[], 1.0).await;
        assert!(gitea.cancel_task(task_id));
        let cancelled = gitea
            .wait_task_final(task_id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("task not final; daemon log:\n{}", daemon.log()));
        assert_eq!(cancelled.result, TaskResult::Cancelled);
        wait_series(
            addr,
            &daemon,
            "act_runner_job_total",
            &[("status", "cancelled")],
            1.0,
        )
        .await;

        // The whole scrape, after the busy run.
        let scrape = get(addr, "/metrics").await;
        let samples = parse_samples(&scrape.body);
        let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
            samples
                .iter()
                .find(|s| {
                    s.name == name
                        && match label {
                            None => s.labels.is_empty(),
                            Some((k, v)) => s.labels == [(k.to_owned(), v.to_owned())],
                        }
                })
                .map_or(0.0, |s| s.value)
        };
        let log = daemon.log();
        assert!(
            value("act_runner_poll_fetch_total", Some(("result", "task"))) >= 3.0,
            "{log}"
        );
        assert!(value("act_runner_poll_fetch_total", Some(("result", "empty"))) >= 1.0);
        assert!(value("act_runner_poll_fetch_total", Some(("result", "error"))) >= 1.0);
        assert_eq!(
            value("act_runner_job_total", Some(("status", "success"))),
            1.0,
            "{log}"
        );
        assert_eq!(
            value("act_runner_job_total", Some(("status", "failure"))),
            1.0,
            "{log}"
        );
        assert_eq!(
            value("act_runner_job_total", Some(("status", "cancelled"))),
            1.0,
            "{log}"
        );
        assert_eq!(
            value("act_runner_job_total", Some(("status", "skipped"))),
            0.0
        );
        assert_eq!(value("act_runner_job_duration_seconds_count", None), 3.0);
        assert_eq!(value("act_runner_job_running", None), 0.0);
        assert_eq!(value("act_runner_capacity", None), 2.0);
        for family in [
            "act_runner_report_log_total",
            "act_runner_report_state_total",
        ] {
            assert!(
                value(family, Some(("result", "success"))) >= 1.0,
                "{family}"
            );
            assert!(value(family, Some(("result", "error"))) >= 1.0, "{family}");
        }
        for method in ["FetchTask", "UpdateLog", "UpdateTask"] {
            assert!(
                value("act_runner_client_errors_total", Some(("method", method))) >= 1.0,
                "{method}"
            );
        }
        assert!(value("act_runner_poll_fetch_duration_seconds_count", None) >= 3.0);
        assert!(value("act_runner_report_log_duration_seconds_count", None) >= 2.0);
        assert!(value("act_runner_report_state_duration_seconds_count", None) >= 2.0);

        // Bounded labels after a busy run: nothing from the tasks leaked into a label.
        for sample in &samples {
            for (label, label_value) in &sample.labels {
                if sample.name == "act_runner_info" || label == "le" {
                    continue;
                }
                let allowed = allowed_values(&sample.name, label)
                    .unwrap_or_else(|| panic!("{}: undeclared label {label}", sample.name));
                assert!(allowed.contains(&label_value.as_str()), "{label_value}");
            }
        }
        daemon.stop().await;
    })
    .await;
}
