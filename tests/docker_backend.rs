//! The Docker backend against the real engine, with the local test images only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use act_runner::executor::backend::docker::{
    DockerBackend, DockerJobConfig, JobIdentity, LABEL_JOB_INSTANCE, LABEL_RUNNER_UUID,
    LABEL_TASK_ID, ServiceConfig, connect, orphans,
};
use act_runner::executor::backend::{
    Backend, BackendError, ContainerSpec, ExecEnd, ExecRequest, ExitStatus, JobContainers, NewFile,
    OutputLines, Stream,
};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, NetworkCreateRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, ListContainersOptionsBuilder};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::support::images::{self, BUSYBOX_IMAGE, DEBIAN_IMAGE};

const TEST_LIMIT: Duration = Duration::from_secs(180);

/// Runs a test body with a Docker client under [`TEST_LIMIT`]; skips (or fails under CI) without Docker.
pub async fn with_docker<F, Fut>(body: F)
where
    F: FnOnce(Docker) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(docker) = timeout(TEST_LIMIT, images::docker())
        .await
        .expect("docker connect timed out")
    else {
        return;
    };
    timeout(TEST_LIMIT, body(docker))
        .await
        .expect("test timed out");
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub fn job_config(image: &str) -> DockerJobConfig {
    DockerJobConfig {
        image: image.to_string(),
        credentials: None,
        runner_options: String::new(),
        job_options: String::new(),
        env: BTreeMap::from([(String::from("FROM_CONTAINER_ENV"), String::from("yes"))]),
        proxy_env: BTreeMap::new(),
        volumes: Vec::new(),
        ports: Vec::new(),
        services: Vec::new(),
        network: None,
        network_ip: Default::default(),
        network_pool: None,
        privileged: false,
        valid_volumes: Vec::new(),
        force_pull: false,
        docker_socket: None,
        container_name: unique("act-runner-test"),
        job_alias: String::from("build"),
        identity: JobIdentity {
            runner_uuid: unique("runner"),
            task_id: 42,
        },
        workspace: String::from("/workspace/owner/repo"),
        bind_workspace: false,
        shared_tool_cache: false,
        allocate_pty: false,
        max_lifetime: Duration::from_secs(600),
        service_ready_timeout: Some(Duration::from_secs(60)),
        pull_timeout: Duration::from_secs(30),
    }
}

/// Prepares a backend and returns it with the job-level log lines.
pub async fn prepared(
    docker: &Docker,
    config: DockerJobConfig,
) -> (DockerBackend, Result<(), BackendError>, Vec<String>) {
    let mut backend = DockerBackend::new(docker.clone(), config);
    let (log_tx, mut log_rx) = mpsc::channel(64);
    let result = backend.prepare(&log_tx).await;
    drop(log_tx);
    let mut log = Vec::new();
    while let Some(line) = log_rx.recv().await {
        log.push(line);
    }
    (backend, result, log)
}

pub fn request(script: &str) -> ExecRequest {
    ExecRequest {
        argv: vec![String::from("sh"), String::from("-c"), script.to_string()],
        env: BTreeMap::new(),
        working_dir: None,
        timeout: None,
        files: Vec::new(),
        command_dir: None,
    }
}

/// Runs `request` and returns the status with every line and its arrival time since the start.
async fn run(
    backend: &DockerBackend,
    request: ExecRequest,
    cancel: CancellationToken,
) -> (
    Result<ExitStatus, BackendError>,
    Vec<(Duration, Stream, String)>,
) {
    let (end, lines) = run_to_end(backend, request, cancel).await;
    (end.map(|end| end.status), lines)
}

/// [`run`], with the whole `ExecEnd`.
async fn run_to_end(
    backend: &DockerBackend,
    request: ExecRequest,
    cancel: CancellationToken,
) -> (
    Result<ExecEnd, BackendError>,
    Vec<(Duration, Stream, String)>,
) {
    let (tx, mut rx) = mpsc::channel::<OutputLines>(1024);
    let started = Instant::now();
    let collector = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(output) = rx.recv().await {
            for line in output.lines.iter() {
                lines.push((started.elapsed(), output.stream, line.to_string()));
            }
        }
        lines
    });
    let end = backend.exec(request, tx, cancel).await;
    let lines = collector.await.unwrap();
    (end, lines)
}

fn texts(lines: &[(Duration, Stream, String)]) -> Vec<String> {
    lines.iter().map(|(_, _, line)| line.clone()).collect()
}

