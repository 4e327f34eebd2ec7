//! The docker backend's pool of pre-created job networks, against the real engine: single use,
//! never shared by two live jobs, labelled so the orphan sweep finds spares, removed at shutdown.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use act_runner::executor::backend::Backend;
use act_runner::executor::backend::docker::network_pool::LABEL_NETWORK_POOL;
use act_runner::executor::backend::docker::{LABEL_RUNNER_UUID, NetworkPool, orphans};
use bollard::Docker;
use bollard::query_parameters::ListNetworksOptionsBuilder;
use tokio::time::Instant;

use crate::docker_backend::{job_config, network_exists, prepared, unique, with_docker};
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
            let attached: Vec<String> = docker
                .inspect_network(network, None)
                .await
                .unwrap()
                .containers
                .unwrap_or_default()
                .into_values()
                .filter_map(|endpoint| endpoint.name)
                .collect();
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
        // A `network create` now would run alongside the job's container start and slow it.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            pool_networks(&docker, &runner).await,
            HashSet::from([taken.clone()])
        );
        assert_eq!(pool.n_ready(), 0);

        pool.replenish();
        wait_ready(&pool, 1).await;
        assert_eq!(pool_networks(&docker, &runner).await.len(), 2);
        pool.replenish();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(pool.n_ready(), 1, "a second replenish owes nothing");

        docker.remove_network(&taken).await.unwrap();
        pool.shutdown().await;
        assert!(pool_networks(&docker, &runner).await.is_empty());
    })
    .await;
}
