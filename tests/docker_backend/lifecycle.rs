//! A job environment's life: prepare and clean-up (after success, failure and an interrupted
//! prepare), services and their health, labels, options, volumes, images, orphans and readiness.

use super::*;

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

/// A cancelled job drops `prepare` wherever it is, also inside a `network create` or a
/// container create that dockerd completes anyway: cleanup must still find what they made.
#[tokio::test]
async fn cleanup_after_prepare_dropped_at_any_moment_leaves_nothing() {
    with_docker(|docker| async move {
        let mut left_behind = Vec::new();
        for delay_ms in [1, 3, 5, 8, 12, 16, 20, 30, 40, 60, 80] {
            let mut config = job_config(BUSYBOX_IMAGE);
            config.services = vec![slow_service("db")];
            let runner = config.identity.runner_uuid.clone();
            let mut backend = DockerBackend::new(docker.clone(), config);
            let (log_tx, _log_rx) = mpsc::channel(64);
            let dropped = timeout(Duration::from_millis(delay_ms), backend.prepare(&log_tx)).await;
            assert!(dropped.is_err(), "prepare waits for the slow service");
            backend.cleanup().await.unwrap();
            // Long enough for a create dockerd received before the drop to show.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let label = format!("{LABEL_RUNNER_UUID}={runner}");
            let containers = containers_with_label(&docker, &label).await;
            let network = network_exists(&docker, &backend.network_name()).await;
            if !containers.is_empty() || network {
                left_behind.push(format!("{delay_ms} ms: {containers:?}, network: {network}"));
                orphans::remove_orphans(&docker, &runner, &HashSet::new())
                    .await
                    .unwrap();
            }
        }
        assert!(left_behind.is_empty(), "{left_behind:#?}");
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
