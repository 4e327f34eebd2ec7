//! The actions cache end to end through `act_runner daemon` and the fake Gitea, with the real,
//! unmodified `actions/cache` v3.5.0 as the client: a job saves a directory and a later job of
//! the same repository restores the same bytes; `restore-keys` match by prefix; another
//! repository's job misses; a feature branch restores the default branch's entry while its own
//! save stays invisible to the default branch. On the host backend and in Docker
//! (`act-runner-test/debian:12`), on a per-job network and on `container.network: host`. The
//! shared `cache-server` is in `cache_e2e/shared.rs`, its memory under a large entry in
//! `cache_e2e/memory.rs`, the v2 client in `cache_e2e/v2.rs`, `exec`'s own cache in
//! `cache_e2e/exec.rs`.

mod exec;
mod fixture;
mod memory;
mod shared;
mod v2;

use std::time::Duration;

use fixture::{Jobs, MAIN, Origin, numbers_digest, register, run, task};

use crate::daemon::harness::{Daemon, bounded, start_fake};
use crate::exec_workflows::DOCKER_TEST_IMAGE;

#[tokio::test]
async fn actions_cache_saves_restores_and_scopes_entries_on_the_host() {
    fixture::require_node();
    bounded(async {
        let gitea = start_fake().await;
        let metrics_port = free_port();
        let dir = register(&gitea, "host-test:host", "").await;
        append_metrics(&dir, metrics_port);
        let daemon = Daemon::start(&dir, &[]).await;
        let jobs = Jobs::new(&gitea, &daemon, "host-test");

        jobs.save("deps-v1", MAIN).await;
        let (exact, lines) = jobs.restore("deps-v1", "", MAIN).await;
        assert!(exact.hit && exact.restored, "{lines:#?}");
        assert_eq!(exact.content.as_deref(), Some("cached bytes for deps-v1"));
        assert_eq!(exact.numbers, Some(numbers_digest()));

        let (prefix, lines) = jobs.restore("deps-v2", "deps-", MAIN).await;
        assert!(
            !prefix.hit && prefix.restored,
            "a restore-keys prefix restores: {lines:#?}"
        );
        assert_eq!(prefix.content.as_deref(), Some("cached bytes for deps-v1"));

        let other = Origin {
            repository: "owner/other",
            ..MAIN
        };
        let (foreign, lines) = jobs.restore("deps-v1", "deps-", other).await;
        assert!(
            !foreign.hit && !foreign.restored,
            "another repository's entry leaked: {lines:#?}"
        );

        let feature = Origin {
            git_ref: "refs/heads/feature",
            ..MAIN
        };
        let (from_main, lines) = jobs.restore("deps-v1", "", feature).await;
        assert!(
            from_main.hit,
            "a feature branch restores the default branch's entry: {lines:#?}"
        );
        jobs.save("feature-only", feature).await;
        let (own, lines) = jobs.restore("feature-only", "", feature).await;
        assert!(own.hit, "the feature branch sees its own save: {lines:#?}");
        let (poisoned, lines) = jobs.restore("feature-only", "feature-", MAIN).await;
        assert!(
            !poisoned.hit && !poisoned.restored,
            "a feature branch's save reached main: {lines:#?}"
        );

        let metrics = scrape(metrics_port).await;
        assert!(
            metric_value(&metrics, "act_runner_cache_entries") >= 2.0,
            "{metrics}"
        );
        assert!(
            metric_value(&metrics, "act_runner_cache_bytes") > 0.0,
            "{metrics}"
        );
        assert!(
            metrics
                .lines()
                .any(|line| line.starts_with("act_runner_cache_requests_total{")
                    && !line.ends_with(" 0")),
            "{metrics}"
        );
        assert!(
            metrics.contains("act_runner_cache_evictions_total{reason="),
            "{metrics}"
        );
        daemon.stop().await;

        // The admin's view of the same directory once no server holds it.
        let listed = act_runner_output(&dir, &["cache", "list", "--repo", "owner/app"]).await;
        assert!(
            listed.contains("deps-v1") && listed.contains("feature-only"),
            "{listed}"
        );
        let other_listed =
            act_runner_output(&dir, &["cache", "list", "--repo", "owner/other"]).await;
        assert!(!other_listed.contains("deps-v1"), "{other_listed}");
    })
    .await;
}