pub async fn containers_with_label(docker: &Docker, label: &str) -> Vec<String> {
    let filters = HashMap::from([(String::from("label"), vec![label.to_string()])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|summary| summary.id)
        .collect()
}

pub async fn network_exists(docker: &Docker, name: &str) -> bool {
    docker.inspect_network(name, None).await.is_ok()
}

async fn assert_all_gone(docker: &Docker, backend: &DockerBackend) {
    let instance = &backend.labels()[LABEL_JOB_INSTANCE];
    let left = containers_with_label(docker, &format!("{LABEL_JOB_INSTANCE}={instance}")).await;
    assert!(left.is_empty(), "containers left behind: {left:?}");
    assert!(
        !network_exists(docker, &backend.network_name()).await,
        "network left behind"
    );
}

#[tokio::test]
async fn exec_streams_each_line_as_it_is_printed() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        let (status, lines) = run(
            &backend,
            request("echo first; sleep 2; echo second"),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        assert_eq!(texts(&lines), ["first", "second"]);
        assert!(
            lines[0].0 < Duration::from_millis(1500),
            "first line arrived after {:?}",
            lines[0].0
        );
        assert!(
            lines[1].0 >= Duration::from_secs(2),
            "second line arrived after {:?}",
            lines[1].0
        );
        backend.cleanup().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn exec_reports_exit_codes_and_separates_stderr() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        let (status, lines) = run(
            &backend,
            request("echo out; echo err >&2; exit 3"),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(3));
        let streams: Vec<_> = lines
            .iter()
            .map(|(_, stream, line)| (*stream, line.as_str()))
            .collect();
        assert!(streams.contains(&(Stream::Stdout, "out")), "{streams:?}");
        assert!(streams.contains(&(Stream::Stderr, "err")), "{streams:?}");
        let (status, _) = run(&backend, request("true"), CancellationToken::new()).await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        let (status, lines) = run(
            &backend,
            request("printf 'no newline'"),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        assert_eq!(texts(&lines), ["no newline"]);
        backend.cleanup().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn exec_sets_env_and_working_directory() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(DEBIAN_IMAGE)).await;
        result.unwrap();
        let (status, _) = run(
            &backend,
            request("mkdir -p sub/dir"),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        let mut exec = request("echo \"$GREETING\"; pwd; echo \"$FROM_CONTAINER_ENV\"");
        exec.env
            .insert(String::from("GREETING"), String::from("hello world"));
        exec.working_dir = Some(String::from("sub/dir"));
        let (status, lines) = run(&backend, exec, CancellationToken::new()).await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        assert_eq!(
            texts(&lines),
            ["hello world", "/workspace/owner/repo/sub/dir", "yes"]
        );
        let (_, lines) = run(&backend, request("pwd"), CancellationToken::new()).await;
        assert_eq!(texts(&lines), ["/workspace/owner/repo"]);
        backend.cleanup().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn configure_applies_the_workflow_container_and_base_env_has_the_image_path() {
    with_docker(|docker| async move {
        let mut backend = DockerBackend::new(docker.clone(), job_config(BUSYBOX_IMAGE));
        let job = ContainerSpec {
            image: DEBIAN_IMAGE.to_string(),
            env: BTreeMap::from([(String::from("FROM_WORKFLOW"), String::from("1"))]),
            options: String::from("--hostname wf-host"),
            ..Default::default()
        };
        backend
            .configure(JobContainers {
                job: Some(job),
                services: Vec::new(),
            })
            .unwrap();
        let (log_tx, _log_rx) = mpsc::channel(64);
        backend.prepare(&log_tx).await.unwrap();
        let base_env = backend.base_env();
        assert!(base_env["PATH"].contains("/usr/bin"), "{base_env:?}");
        assert_eq!(base_env["FROM_WORKFLOW"], "1");
        let mut exec = request("hostname; python3 -c 'print(6*7)'");
        exec.env = base_env;
        let (status, lines) = run(&backend, exec, CancellationToken::new()).await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0), "{lines:?}");
        assert_eq!(texts(&lines), ["wf-host", "42"]);
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}

#[tokio::test]
async fn files_round_trip_through_the_container() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        backend
            .write_file("/tmp/act/deep/script.sh", b"echo from-script\n", 0o755)
            .await
            .unwrap();
        let (status, lines) = run(
            &backend,
            request("/tmp/act/deep/script.sh"),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        assert_eq!(texts(&lines), ["from-script"]);
        backend
            .write_file("relative.txt", b"in workspace", 0o644)
            .await
            .unwrap();
        assert_eq!(
            backend
                .read_file("/workspace/owner/repo/relative.txt")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"in workspace"[..])
        );
        let (_, lines) = run(
            &backend,
            request("printf 'a=1\\nb=2\\n' > out.env"),
            CancellationToken::new(),
        )
        .await;
        assert!(lines.is_empty());
        assert_eq!(
            backend.read_file("out.env").await.unwrap().as_deref(),
            Some(&b"a=1\nb=2\n"[..])
        );
        assert_eq!(
            backend.read_file("/tmp/does-not-exist").await.unwrap(),
            None
        );
        backend.cleanup().await.unwrap();
    })
    .await;
}

