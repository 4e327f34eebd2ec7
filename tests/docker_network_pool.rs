//! The docker backend's pool of pre-created job networks, against the real engine: single use,
//! never shared by two live jobs, labelled so the orphan sweep finds spares, removed at shutdown.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use act_runner::executor::backend::docker::DockerBackend;
use act_runner::executor::backend::docker::network_pool::LABEL_NETWORK_POOL;
use act_runner::executor::backend::docker::{LABEL_RUNNER_UUID, NetworkPool, orphans};
use act_runner::executor::backend::{Backend, ExitStatus};
use bollard::Docker;
use bollard::query_parameters::ListNetworksOptionsBuilder;
use tokio::time::Instant;

use crate::docker_backend::{
    containers_with_label, job_config, network_exists, prepared, unique, with_docker,
};
use crate::support::images::BUSYBOX_IMAGE;

/// Names of the pool networks of `runner_uuid`.
async fn pool_networks(docker: &Docker, runner_uuid: &str) -> HashSet<String> {
    let filters = HashMap::from([(
        String::from("label"),
        vec![
            format!("{LABEL_RUNNER_UUID}={runner_uuid}"),
            format!("{LABEL_NETWORK_POOL}=true"),
        ],
    )]);
    let options = ListNetworksOptionsBuilder::default()
        .filters(&filters)
        .build();
    docker
        .list_networks(Some(options))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|network| network.name)
        .collect()
}

