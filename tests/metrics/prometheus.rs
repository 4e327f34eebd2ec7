//! The exposition and the packaged rules and dashboard, checked by Prometheus's own tools:
//! `promtool check metrics` on a live scrape, `promtool check rules` and `promtool test rules`, and a
//! real Prometheus server on loopback scraping the runner.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use act_runner::metrics::ServerLimits;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use super::{RUNNER_NAME, TEST_LIMIT, drive_every_metric, get, new_metrics, start};

/// Whether a prerequisite tool exists; without it the test fails under `CI` and is skipped otherwise.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    let reason = format!("{name} is missing; tests/setup.d/30-prometheus.sh installs it");
    crate::support::require(found.is_some(), &reason);
    found
}

#[tokio::test]
async fn promtool_check_metrics_passes_on_a_live_scrape() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let metrics = new_metrics();
    drive_every_metric(&metrics);
    let server = start(metrics, ServerLimits::HARDENED);
    let scrape = get(server.addr, "/metrics").await;
    server.stop().await;
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(scrape.body.as_bytes()).await.unwrap();
    drop(stdin);
    let output = timeout(TEST_LIMIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn promtool_check_rules_passes_on_the_alert_rules() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let rules =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus/act-runner.rules.yml");
    assert!(rules.is_file(), "{} exists", rules.display());
    let output = timeout(
        TEST_LIMIT,
        tokio::process::Command::new(promtool)
            .args(["check", "rules"])
            .arg(&rules)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "promtool check rules: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("SUCCESS: 8 rules found"), "{stdout}");
}

/// A free loopback port for the Prometheus server (released just before Prometheus binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The `data.result` array of a Prometheus instant query.
async fn prometheus_query(
    client: &reqwest::Client,
    api: SocketAddr,
    query: &str,
) -> Vec<serde_json::Value> {
    let answer = client
        .get(format!(
            "http://{api}/api/v1/query?query={}",
            percent_encode(query)
        ))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    let Ok(answer) = answer else {
        return Vec::new();
    };
    let Ok(json) = answer.json::<serde_json::Value>().await else {
        return Vec::new();
    };
    json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_server_and_its_query_api_returns_the_series() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let metrics = new_metrics();
    drive_every_metric(&metrics);
    let server = start(metrics, ServerLimits::HARDENED);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: act_runner\n    static_configs:\n      - targets: ['{}']\n",
            server.addr
        ),
    )
    .unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = tokio::process::Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={api}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let client = reqwest::Client::new();
    let queries = [
        "act_runner_info",
        r#"act_runner_poll_fetch_total{result="task"}"#,
        r#"act_runner_job_total{status="cancelled"}"#,
        "act_runner_job_duration_seconds_bucket",
        "process_resident_memory_bytes",
        r#"up{job="act_runner"}"#,
    ];
    let found = timeout(Duration::from_secs(60), async {
        loop {
            let mut all_found = true;
            for query in queries {
                all_found &= !prometheus_query(&client, api, query).await.is_empty();
            }
            if all_found {
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("prometheus exited early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    if found.is_err() {
        let _ = child.start_kill();
        let output = child.wait_with_output().await.unwrap();
        panic!(
            "prometheus never returned every series:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let info = prometheus_query(&client, api, "act_runner_info").await;
    assert_eq!(info[0]["metric"]["name"], RUNNER_NAME);
    assert_eq!(info[0]["metric"]["version"], act_runner::VERSION);
    let up = prometheus_query(&client, api, r#"up{job="act_runner"}"#).await;
    assert_eq!(up[0]["value"][1], "1");
    child.start_kill().unwrap();
    let _ = timeout(Duration::from_secs(10), child.wait()).await;
    server.stop().await;
}

fn packaging_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/prometheus")
        .join(name)
}

#[tokio::test]
async fn promtool_unit_tests_of_the_alert_rules_pass() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let output = timeout(
        TEST_LIMIT,
        tokio::process::Command::new(promtool)
            .args(["test", "rules"])
            .arg(packaging_file("act-runner.rules.test.yml"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every `act_runner_*` or `process_*` name in `text` that the exposition does not hold.
fn unknown_metric_names(text: &str, exposition: &str) -> Vec<String> {
    let families: Vec<&str> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let mut unknown = Vec::new();
    for prefix in ["act_runner_", "process_"] {
        for (start, _) in text.match_indices(prefix) {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == prefix {
                continue; // the namespace itself, mentioned in prose
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| families.contains(base))
                .unwrap_or(&name);
            if !families.contains(&family) {
                unknown.push(name);
            }
        }
    }
    unknown
}

#[test]
fn the_dashboard_and_the_rules_name_only_exposed_metrics() {
    let exposition = new_metrics().render().unwrap();
    let dashboard = std::fs::read_to_string(packaging_file("act-runner.grafana.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs = Vec::new();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        exprs.len() >= 20,
        "the dashboard has {} queries",
        exprs.len()
    );
    let unknown = unknown_metric_names(&exprs.join("\n"), &exposition);
    assert!(
        unknown.is_empty(),
        "dashboard names unknown metrics: {unknown:?}"
    );

    let rules = std::fs::read_to_string(packaging_file("act-runner.rules.yml")).unwrap();
    let unknown = unknown_metric_names(&rules, &exposition);
    assert!(
        unknown.is_empty(),
        "rules name unknown metrics: {unknown:?}"
    );
    assert!(
        unknown_metric_names("act_runner_jobs_total", &exposition) == ["act_runner_jobs_total"]
    );
}