/// A shell step as the executor sends one: its script and empty command files go along with
/// the exec, and their directory is named so the backend can report on it.
fn shell_step(script: &str) -> ExecRequest {
    let dir = "/tmp/act/commands/step";
    let new_file = |path: String, contents: &str| NewFile {
        path,
        contents: contents.as_bytes().to_vec(),
        mode: 0o644,
    };
    ExecRequest {
        argv: ["sh", "-e", "/tmp/act/step.sh"].map(String::from).to_vec(),
        files: vec![
            new_file(format!("{dir}/set_env"), ""),
            new_file(format!("{dir}/set_output"), ""),
            new_file(String::from("/tmp/act/step.sh"), script),
        ],
        command_dir: Some(dir.to_string()),
        ..request("")
    }
}

#[tokio::test]
async fn a_shell_step_reports_its_end_itself_and_the_report_never_reaches_the_log() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        let quiet = "echo out; echo err >&2; printf 'no newline' >&2; exit 3";
        let (end, lines) = run_to_end(&backend, shell_step(quiet), CancellationToken::new()).await;
        assert_eq!(
            end.unwrap(),
            ExecEnd {
                status: ExitStatus::Exited(3),
                command_dir_empty: true
            }
        );
        // The step's stderr joins its stdout, so the lines keep the order they were written in.
        let stdout: Vec<_> = lines
            .iter()
            .filter(|(_, stream, _)| *stream == Stream::Stdout)
            .map(|(_, _, line)| line.as_str())
            .collect();
        assert_eq!(stdout, ["out", "err", "no newline"]);
        assert_eq!(texts(&lines).len(), 3, "{lines:?}");

        let writes = "echo name=value >> /tmp/act/commands/step/set_output";
        let (end, lines) = run_to_end(&backend, shell_step(writes), CancellationToken::new()).await;
        assert_eq!(
            end.unwrap(),
            ExecEnd {
                status: ExitStatus::Exited(0),
                command_dir_empty: false
            }
        );
        assert!(lines.is_empty(), "{lines:?}");
        let written = backend
            .read_dir_files("/tmp/act/commands/step")
            .await
            .unwrap();
        assert_eq!(written["set_output"], b"name=value\n");

        let killed = "kill -9 $$";
        let (end, _) = run_to_end(&backend, shell_step(killed), CancellationToken::new()).await;
        assert_eq!(end.unwrap().status, ExitStatus::Exited(128 + 9));

        // Without a command directory there is no report: the exit code comes from Docker.
        let mut plain = shell_step("exit 4");
        plain.command_dir = None;
        let (end, _) = run_to_end(&backend, plain, CancellationToken::new()).await;
        assert_eq!(end.unwrap(), ExitStatus::Exited(4).into());
        backend.cleanup().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn with_allocate_pty_a_step_writes_to_a_terminal_and_ends_as_without_one() {
    with_docker(|docker| async move {
        let mut config = job_config(BUSYBOX_IMAGE);
        config.allocate_pty = true;
        let (mut backend, result, _) = prepared(&docker, config).await;
        result.unwrap();
        let script = "test -t 0 && test -t 1 && test -t 2 && echo terminal; echo err >&2; printf 'no newline'; exit 3";
        let (end, lines) = run_to_end(&backend, shell_step(script), CancellationToken::new()).await;
        assert_eq!(
            end.unwrap(),
            ExecEnd {
                status: ExitStatus::Exited(3),
                command_dir_empty: true
            }
        );
        // One stream in the order written, without the terminal's `\r` and without the report.
        let all: Vec<_> = lines.iter().map(|(_, stream, line)| (*stream, line.as_str())).collect();
        assert_eq!(
            all,
            [
                (Stream::Stdout, "terminal"),
                (Stream::Stdout, "err"),
                (Stream::Stdout, "no newline")
            ]
        );

        // A child left running holds the terminal, not the step.
        let started = Instant::now();
        let (end, lines) =
            run_to_end(&backend, shell_step("sleep 30 & echo started"), CancellationToken::new())
                .await;
        assert_eq!(end.unwrap().status, ExitStatus::Exited(0));
        assert_eq!(texts(&lines), ["started"]);
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

        let mut slow = shell_step("sleep 30");
        slow.timeout = Some(Duration::from_millis(500));
        let (end, _) = run_to_end(&backend, slow, CancellationToken::new()).await;
        assert_eq!(end.unwrap().status, ExitStatus::TimedOut);
        backend.cleanup().await.unwrap();
    })
    .await;
}

