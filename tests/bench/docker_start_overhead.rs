//! Start overhead of a one-step job on the Docker backend against a raw create + start + exec.
//!
//! Each round measures, for the same image in the same process, in a rotating order so drift
//! over time hits all alike:
//! - job: `executor::run_job` of a one-step workflow (`run: echo ready`) on a fresh
//!   `DockerBackend`, from the call until the step's first log line (`ready`) comes out of the
//!   event stream: workflow parsing, contexts, image check, a job network from the pool the daemon
//!   keeps (with the sandbox holding its namespace, as in the daemon's steady state), the labelled
//!   container and its start, the step's script and file-command files, the exec and the line
//!   reader, masking included;
//! - job, bare spare: the same with a pool of networks only (what `exec` keeps: its pool has no
//!   sandboxes, as it has no start-up sweep for them);
//! - job, cold: the same without a pool, creating its job network (what `exec` pays for its first
//!   jobs, and the daemon when its spares are used up);
//! - backend: `DockerBackend::prepare` and one `exec` of `echo ready` to its first output line
//!   (the job minus the engine's own per-step work);
//! - raw: `create_container` + `start_container` + `create_exec`/`start_exec` of `echo ready`
//!   until the first output frame, on the default bridge network, by a bare bollard client;
//! - raw with a network: the same after `create_network`, the container joining it. The backend
//!   gives every job its own network (jobs cannot reach each other); this shows what that costs.
//!
//! Teardown is not timed. Prints the medians and, as the headline, the median of the per-round
//! ratios job/raw (issue 3 target: at most 1.3x).
//! Usage: `cargo bench --bench docker_start_overhead -- [--runs N] [--image IMAGE]`
//! (`packaging/bench/docker-start-overhead.sh` wraps it).

use std::collections::BTreeMap;
use std::time::Duration;