#[tokio::test]
async fn actions_cache_saves_and_restores_in_docker_job_containers() {
    if !crate::exec_workflows::docker_ready() {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let labels = format!("docker-test:docker://{DOCKER_TEST_IMAGE}");
        let dir = register(&gitea, &labels, "").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let jobs = Jobs::new(&gitea, &daemon, "docker-test");
        jobs.save("docker-v1", MAIN).await;
        let (exact, lines) = jobs.restore("docker-v1", "", MAIN).await;
        assert!(exact.hit && exact.restored, "{lines:#?}");
        assert_eq!(exact.numbers, Some(numbers_digest()));
        let (prefix, lines) = jobs.restore("docker-v9", "docker-", MAIN).await;
        assert!(!prefix.hit && prefix.restored, "{lines:#?}");
        let other = Origin {
            repository: "owner/other",
            ..MAIN
        };
        let (foreign, lines) = jobs.restore("docker-v1", "docker-", other).await;
        assert!(!foreign.restored, "{lines:#?}");

        // One feature-branch job both restores main's entry (by prefix) and, its own key having
        // missed, saves that key in the action's post step: three jobs where four would do.
        let feature = Origin {
            git_ref: "refs/heads/feature",
            ..MAIN
        };
        let (from_main, lines) = jobs.restore("docker-feature", "docker-v1", feature).await;
        assert!(
            from_main.restored && !from_main.hit,
            "a feature branch restores the default branch's entry: {lines:#?}"
        );
        assert_eq!(
            from_main.content.as_deref(),
            Some("cached bytes for docker-v1")
        );
        let (own, lines) = jobs.restore("docker-feature", "", feature).await;
        assert!(
            own.hit && own.restored,
            "the feature branch sees its own save: {lines:#?}"
        );
        let (poisoned, lines) = jobs.restore("docker-feature", "docker-feature", MAIN).await;
        assert!(
            !poisoned.hit && !poisoned.restored,
            "a feature branch's save reached main: {lines:#?}"
        );
        daemon.stop().await;
    })
    .await;
}

/// `container.network: host`: job containers share the host's network, so the server stays on
/// loopback and they are told its loopback URL, as host jobs are.
#[tokio::test]
async fn actions_cache_saves_and_restores_in_docker_jobs_on_the_host_network() {
    if !crate::exec_workflows::docker_ready() {
        return;
    }
    bounded(async {
        let gitea = start_fake().await;
        let labels = format!("docker-test:docker://{DOCKER_TEST_IMAGE}");
        let dir = register(&gitea, &labels, "container:\n  network: host\n").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let jobs = Jobs::new(&gitea, &daemon, "docker-test");
        jobs.save("host-network-v1", MAIN).await;
        let (exact, lines) = jobs.restore("host-network-v1", "", MAIN).await;
        assert!(exact.hit && exact.restored, "{lines:#?}");
        assert_eq!(exact.numbers, Some(numbers_digest()));
        assert!(
            daemon.log().contains("cache_addr=127.0.0.1"),
            "the server left loopback: {}",
            daemon.log()
        );
        daemon.stop().await;
    })
    .await;
}

/// A shell line that prints `lookup=<status>` of a cache lookup with the job's credential.
const NODE_LOOKUP: &str = r#"node -e 'fetch(process.env.ACTIONS_CACHE_URL + "_apis/artifactcache/cache?keys=k&version=v", { headers: { Authorization: "Bearer " + process.env.ACTIONS_RUNTIME_TOKEN } }).then((r) => console.log("lookup=" + r.status))'"#;

/// A Docker job that prints its cache URL and the status of a lookup with its credential.
fn docker_cache_lookup() -> String {
    format!(
        "on: push\njobs:\n  lookup:\n    runs-on: docker-test\n    steps:\n      - run: |\n          echo \"cache-url=$ACTIONS_CACHE_URL\"\n          {NODE_LOOKUP}\n"
    )
}