/// How many processes in the container run `sleep <marker>`.
async fn count_sleepers(backend: &DockerBackend, marker: &str) -> usize {
    let script = format!(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '^sleep {marker} ' || true"
    );
    let (_, lines) = run(backend, request(&script), CancellationToken::new()).await;
    texts(&lines)
        .first()
        .and_then(|count| count.trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn timeout_kills_the_process_tree_inside_the_container() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        let mut exec = request("sleep 4242 & sleep 4242; echo never");
        exec.timeout = Some(Duration::from_secs(1));
        let started = Instant::now();
        let (status, lines) = run(&backend, exec, CancellationToken::new()).await;
        assert_eq!(status.unwrap(), ExitStatus::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "took {:?}",
            started.elapsed()
        );
        assert!(!texts(&lines).contains(&String::from("never")));
        assert_eq!(count_sleepers(&backend, "4242").await, 0);
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}

#[tokio::test]
async fn cancel_kills_the_process_and_cleanup_removes_everything() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            trigger.cancel();
        });
        let started = Instant::now();
        let (status, lines) = run(&backend, request("echo started; exec sleep 4343"), cancel).await;
        assert_eq!(status.unwrap(), ExitStatus::Cancelled);
        assert_eq!(texts(&lines), ["started"]);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(count_sleepers(&backend, "4343").await, 0);
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}