use act_runner::executor::backend::docker::{
    DockerBackend, DockerJobConfig, JobIdentity, NetworkPool, connect,
};
use act_runner::executor::backend::{Backend, ExecRequest, ExitStatus};
use act_runner::executor::event::{Conclusion, JobEvent};
use act_runner::executor::{JobSpec, run_job};
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
        30usize
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
    let pools = Pools {
        sandboxes: NetworkPool::with_sandboxes(docker.clone(), "bench", Default::default(), 2),
        bare: NetworkPool::start(docker.clone(), "bench", 2),
    };
    let kinds = [
        Kind::Job,
        Kind::JobBare,
        Kind::JobCold,
        Kind::Backend,
        Kind::Raw,
        Kind::RawNetwork,
    ];
    // One untimed warm-up of each, so none pays first-use costs.
    for kind in kinds {
        timeout(RUN_LIMIT, kind.once(&docker, &image, &pools))
            .await
            .expect("warm-up");
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); kinds.len()];
    for run_idx in 0..runs {
        for slot in 0..kinds.len() {
            let kind_idx = (run_idx + slot) % kinds.len();
            let elapsed = timeout(RUN_LIMIT, kinds[kind_idx].once(&docker, &image, &pools))
                .await
                .unwrap_or_else(|_| panic!("{:?} run took over {RUN_LIMIT:?}", kinds[kind_idx]));
            times[kind_idx].push(elapsed);
        }
    }
    pools.sandboxes.shutdown().await;
    pools.bare.shutdown().await;

    let [job, job_bare, job_cold, backend, raw, raw_network] =
        [0, 1, 2, 3, 4, 5].map(|idx| times[idx].clone());
    let per_round = |over: &[Duration], under: &[Duration]| {
        let mut ratios: Vec<f64> = over
            .iter()
            .zip(under)
            .map(|(over, under)| over.as_secs_f64() / under.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    println!("docker start overhead, image {image}, {runs} rounds");
    for (label, samples) in [
        ("raw create+start+exec to first line", &raw),
        ("raw network+create+start+exec to first line", &raw_network),
        ("backend prepare+exec to first line", &backend),
        ("job (run_job) to the step's first log line", &job),
        ("job, bare spare network (exec's pool)", &job_bare),
        ("job, cold (no spare network)", &job_cold),
    ] {
        println!("  {label:<46} median {:.1} ms", ms(median(samples)));
    }
    println!(
        "  ratio job/raw: {:.2}x, median of per-round ratios (target <= 1.30x)",
        per_round(&job, &raw)
    );
    println!(
        "  ratio backend/raw: {:.2}x; job/raw-with-network: {:.2}x",
        per_round(&backend, &raw),
        per_round(&job, &raw_network)
    );
    println!("  bare spare: job/raw {:.2}x", per_round(&job_bare, &raw));
    println!(
        "  cold: job/raw {:.2}x, job/raw-with-network {:.2}x",
        per_round(&job_cold, &raw),
        per_round(&job_cold, &raw_network)
    );
}

/// The daemon's pool (spares with sandboxes) and `exec`'s (bare networks).
struct Pools {
    sandboxes: NetworkPool,
    bare: NetworkPool,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Job,
    JobBare,
    JobCold,
    Backend,
    Raw,
    RawNetwork,
}

impl Kind {
    async fn once(self, docker: &Docker, image: &str, pools: &Pools) -> Duration {
        let pool = &pools.sandboxes;
        match self {
            Kind::Job => job_once(docker, image, Some(pool)).await,
            Kind::JobBare => job_once(docker, image, Some(&pools.bare)).await,
            Kind::JobCold => job_once(docker, image, None).await,
            Kind::Backend => backend_once(docker, image, pool).await,
            Kind::Raw => raw_once(docker, image, false).await,
            Kind::RawNetwork => raw_once(docker, image, true).await,
        }
    }
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

fn median(times: &[Duration]) -> Duration {
    let mut times = times.to_vec();
    times.sort();
    times[times.len() / 2]
}

/// The job configuration the daemon would build for a `bench:docker://IMAGE` label.
fn job_config(image: &str, pool: Option<&NetworkPool>) -> DockerJobConfig {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    DockerJobConfig {
        image: image.to_string(),
        credentials: None,
        runner_options: String::new(),
        job_options: String::new(),
        env: BTreeMap::new(),
        proxy_env: BTreeMap::new(),
        volumes: Vec::new(),
        ports: Vec::new(),
        services: Vec::new(),
        network: None,
        network_ip: Default::default(),
        network_pool: pool.cloned(),
        privileged: false,
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
        bind_workspace: false,
        shared_tool_cache: false,
        allocate_pty: false,
        max_lifetime: Duration::from_secs(600),
        service_ready_timeout: None,
        pull_timeout: Duration::from_secs(30),
    }
}

async fn job_once(docker: &Docker, image: &str, pool: Option<&NetworkPool>) -> Duration {
    let workflow =
        "on: push\njobs:\n  bench:\n    runs-on: bench\n    steps:\n      - run: echo ready\n";
    let spec = JobSpec::new(workflow.into(), "bench.yml".into(), "bench".into());
    let started = Instant::now();
    let mut backend = DockerBackend::new(docker.clone(), job_config(image, pool));
    let (events, mut events_rx) = mpsc::channel(64);
    let job = run_job(spec, &mut backend, events, CancellationToken::new());
    let first_line = async {
        let mut first = None;
        let mut lines = Vec::new();
        while let Some(event) = events_rx.recv().await {
            if let JobEvent::Log(batch) = event {
                let printed_ready =
                    batch.step_idx == Some(0) && batch.lines.iter().any(|line| line == "ready");
                if printed_ready && first.is_none() {
                    first = Some(started.elapsed());
                }
                lines.extend(batch.lines.iter().map(String::from));
            }
        }
        (first, lines)
    };
    let (conclusion, (first, lines)) = tokio::join!(job, first_line);
    assert_eq!(conclusion, Conclusion::Success, "the job failed: {lines:?}");
    first.unwrap_or_else(|| panic!("the step never printed `ready`: {lines:?}"))
}

async fn backend_once(docker: &Docker, image: &str, pool: &NetworkPool) -> Duration {
    let started = Instant::now();
    let mut backend = DockerBackend::new(docker.clone(), job_config(image, Some(pool)));
    let (log_tx, _log_rx) = mpsc::channel(16);
    backend.prepare(&log_tx).await.expect("prepare");
    let (tx, mut rx) = mpsc::channel(16);
    let request = ExecRequest {
        argv: vec![String::from("echo"), String::from("ready")],
        env: BTreeMap::new(),
        working_dir: None,
        timeout: None,
        files: Vec::new(),
        command_dir: None,
    };
    let exec = backend.exec(request, tx, CancellationToken::new());
    let first_line = async {
        let output = rx.recv().await.expect("a line");
        assert_eq!(output.lines.iter().collect::<Vec<_>>(), ["ready"]);
        started.elapsed()
    };
    let (status, elapsed) = tokio::join!(exec, first_line);
    assert_eq!(status.expect("exec").status, ExitStatus::Exited(0));
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