/// `cache.host` and a fixed `cache.port`: Docker jobs are told that address, not the outbound
/// IP and a chosen port, and reach the server there. The host's address on Docker's default
/// bridge stands in for an operator's `cache.host`: a per-job network reaches it too.
#[tokio::test]
async fn docker_jobs_are_told_cache_host_and_a_fixed_cache_port() {
    if !crate::exec_workflows::docker_ready() {
        return;
    }
    bounded(async {
        let host = default_bridge_gateway().await;
        let port = free_port();
        let gitea = start_fake().await;
        let labels = format!("docker-test:docker://{DOCKER_TEST_IMAGE}");
        let dir = register(
            &gitea,
            &labels,
            &format!("  host: {host}\n  port: {port}\n"),
        )
        .await;
        let daemon = Daemon::start(&dir, &[]).await;
        let lines = run(&gitea, &daemon, task(&docker_cache_lookup(), MAIN)).await;
        let told = format!("cache-url=http://{host}:{port}/");
        assert!(lines.contains(&told), "{told} missing: {lines:#?}");
        assert!(lines.iter().any(|line| line == "lookup=204"), "{lines:#?}");
        daemon.stop().await;
    })
    .await;
}

/// The host's address on Docker's default bridge: its recorded gateway, else the first address
/// of its subnet (where Docker puts the gateway when the record is empty, as in Docker 20.10).
async fn default_bridge_gateway() -> std::net::Ipv4Addr {
    let output = tokio::process::Command::new("docker")
        .args(["network", "inspect", "bridge", "-f"])
        .arg("{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}")
        .output()
        .await
        .expect("docker network inspect runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (gateway, subnet) = text.trim_end().split_once(' ').unwrap_or_default();
    if let Ok(gateway) = gateway.parse() {
        return gateway;
    }
    let network: std::net::Ipv4Addr = subnet
        .split_once('/')
        .and_then(|(address, _)| address.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 subnet on Docker's bridge network: {text:?}"));
    std::net::Ipv4Addr::from(u32::from(network) + 1)
}

const PRINT_CACHE_ENV: &str = r#"on: push
jobs:
  env:
    runs-on: host-test
    steps:
      - run: |
          echo "cache-url=${ACTIONS_CACHE_URL:-none}"
          echo "cache-v2=${ACTIONS_CACHE_SERVICE_V2:-none}"
          echo "results-url=${ACTIONS_RESULTS_URL:-none}"
"#;

#[tokio::test]
async fn host_jobs_get_a_loopback_cache_url_and_disabled_means_nothing_advertised() {
    bounded(async {
        let gitea = start_fake().await;
        let dir = register(&gitea, "host-test:host", "  v2: true\n").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let lines = run(&gitea, &daemon, task(PRINT_CACHE_ENV, MAIN)).await;
        let url = lines
            .iter()
            .find_map(|line| line.strip_prefix("cache-url="))
            .unwrap_or_default();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|line| line == "cache-v2=true"),
            "{lines:#?}"
        );
        let results = format!("results-url={}", gitea.connect_url().trim_end_matches('/'));
        assert!(
            lines.contains(&results),
            "artifacts stay on Gitea: {lines:#?}"
        );
        daemon.stop().await;

        let gitea = start_fake().await;
        let dir = register(&gitea, "host-test:host", "  enabled: false\n").await;
        let daemon = Daemon::start(&dir, &[]).await;
        let lines = run(&gitea, &daemon, task(PRINT_CACHE_ENV, MAIN)).await;
        assert!(
            lines.iter().any(|line| line == "cache-url=none"),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|line| line == "cache-v2=none"),
            "{lines:#?}"
        );
        daemon.stop().await;
    })
    .await;
}

/// A workflow whose step hands the test its cache URL and credential through files in `out`
/// (the log masks the token), prints `started`, then runs `rest` (shell lines).
fn credential_workflow(out: &std::path::Path, rest: &str) -> String {
    format!(
        "on: push\njobs:\n  job:\n    runs-on: host-test\n    steps:\n      - run: |\n          printf '%s' \"$ACTIONS_CACHE_URL\" >{out}/url\n          printf '%s' \"$ACTIONS_RUNTIME_TOKEN\" >{out}/token\n          echo started\n{rest}",
        out = out.display()
    )
}