async fn wait_ready(pool: &NetworkPool, n_wanted: usize) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while pool.n_ready() < n_wanted {
        assert!(
            Instant::now() < give_up,
            "the pool never had {n_wanted} ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_jobs_take_distinct_pooled_networks_that_cleanup_removes() {
    with_docker(|docker| async move {
        let runner = unique("runner");
        let pool = NetworkPool::start(docker.clone(), &runner, 2);
        wait_ready(&pool, 2).await;
        let spares = pool_networks(&docker, &runner).await;
        assert_eq!(spares.len(), 2, "{spares:?}");

        let config = || {
            let mut config = job_config(BUSYBOX_IMAGE);
            config.identity.runner_uuid = runner.clone();
            config.network_pool = Some(pool.clone());
            config
        };
        let ((mut first, first_ok, _), (mut second, second_ok, _)) =
            tokio::join!(prepared(&docker, config()), prepared(&docker, config()));
        first_ok.unwrap();
        second_ok.unwrap();
        let (first_network, second_network) = (first.network_name(), second.network_name());
        assert_ne!(
            first_network, second_network,
            "two live jobs share a network"
        );
        assert!(spares.contains(&first_network) && spares.contains(&second_network));
        for (backend, network) in [(&first, &first_network), (&second, &second_network)] {
            let (_, attached) = network_mode_and_attached(&docker, backend, network).await;
            assert_eq!(attached, vec![backend.container_name().to_string()]);
            let context = backend.running_containers();
            assert_eq!(context.job.unwrap().network, *network);
        }

        first.cleanup().await.unwrap();
        second.cleanup().await.unwrap();
        assert!(!network_exists(&docker, &first_network).await);
        assert!(!network_exists(&docker, &second_network).await);

        // Taking started replacements; a crash now leaves them for the start-up orphan sweep.
        wait_ready(&pool, 2).await;
        let report = orphans::remove_orphans(&docker, &runner, &HashSet::new())
            .await
            .unwrap();
        assert_eq!(report.networks.len(), 2, "{report:?}");
        assert!(pool_networks(&docker, &runner).await.is_empty());
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_removes_spares_and_an_empty_pool_falls_back_to_creating() {
    with_docker(|docker| async move {
        let runner = unique("runner");
        let pool = NetworkPool::start(docker.clone(), &runner, 1);
        wait_ready(&pool, 1).await;
        pool.shutdown().await;
        assert!(pool_networks(&docker, &runner).await.is_empty());
        assert_eq!(pool.n_ready(), 0);

        // A closed (or empty) pool gives nothing: the job creates its own network.
        let mut config = job_config(BUSYBOX_IMAGE);
        config.network_pool = Some(pool.clone());
        let expected = format!("{}-network", config.container_name);
        let (mut backend, result, _) = prepared(&docker, config).await;
        result.unwrap();
        assert_eq!(backend.network_name(), expected);
        assert!(network_exists(&docker, &expected).await);
        backend.cleanup().await.unwrap();
        assert!(!network_exists(&docker, &expected).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_network_is_replaced_only_when_the_job_asks() {
    with_docker(|docker| async move {
        let runner = unique("runner");
        let pool = NetworkPool::start(docker.clone(), &runner, 1);
        wait_ready(&pool, 1).await;
        let taken = pool.take().expect("a ready network");
        assert_eq!(taken.sandbox, None, "no job has told the pool an image yet");
        // A `network create` now would run alongside the job's container start and slow it.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            pool_networks(&docker, &runner).await,
            HashSet::from([taken.network.clone()])
        );
        assert_eq!(pool.n_ready(), 0);

        pool.replenish(None);
        wait_ready(&pool, 1).await;
        assert_eq!(pool_networks(&docker, &runner).await.len(), 2);
        pool.replenish(None);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(pool.n_ready(), 1, "a second replenish owes nothing");

        docker.remove_network(&taken.network).await.unwrap();
        pool.shutdown().await;
        assert!(pool_networks(&docker, &runner).await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_job_pool_never_replaces_its_spare() {
    with_docker(|docker| async move {
        let runner = unique("runner");
        let pool = NetworkPool::for_one_job(docker.clone(), &runner, Default::default());
        wait_ready(&pool, 1).await;
        let taken = pool.take().expect("a ready network");
        pool.replenish(Some(BUSYBOX_IMAGE));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(pool.n_ready(), 0);
        assert_eq!(
            pool_networks(&docker, &runner).await,
            HashSet::from([taken.network.clone()])
        );
        assert!(containers_of(&docker, &runner).await.is_empty());

        docker.remove_network(&taken.network).await.unwrap();
        pool.shutdown().await;
        assert!(pool_networks(&docker, &runner).await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_comes_while_the_spare_is_being_created_waits_for_it() {
    with_docker(|docker| async move {
        let runner = unique("runner");
        // As when a task is waiting at the daemon's start: the job comes before its spare is ready.
        let pool = NetworkPool::for_one_job(docker.clone(), &runner, Default::default());
        assert_eq!(pool.n_ready(), 0, "a network create takes longer than this");
        let mut config = job_config(BUSYBOX_IMAGE);
        config.network_pool = Some(pool.clone());
        let own_network = format!("{}-network", config.container_name);
        let (mut backend, result, _) = prepared(&docker, config).await;
        result.unwrap();
        let spare = backend.network_name();
        assert_ne!(spare, own_network);
        assert_eq!(
            pool_networks(&docker, &runner).await,
            HashSet::from([spare])
        );
        assert!(!network_exists(&docker, &own_network).await);
        backend.cleanup().await.unwrap();
        pool.shutdown().await;
        assert!(pool_networks(&docker, &runner).await.is_empty());

        // Nothing ready and nothing on its way: no wait, the job creates its own network.
        assert_eq!(pool.take_or_wait().await, None);
    })
    .await;
}

/// The job container's network mode and the containers attached to `network`.
async fn network_mode_and_attached(
    docker: &Docker,
    backend: &DockerBackend,
    network: &str,
) -> (String, Vec<String>) {
    let mode = docker
        .inspect_container(backend.container_name(), None)
        .await
        .unwrap()
        .host_config
        .and_then(|host| host.network_mode)
        .unwrap_or_default();
    let attached = docker
        .inspect_network(network, None)
        .await
        .unwrap()
        .containers
        .unwrap_or_default()
        .into_values()
        .filter_map(|endpoint| endpoint.name)
        .collect();
    (mode, attached)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_job_runs_in_a_sandbox_namespace_and_one_with_ports_or_a_dead_sandbox_joins_the_network()
 {
    with_docker(|docker| async move {
        let runner = unique("runner");
        let pool = NetworkPool::with_sandboxes(docker.clone(), &runner, Default::default(), 1);
        wait_ready(&pool, 1).await;
        // The pool learns the image from a job, and its replacements get sandboxes.
        let config = |ports: Vec<String>| {
            let mut config = job_config(BUSYBOX_IMAGE);
            config.identity.runner_uuid = runner.clone();
            config.network_pool = Some(pool.clone());
            config.ports = ports;
            config
        };
        let (mut first, result, _) = prepared(&docker, config(Vec::new())).await;
        result.unwrap();
        first.cleanup().await.unwrap();
        let sandboxes = ready_sandboxes(&pool, &docker, &runner).await;

        let (mut plain, result, _) = prepared(&docker, config(Vec::new())).await;
        result.unwrap();
        let network = plain.network_name();
        let (mode, attached) = network_mode_and_attached(&docker, &plain, &network).await;
        let sandbox_id = mode
            .strip_prefix("container:")
            .expect("runs in a sandbox namespace");
        assert!(
            sandboxes.contains(sandbox_id),
            "{mode} not among {sandboxes:?}"
        );
        let sandbox = sandbox_id.to_string();
        let sandbox_name = docker
            .inspect_container(&sandbox, None)
            .await
            .unwrap()
            .name
            .unwrap_or_default();
        assert_eq!(
            attached,
            vec![sandbox_name.trim_start_matches('/').to_string()]
        );
        assert_eq!(plain.running_containers().job.unwrap().network, network);
        // The step sees the job network: the sandbox's interface, with an address on it.
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let script = "ip -o -4 addr show eth0 | grep -c inet";
        let status = plain
            .exec(
                crate::docker_backend::request(script),
                tx,
                Default::default(),
            )
            .await
            .unwrap()
            .status;
        assert_eq!(status, ExitStatus::Exited(0));
        let output = rx.recv().await.unwrap();
        assert_eq!(output.lines.iter().collect::<Vec<_>>(), ["1"]);
        plain.cleanup().await.unwrap();
        assert!(!network_exists(&docker, &network).await);
        assert!(!containers_of(&docker, &runner).await.contains(&sandbox));

        // Published ports need the container's own endpoint: it joins the network itself.
        wait_ready(&pool, 1).await;
        let (mut with_ports, result, _) = prepared(&docker, config(vec!["80".into()])).await;
        result.unwrap();
        let network = with_ports.network_name();
        let (mode, attached) = network_mode_and_attached(&docker, &with_ports, &network).await;
        assert_eq!(mode, network);
        assert!(attached.contains(&with_ports.container_name().to_string()));
        with_ports.cleanup().await.unwrap();
        assert!(!network_exists(&docker, &network).await);

        // A sandbox that died (a Docker restart stops them all): the job joins the network.
        let sandboxes = ready_sandboxes(&pool, &docker, &runner).await;
        let dead = sandboxes.into_iter().next().unwrap();
        docker.kill_container(&dead, None).await.unwrap();
        let (mut orphaned, result, _) = prepared(&docker, config(Vec::new())).await;
        result.unwrap();
        let network = orphaned.network_name();
        let (mode, attached) = network_mode_and_attached(&docker, &orphaned, &network).await;
        assert_eq!(mode, network);
        assert!(attached.contains(&orphaned.container_name().to_string()));
        orphaned.cleanup().await.unwrap();
        assert!(!containers_of(&docker, &runner).await.contains(&dead));

        pool.shutdown().await;
        assert!(pool_networks(&docker, &runner).await.is_empty());
        assert!(containers_of(&docker, &runner).await.is_empty());
    })
    .await;
}

/// Waits for a ready spare and returns the runner's containers: its sandbox (a spare is ready
/// only once its sandbox runs).
async fn ready_sandboxes(
    pool: &NetworkPool,
    docker: &Docker,
    runner_uuid: &str,
) -> HashSet<String> {
    wait_ready(pool, 1).await;
    let sandboxes = containers_of(docker, runner_uuid).await;
    assert_eq!(sandboxes.len(), 1, "a ready spare has exactly one sandbox");
    sandboxes
}

/// Ids of the containers labelled with `runner_uuid`.
async fn containers_of(docker: &Docker, runner_uuid: &str) -> HashSet<String> {
    let label = format!("{LABEL_RUNNER_UUID}={runner_uuid}");
    containers_with_label(docker, &label)
        .await
        .into_iter()
        .collect()
}
