//! Start overhead of a one-step job on the Docker backend against a raw create + start + exec.
//!
//! Each run measures, for the same image in the same process, alternating to share conditions:
//! - backend: `DockerBackend::prepare` (image check, a job network from the pool the daemon keeps,
//!   labelled container, start) and
//!   `exec` of `echo ready` until its first output line arrives;
//! - raw: `create_container` + `start_container` + `create_exec`/`start_exec` of `echo ready` until
//!   the first output frame, on the default bridge network;
//! - raw with a network: the same after `create_network`, the container joining it. The backend
//!   creates a network per job (Gitea's design: jobs cannot reach each other), and a fresh bridge
//!   costs its creation plus a slower first start (embedded DNS, iptables); this baseline shows how
//!   much of the overhead is that physical cost and how much is the backend's own.
//!
//! Teardown is not timed. Prints the medians and the ratios (issue 3 target: at most 1.3x against
//! the plain raw baseline).
//! Usage: `cargo bench --bench docker_start_overhead -- [--runs N] [--image IMAGE]`
//! (`packaging/bench/docker-start-overhead.sh` wraps it).

use std::collections::BTreeMap;
use std::time::Duration;

use act_runner::executor::backend::docker::{
    DockerBackend, DockerJobConfig, JobIdentity, NetworkPool, connect,
};
use act_runner::executor::backend::{Backend, ExecRequest, ExitStatus};
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

const RUN_LIMIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, and
    // then one run of each is a smoke test that the benchmark still works.
    let mut runs = if std::env::args().any(|arg| arg == "--bench") {
        20usize
    } else {
        1
    };
    let mut image = String::from("act-runner-test/debian:12");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--image" => image = args.next().expect("--image IMAGE"),
            _ => {}
        }
    }
    let docker = match docker(&image).await {
        Ok(docker) => docker,
        Err(reason) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping the docker start-overhead benchmark: {reason}");
            return;
        }
        Err(reason) => panic!("Docker is required when CI is set: {reason}"),
    };

    // The backend as the daemon runs it: with spare job networks created when it starts (their
    // replacement is created in the background while the next job starts, and timed with it).
    let pool = NetworkPool::start(docker.clone(), "bench", 2);
    // One untimed warm-up of each, so neither pays first-use costs.
    timeout(RUN_LIMIT, backend_once(&docker, &image, &pool))
        .await
        .expect("warm-up");
    timeout(RUN_LIMIT, raw_once(&docker, &image, false))
        .await
        .expect("warm-up");
    timeout(RUN_LIMIT, raw_once(&docker, &image, true))
        .await
        .expect("warm-up");

    let mut backend_times = Vec::with_capacity(runs);
    let mut raw_times = Vec::with_capacity(runs);
    let mut raw_network_times = Vec::with_capacity(runs);
    for run_idx in 0..runs {
        // Rotate the order so drift over time hits all three alike.
        for slot in 0..3 {
            match (run_idx + slot) % 3 {
                0 => backend_times.push(
                    timeout(RUN_LIMIT, backend_once(&docker, &image, &pool))
                        .await
                        .expect("backend run"),
                ),
                1 => raw_times.push(
                    timeout(RUN_LIMIT, raw_once(&docker, &image, false))
                        .await
                        .expect("raw run"),
                ),
                _ => raw_network_times.push(
                    timeout(RUN_LIMIT, raw_once(&docker, &image, true))
                        .await
                        .expect("raw run"),
                ),
            }
        }
    }
    pool.shutdown().await;
    let backend_median = median(&mut backend_times);
    let raw_median = median(&mut raw_times);
    let raw_network_median = median(&mut raw_network_times);
    let ratio = backend_median.as_secs_f64() / raw_median.as_secs_f64();
    let ratio_network = backend_median.as_secs_f64() / raw_network_median.as_secs_f64();
    println!("docker start overhead, image {image}, {runs} runs each");
    println!(
        "  raw create+start+exec to first line:             median {:.1} ms",
        ms(raw_median)
    );
    println!(
        "  raw network+create+start+exec to first line:     median {:.1} ms",
        ms(raw_network_median)
    );
    println!(
        "  backend prepare+exec to first line:              median {:.1} ms",
        ms(backend_median)
    );
    println!("  ratio backend/raw: {ratio:.2}x (target <= 1.30x)");
    println!("  ratio backend/raw-with-network: {ratio_network:.2}x (the backend's own overhead)");
}