/// The status of a cache lookup with the credential a [`credential_workflow`] left in `out`.
async fn lookup_status(out: &std::path::Path) -> reqwest::StatusCode {
    let url = std::fs::read_to_string(out.join("url")).expect("the cache URL");
    let token = std::fs::read_to_string(out.join("token")).expect("the runtime token");
    reqwest::Client::new()
        .get(format!("{url}_apis/artifactcache/cache?keys=k&version=v"))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the cache answers")
        .status()
}

/// Waits up to `limit` for the credential in `out` to be refused; the last status.
async fn wait_for_401(out: &std::path::Path, limit: Duration) -> reqwest::StatusCode {
    let deadline = tokio::time::Instant::now() + limit;
    let mut status = lookup_status(out).await;
    while status != 401 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = lookup_status(out).await;
    }
    status
}

#[tokio::test]
async fn a_task_s_cache_credential_is_revoked_when_it_ends_or_is_cancelled() {
    use act_runner::client::proto::runner::Result as TaskResult;

    fixture::require_node();
    bounded(async {
        let gitea = start_fake().await;
        let dir = register(&gitea, "host-test:host", "").await;
        let daemon = Daemon::start(&dir, &[]).await;

        let finished = dir.path().join("finished-task");
        std::fs::create_dir_all(&finished).expect("create the task's output directory");
        let rest = format!("          {NODE_LOOKUP}\n");
        let lines = run(
            &gitea,
            &daemon,
            task(&credential_workflow(&finished, &rest), MAIN),
        )
        .await;
        assert!(
            lines.iter().any(|line| line == "lookup=204"),
            "the running task's credential is live: {lines:#?}"
        );
        // The revoke follows the job's end, around the final report: bounded, not instant.
        let status = wait_for_401(&finished, Duration::from_secs(10)).await;
        assert_eq!(
            status,
            401,
            "a finished task's credential still reaches the cache: {}",
            daemon.log()
        );

        let out = dir.path().join("cancelled-task");
        std::fs::create_dir_all(&out).expect("create the task's output directory");
        let workflow = credential_workflow(
            &out,
            "          for i in $(seq 1 1200); do sleep 0.1; done\n",
        );
        let task_id = gitea.enqueue_task(
            crate::support::fake_gitea::TaskSpec::from_workflow(&workflow).expect("a workflow"),
        );
        daemon.wait_for_line(&gitea, task_id, "started").await;
        assert_eq!(
            lookup_status(&out).await,
            204,
            "the running task's credential is live"
        );

        assert!(gitea.cancel_task(task_id));
        let task = daemon.wait_final(&gitea, task_id).await;
        assert_eq!(task.result, TaskResult::Cancelled, "{}", daemon.log());
        // The fake marks the task cancelled at once; the runner learns it at its next state
        // report (every 5 s), stops the job, then revokes: wait for that within a bound.
        let status = wait_for_401(&out, Duration::from_secs(30)).await;
        assert_eq!(
            status,
            401,
            "a cancelled task's credential still reaches the cache: {}",
            daemon.log()
        );
        daemon.stop().await;
    })
    .await;
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

fn append_metrics(dir: &crate::daemon::harness::RunnerDir, port: u16) {
    let path = dir.config_path();
    let mut text = std::fs::read_to_string(&path).expect("read config.yaml");
    text.push_str(&format!(
        "metrics:\n  enabled: true\n  addr: 127.0.0.1:{port}\n"
    ));
    std::fs::write(&path, text).expect("write config.yaml");
}

pub async fn scrape(port: u16) -> String {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the metrics endpoint answers");
    response.text().await.expect("a metrics body")
}

/// The value of an unlabelled sample.
pub fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no sample {name}: {metrics}"))
}

/// `act_runner -c <dir>/config.yaml <args>` in the runner's directory; it must succeed.
pub async fn act_runner_output(dir: &crate::daemon::harness::RunnerDir, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_act_runner"))
        .arg("-c")
        .arg(dir.config_path())
        .args(args)
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("act_runner finishes")
        .expect("act_runner runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "act_runner {args:?}: {text}");
    text
}
