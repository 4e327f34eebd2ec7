//! The Docker backend against the real engine, with the local test images only, and the
//! helpers the other Docker test modules share. `exec`: steps in the job container (output,
//! exit codes, env, files, the shell report, pty, timeout, cancel); `lifecycle`: prepare and
//! clean-up, services, labels, options, volumes, images, orphans and readiness.

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

mod exec;
mod lifecycle;

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