async fn docker(image: &str) -> Result<Docker, String> {
    let host = connect::discover_docker_host_from_process("").map_err(|err| err.to_string())?;
    let docker = connect::connect(&host)
        .await
        .map_err(|err| err.to_string())?;
    match docker.inspect_image(image).await {
        Ok(_) => Ok(docker),
        Err(_) => Err(format!(
            "image {image} missing: run tests/support/images/build.sh"
        )),
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

async fn backend_once(docker: &Docker, image: &str, pool: &NetworkPool) -> Duration {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let config = DockerJobConfig {
        image: image.to_string(),
        credentials: None,
        runner_options: String::new(),
        job_options: String::new(),
        env: BTreeMap::new(),
        volumes: Vec::new(),
        ports: Vec::new(),
        services: Vec::new(),
        network: None,
        network_pool: Some(pool.clone()),
        privileged_allowed: false,
        valid_volumes: Vec::new(),
        force_pull: false,
        docker_socket: None,
        container_name: format!("act-runner-bench-{}", &suffix[..12]),
        job_alias: String::from("bench"),
        identity: JobIdentity {
            runner_uuid: String::from("bench"),
            task_id: 0,
        },
        workspace: String::from("/workspace/owner/repo"),
        max_lifetime: Duration::from_secs(600),
        service_ready_timeout: None,
        pull_timeout: Duration::from_secs(30),
    };
    let started = Instant::now();
    let mut backend = DockerBackend::new(docker.clone(), config);
    let (log_tx, _log_rx) = mpsc::channel(16);
    backend.prepare(&log_tx).await.expect("prepare");
    let (tx, mut rx) = mpsc::channel(16);
    let request = ExecRequest {
        argv: vec![String::from("echo"), String::from("ready")],
        env: BTreeMap::new(),
        working_dir: None,
        timeout: None,
    };
    let exec = backend.exec(request, tx, CancellationToken::new());
    let first_line = async {
        let output = rx.recv().await.expect("a line");
        assert_eq!(output.lines.iter().collect::<Vec<_>>(), ["ready"]);
        started.elapsed()
    };
    let (status, elapsed) = tokio::join!(exec, first_line);
    assert_eq!(status.expect("exec"), ExitStatus::Exited(0));
    backend.cleanup().await.expect("cleanup");
    elapsed
}

async fn raw_once(docker: &Docker, image: &str, with_network: bool) -> Duration {
    let name = format!(
        "act-runner-bench-raw-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let network = format!("{name}-network");
    let started = Instant::now();
    let mut body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec![String::from("/bin/sleep"), String::from("600")]),
        ..Default::default()
    };
    if with_network {
        let request = NetworkCreateRequest {
            name: network.clone(),
            driver: Some(String::from("bridge")),
            ..Default::default()
        };
        docker
            .create_network(request)
            .await
            .expect("create network");
        body.host_config = Some(HostConfig {
            network_mode: Some(network.clone()),
            ..Default::default()
        });
    }
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    docker
        .create_container(Some(options), body)
        .await
        .expect("create");
    docker.start_container(&name, None).await.expect("start");
    let exec = CreateExecOptions {
        cmd: Some(vec!["echo", "ready"]),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec_id = docker
        .create_exec(&name, exec)
        .await
        .expect("create exec")
        .id;
    let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec_id, None).await.expect("start exec")
    else {
        panic!("exec not attached");
    };
    let first = output.next().await.expect("a frame").expect("frame");
    let elapsed = started.elapsed();
    assert!(first.to_string().contains("ready"));
    while output.next().await.is_some() {}
    let remove = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    docker
        .remove_container(&name, Some(remove))
        .await
        .expect("remove");
    if with_network {
        docker
            .remove_network(&network)
            .await
            .expect("remove network");
    }
    elapsed
}
