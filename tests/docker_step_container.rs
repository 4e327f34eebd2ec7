//! Step containers of the docker backend (docker actions): the workspace goes in and comes back,
//! whatever its size (streamed), the job container's network namespace is shared, cancellation
//! kills the container promptly, and nothing is left behind.

use std::collections::BTreeMap;
use std::time::Duration;

use act_runner::executor::backend::{Backend, ContainerRun, ExecRequest, ExitStatus};
use bollard::query_parameters::ListContainersOptionsBuilder;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::docker_backend::{job_config, prepared, with_docker};
use crate::support::images::{BUSYBOX_IMAGE, DEBIAN_IMAGE};

fn container_run(script: &str) -> ContainerRun {
    ContainerRun {
        image: BUSYBOX_IMAGE.to_string(),
        entrypoint: Some(vec![String::from("sh"), String::from("-c")]),
        args: vec![script.to_string()],
        env: BTreeMap::from([(String::from("WORD"), String::from("hello"))]),
        timeout: Some(Duration::from_secs(60)),
    }
}

/// Runs `script` with `sh -c` in the job container; its exit status and first output line.
async fn job_sh(
    backend: &act_runner::executor::backend::docker::DockerBackend,
    script: &str,
) -> (ExitStatus, String) {
    let (tx, mut rx) = mpsc::channel(8);
    let request = ExecRequest {
        argv: ["sh", "-c", script].map(String::from).to_vec(),
        env: BTreeMap::new(),
        working_dir: None,
        timeout: None,
        files: Vec::new(),
        command_dir: None,
    };
    let status = backend
        .exec(request, tx, CancellationToken::new())
        .await
        .unwrap()
        .status;
    let first = match rx.recv().await {
        Some(output) => output.lines.iter().next().unwrap_or_default().to_string(),
        None => String::new(),
    };
    while rx.recv().await.is_some() {}
    (status, first)
}

/// Runs `script` in a step container next to the job; its exit status and output lines.
async fn run_step_container(
    backend: &act_runner::executor::backend::docker::DockerBackend,
    script: &str,
) -> (ExitStatus, Vec<String>) {
    let (tx, mut rx) = mpsc::channel(64);
    let status = backend
        .run_container(container_run(script), tx, CancellationToken::new())
        .await
        .unwrap();
    let mut lines = Vec::new();
    while let Some(output) = rx.recv().await {
        lines.extend(output.lines.iter().map(|line| line.trim().to_string()));
    }
    (status, lines)
}

/// How many containers carry the job's instance label (the step containers included).
async fn n_job_containers(
    docker: &bollard::Docker,
    backend: &act_runner::executor::backend::docker::DockerBackend,
) -> usize {
    let instance =
        backend.labels()[act_runner::executor::backend::docker::LABEL_JOB_INSTANCE].clone();
    let filters = std::collections::HashMap::from([(
        String::from("label"),
        vec![format!(
            "{}={instance}",
            act_runner::executor::backend::docker::LABEL_JOB_INSTANCE
        )],
    )]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker.list_containers(Some(options)).await.unwrap().len()
}

#[tokio::test]
async fn a_step_container_sees_and_changes_the_workspace_and_shares_the_network() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(DEBIAN_IMAGE)).await;
        result.unwrap();
        backend
            .write_file("input.txt", b"from the job\n", 0o644)
            .await
            .unwrap();
        let (status, lines) = run_step_container(
            &backend,
            "cat input.txt; echo \"$WORD\" > output.txt; hostname; pwd",
        )
        .await;
        assert_eq!(status, ExitStatus::Exited(0), "{lines:?}");
        assert!(lines.contains(&String::from("from the job")), "{lines:?}");
        assert!(
            lines.contains(&String::from("/workspace/owner/repo")),
            "{lines:?}"
        );
        let output = backend.read_file("output.txt").await.unwrap();
        assert_eq!(output.as_deref(), Some(&b"hello\n"[..]));

        // The same network namespace: the step container has the job container's hostname.
        let (_, job_hostname) = job_sh(&backend, "hostname").await;
        assert!(
            lines.contains(&job_hostname),
            "{job_hostname} not in {lines:?}"
        );

        assert_eq!(
            n_job_containers(&docker, &backend).await,
            1,
            "the step container was removed"
        );
        backend.cleanup().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_step_container_is_killed_and_removed() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(DEBIAN_IMAGE)).await;
        result.unwrap();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            trigger.cancel();
        });
        let (tx, _rx) = mpsc::channel(64);
        let started = Instant::now();
        let status = backend
            .run_container(container_run("echo started; sleep 120"), tx, cancel)
            .await
            .unwrap();
        assert_eq!(status, ExitStatus::Cancelled);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            n_job_containers(&docker, &backend).await,
            1,
            "the step container was removed"
        );
        backend.cleanup().await.unwrap();
    })
    .await;
}

/// A workspace larger than any in-memory archive bound (300 MiB) goes into the step container
/// and back: the copy is streamed from one archive call into the other.
#[tokio::test]
async fn a_large_workspace_goes_into_a_step_container_and_back() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(DEBIAN_IMAGE)).await;
        result.unwrap();
        let size = 300 * 1024 * 1024;
        let (status, _) = job_sh(&backend, &format!("head -c {size} /dev/zero > big.bin")).await;
        assert_eq!(status, ExitStatus::Exited(0));

        let (status, lines) =
            run_step_container(&backend, "wc -c < big.bin; echo tail >> big.bin").await;
        assert_eq!(status, ExitStatus::Exited(0), "{lines:?}");
        assert!(lines.contains(&size.to_string()), "{lines:?}");

        // The step's change came back whole: the job sees the file one line longer.
        let (_, job_size) = job_sh(&backend, "wc -c < big.bin").await;
        assert_eq!(job_size.trim(), (size + 5).to_string());
        backend.cleanup().await.unwrap();
    })
    .await;
}