#[tokio::test]
async fn cleanup_after_success_and_after_failed_step_leaves_nothing() {
    with_docker(|docker| async move {
        for script in ["true", "exit 1"] {
            let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
            result.unwrap();
            assert!(network_exists(&docker, &backend.network_name()).await);
            let _ = run(&backend, request(script), CancellationToken::new()).await;
            backend.cleanup().await.unwrap();
            assert_all_gone(&docker, &backend).await;
            // Cleanup twice is harmless.
            backend.cleanup().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn cleanup_after_interrupted_prepare_removes_what_was_created() {
    with_docker(|docker| async move {
        let mut config = job_config(BUSYBOX_IMAGE);
        config.services = vec![slow_service("db")];
        let mut backend = DockerBackend::new(docker.clone(), config);
        let (log_tx, _log_rx) = mpsc::channel(64);
        // The service never becomes healthy in time: dropping `prepare` mid-wait is the cancellation.
        let interrupted = timeout(Duration::from_secs(3), backend.prepare(&log_tx)).await;
        assert!(
            interrupted.is_err(),
            "prepare should still be waiting for the service"
        );
        let instance = backend.labels()[LABEL_JOB_INSTANCE].clone();
        assert_eq!(
            containers_with_label(&docker, &format!("{LABEL_JOB_INSTANCE}={instance}"))
                .await
                .len(),
            2
        );
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}

fn slow_service(id: &str) -> ServiceConfig {
    ServiceConfig {
        id: id.to_string(),
        image: BUSYBOX_IMAGE.to_string(),
        credentials: None,
        env: BTreeMap::from([(String::from("GREETING"), String::from("hello from service"))]),
        ports: Vec::new(),
        volumes: Vec::new(),
        options: String::from(
            "--health-cmd 'test -f /www/index.html' --health-interval 500ms --health-retries 60",
        ),
        cmd: vec![
            String::from("sh"),
            String::from("-c"),
            String::from(
                "mkdir -p /www; sleep 5; echo \"$GREETING\" > /www/index.html; exec httpd -f -p 8080 -h /www",
            ),
        ],
    }
}

#[tokio::test]
async fn service_is_reached_by_alias_after_health_wait() {
    with_docker(|docker| async move {
        let mut config = job_config(BUSYBOX_IMAGE);
        config.services = vec![slow_service("db")];
        let started = Instant::now();
        let (mut backend, result, log) = prepared(&docker, config).await;
        result.unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(5),
            "prepare did not wait for health: {:?}",
            started.elapsed()
        );
        assert!(
            log.iter()
                .any(|line| line.contains("waiting for service db")),
            "{log:?}"
        );
        let (status, lines) = run(
            &backend,
            request("wget -q -O- http://db:8080/index.html"),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0), "{lines:?}");
        assert_eq!(texts(&lines), ["hello from service"]);
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}

#[tokio::test]
async fn unhealthy_service_fails_prepare_and_cleanup_still_works() {
    with_docker(|docker| async move {
        let mut config = job_config(BUSYBOX_IMAGE);
        let mut service = slow_service("cache");
        service.options =
            String::from("--health-cmd false --health-interval 200ms --health-retries 1");
        config.services = vec![service];
        let (mut backend, result, _) = prepared(&docker, config).await;
        let err = result.unwrap_err().to_string();
        assert!(err.contains("unhealthy"), "{err}");
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}

#[tokio::test]
async fn containers_and_network_carry_runner_and_task_labels() {
    with_docker(|docker| async move {
        let config = job_config(BUSYBOX_IMAGE);
        let runner_uuid = config.identity.runner_uuid.clone();
        let (mut backend, result, _) = prepared(&docker, config).await;
        result.unwrap();
        let container = docker
            .inspect_container(backend.container_name(), None)
            .await
            .unwrap();
        let labels = container.config.unwrap().labels.unwrap();
        assert_eq!(labels[LABEL_RUNNER_UUID], runner_uuid);
        assert_eq!(labels[LABEL_TASK_ID], "42");
        let network = docker
            .inspect_network(&backend.network_name(), None)
            .await
            .unwrap();
        let labels = network.labels.unwrap();
        assert_eq!(labels[LABEL_RUNNER_UUID], runner_uuid);
        assert_eq!(labels[LABEL_TASK_ID], "42");
        backend.cleanup().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn privileged_option_is_dropped_with_a_warning_unless_the_runner_allows_it() {
    with_docker(|docker| async move {
        let mut config = job_config(BUSYBOX_IMAGE);
        config.job_options = String::from("--privileged");
        let (mut backend, result, log) = prepared(&docker, config.clone()).await;
        result.unwrap();
        let warnings: Vec<&String> = log
            .iter()
            .filter(|line| line.contains("`--privileged` ignored"))
            .collect();
        assert_eq!(warnings.len(), 1, "{log:?}");
        let container = docker
            .inspect_container(backend.container_name(), None)
            .await
            .unwrap();
        assert_ne!(container.host_config.unwrap().privileged, Some(true));
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}

#[tokio::test]
async fn network_create_options_reach_the_job_network() {
    with_docker(|docker| async move {
        let mut config = job_config(BUSYBOX_IMAGE);
        config.network_ip.enable_ipv6 = Some(true);
        let (mut backend, result, _) = prepared(&docker, config).await;
        // An engine without an IPv6 address pool refuses the network, naming IPv6: either way the
        // option reached Docker.
        match result {
            Ok(()) => {
                let network = docker
                    .inspect_network(&backend.network_name(), None)
                    .await
                    .unwrap();
                assert_eq!(network.enable_ipv6, Some(true));
            }
            Err(error) => assert!(error.to_string().contains("IPv6"), "{error}"),
        }
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}

#[tokio::test]
async fn volumes_outside_valid_volumes_are_not_mounted_and_allowed_ones_are() {
    with_docker(|docker| async move {
        let allowed = tempfile::tempdir().unwrap();
        std::fs::write(allowed.path().join("marker"), "mounted").unwrap();
        let refused = tempfile::tempdir().unwrap();
        std::fs::write(refused.path().join("marker"), "leaked").unwrap();
        let mut config = job_config(BUSYBOX_IMAGE);
        config.valid_volumes = vec![
            format!("{}/**", allowed.path().display()),
            allowed.path().display().to_string(),
        ];
        config.volumes = vec![format!("{}:/allowed:ro", allowed.path().display())];
        config.job_options = format!("-v {}:/refused", refused.path().display());
        let (mut backend, result, log) = prepared(&docker, config).await;
        result.unwrap();
        assert!(
            log.iter()
                .any(|line| line.contains("not allowed by container.valid_volumes")),
            "{log:?}"
        );
        let (_, lines) = run(
            &backend,
            request(
                "echo \"$(cat /allowed/marker)\"; cat /refused/marker 2>/dev/null || echo absent",
            ),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(texts(&lines), ["mounted", "absent"]);
        backend.cleanup().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn missing_image_fails_fast_with_a_clear_message() {
    with_docker(|docker| async move {
        let started = Instant::now();
        let (mut backend, result, _) =
            prepared(&docker, job_config("act-runner-test/not-built:never")).await;
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("act-runner-test/not-built:never") && err.contains("not present locally"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}

#[tokio::test]
async fn present_image_is_not_pulled_unless_forced() {
    with_docker(|docker| async move {
        // No registry is reachable here: any pull would fail, so success proves no pull happened.
        let (mut backend, result, log) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        assert!(!log.iter().any(|line| line.contains("pulling")), "{log:?}");
        backend.cleanup().await.unwrap();

        let mut config = job_config(BUSYBOX_IMAGE);
        config.force_pull = true;
        let (mut backend, result, log) = prepared(&docker, config).await;
        result.unwrap();
        assert!(
            log.iter().any(|line| line.contains("using the local copy")),
            "{log:?}"
        );
        backend.cleanup().await.unwrap();
    })
    .await;
}

async fn leftover(docker: &Docker, runner_uuid: &str, task_id: i64) -> (String, String) {
    let name = unique("act-runner-orphan");
    let labels = HashMap::from([
        (LABEL_RUNNER_UUID.to_string(), runner_uuid.to_string()),
        (LABEL_TASK_ID.to_string(), task_id.to_string()),
    ]);
    let body = ContainerCreateBody {
        image: Some(BUSYBOX_IMAGE.to_string()),
        cmd: Some(vec![String::from("sleep"), String::from("600")]),
        labels: Some(labels.clone()),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    docker.create_container(Some(options), body).await.unwrap();
    let network = format!("{name}-network");
    let request = NetworkCreateRequest {
        name: network.clone(),
        labels: Some(labels),
        ..Default::default()
    };
    docker.create_network(request).await.unwrap();
    (name, network)
}

#[tokio::test]
async fn orphan_removal_takes_only_this_runners_dead_tasks() {
    with_docker(|docker| async move {
        let me = unique("runner");
        let other = unique("runner");
        let (dead, dead_network) = leftover(&docker, &me, 1).await;
        let (live, live_network) = leftover(&docker, &me, 2).await;
        let (foreign, foreign_network) = leftover(&docker, &other, 1).await;
        let report = orphans::remove_orphans(&docker, &me, &HashSet::from([2]))
            .await
            .unwrap();
        assert_eq!(report.containers, std::slice::from_ref(&dead));
        assert_eq!(report.networks, std::slice::from_ref(&dead_network));
        assert!(docker.inspect_container(&dead, None).await.is_err());
        assert!(!network_exists(&docker, &dead_network).await);
        for (name, network) in [(&live, &live_network), (&foreign, &foreign_network)] {
            assert!(
                docker.inspect_container(name, None).await.is_ok(),
                "{name} was removed"
            );
            assert!(
                network_exists(&docker, network).await,
                "{network} was removed"
            );
        }
        orphans::remove_orphans(&docker, &me, &HashSet::new())
            .await
            .unwrap();
        orphans::remove_orphans(&docker, &other, &HashSet::new())
            .await
            .unwrap();
        assert!(docker.inspect_container(&live, None).await.is_err());
        assert!(docker.inspect_container(&foreign, None).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn readiness_pings_the_real_daemon_and_gives_up_after_docker_timeout() {
    with_docker(|_docker| async move {
        let host = connect::discover_docker_host_from_process("").unwrap();
        let cancel = CancellationToken::new();
        let started = Instant::now();
        connect::wait_until_ready(&host, Duration::from_secs(5), &cancel)
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );

        let missing = tempfile::tempdir().unwrap();
        let socket = format!("unix://{}/docker.sock", missing.path().display());
        let started = Instant::now();
        let err = connect::wait_until_ready(&socket, Duration::from_secs(2), &cancel)
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
            "waited {waited:?}"
        );
        assert!(err.to_string().contains("docker.sock"), "{err}");
    })
    .await;
}
