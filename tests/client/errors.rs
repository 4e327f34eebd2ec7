//! Error shapes and injected faults map to the `ClientError` variant the daemon acts on.

use super::*;

async fn check_unauthenticated(h: Harness, expected_message: &str) {
    let (client, credentials) = h.registered(&["x"], false).await;
    let wrong = client.with_credentials(Credentials {
        uuid: credentials.uuid,
        token: "0000000000000000000000000000000000000000".into(),
    });
    let error = wrong
        .fetch_task(FetchTaskRequest::default())
        .await
        .unwrap_err();
    match &error {
        ClientError::Unauthenticated {
            method,
            url,
            message,
        } => {
            assert_eq!(*method, Method::FetchTask);
            assert!(
                url.ends_with("/api/actions/runner.v1.RunnerService/FetchTask"),
                "{url}"
            );
            assert_eq!(message, expected_message);
        }
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
    let shown = error.to_string();
    assert!(
        shown.contains("FetchTask") && shown.contains(&h.instance()),
        "{shown}"
    );
    assert!(
        !shown.contains("0000000000"),
        "the token must not be shown: {shown}"
    );
}

conformance!(
    gitea_legacy_unauthenticated_maps_to_unauthenticated,
    |h: Harness| async move {
        check_unauthenticated(
            h,
            "rpc error: code = Unauthenticated desc = unregistered runner",
        )
        .await;
    }
);

conformance!(
    modern_unauthenticated_maps_to_unauthenticated,
    FakeOptions {
        auth_mode: AuthMode::Modern,
        ..FakeOptions::default()
    },
    |h: Harness| async move {
        check_unauthenticated(h, "unregistered runner").await;
    }
);

conformance!(no_credentials_is_unauthenticated, |h: Harness| async move {
    let error = h
        .anonymous()
        .declare(DeclareRequest::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Unauthenticated {
                method: Method::Declare,
                ..
            }
        ),
        "{error:?}"
    );
});

async fn injected(h: &Harness, method: Method, faults: Faults) -> ClientError {
    h.gitea.set_faults(method, faults);
    h.anonymous()
        .ping(PingRequest { data: "x".into() })
        .await
        .unwrap_err()
}

conformance!(
    unavailable_and_proxy_pages_map_to_unavailable,
    |h: Harness| async move {
        for error in [
            InjectedError::Unavailable,
            InjectedError::ProxyStatus(502),
            InjectedError::ProxyStatus(429),
            InjectedError::ProxyStatus(504),
            InjectedError::ProxyStatus(503),
        ] {
            let got = injected(&h, Method::Ping, Faults::always(error)).await;
            assert!(
                matches!(
                    got,
                    ClientError::Unavailable {
                        method: Method::Ping,
                        ..
                    }
                ),
                "{error:?}: {got:?}"
            );
            assert!(got.is_transient());
        }
    }
);

conformance!(
    gitea_internal_errors_are_server_errors_with_the_inner_code,
    |h: Harness| async move {
        let got = injected(
            &h,
            Method::Ping,
            Faults::always(InjectedError::GiteaInternal),
        )
        .await;
        match got {
            ClientError::Server { code, message, .. } => {
                assert_eq!(code, "internal");
                assert!(
                    message.starts_with("rpc error: code = Internal desc = "),
                    "{message}"
                );
            }
            other => panic!("expected Server, got {other:?}"),
        }
    }
);

conformance!(
    a_call_slower_than_the_timeout_is_deadline_exceeded,
    |h: Harness| async move {
        h.gitea
            .set_faults(Method::Ping, Faults::latency(Duration::from_secs(3)));
        let client = h.client_with(None, Duration::from_millis(300));
        let started = tokio::time::Instant::now();
        let error = client.ping(PingRequest::default()).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the timeout must bound the call"
        );
        match error {
            ClientError::DeadlineExceeded {
                method, timeout, ..
            } => {
                assert_eq!(method, Method::Ping);
                assert_eq!(timeout, Duration::from_millis(300));
            }
            other => panic!("expected DeadlineExceeded, got {other:?}"),
        }
    }
);

conformance!(
    fetch_task_honours_its_own_timeout,
    |h: Harness| async move {
        let (client, _) = h.registered(&["x"], false).await;
        let client = client.with_fetch_timeout(Duration::from_millis(200));
        h.gitea
            .set_faults(Method::FetchTask, Faults::latency(Duration::from_secs(2)));
        h.gitea
            .set_faults(Method::Declare, Faults::latency(Duration::from_millis(400)));
        let error = client
            .fetch_task(FetchTaskRequest::default())
            .await
            .unwrap_err();
        assert!(
            matches!(error, ClientError::DeadlineExceeded { timeout, .. } if timeout == Duration::from_millis(200)),
            "{error:?}"
        );
        // Other RPCs keep the general timeout (5 s here).
        client.declare(DeclareRequest::default()).await.unwrap();
    }
);

conformance!(
    a_call_never_answered_is_deadline_exceeded,
    |h: Harness| async move {
        h.gitea.set_faults(
            Method::Ping,
            Faults {
                timeout_rate: 1.0,
                ..Faults::default()
            },
        );
        let client = h.client_with(None, Duration::from_millis(300));
        let error = client.ping(PingRequest::default()).await.unwrap_err();
        assert!(
            matches!(error, ClientError::DeadlineExceeded { .. }),
            "{error:?}"
        );
    }
);

conformance!(
    a_dropped_connection_is_a_transport_error,
    |h: Harness| async move {
        let error = injected(
            &h,
            Method::Ping,
            Faults {
                drop_rate: 1.0,
                ..Faults::default()
            },
        )
        .await;
        assert!(
            matches!(
                error,
                ClientError::Transport {
                    method: Method::Ping,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(h.gitea.dropped_connections(), 1);
    }
);

conformance!(
    a_refused_connection_is_a_transport_error,
    |h: Harness| async move {
        // Bind then close a port, so nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(ClientSettings {
            instance: format!("http://127.0.0.1:{port}"),
            protocol: h.protocol,
            insecure: false,
            timeout: Duration::from_secs(5),
            credentials: None,
        })
        .unwrap();
        let error = client.ping(PingRequest::default()).await.unwrap_err();
        match &error {
            ClientError::Transport { url, .. } => assert!(url.contains(&port.to_string()), "{url}"),
            other => panic!("expected Transport, got {other:?}"),
        }
    }
);

conformance!(
    an_outage_window_fails_every_rpc_then_ends,
    |h: Harness| async move {
        let client = h.anonymous();
        // Wide enough that a loaded machine still lands the first call inside the window.
        let window = Duration::from_secs(2);
        let outage_start = tokio::time::Instant::now();
        h.gitea.outage(Duration::ZERO, window);
        let error = client.ping(PingRequest::default()).await.unwrap_err();
        assert!(
            matches!(error, ClientError::Unavailable { .. }),
            "{error:?}"
        );
        tokio::time::sleep_until(outage_start + window + Duration::from_millis(50)).await;
        client.ping(PingRequest::default()).await.unwrap();
    }
);

conformance!(
    a_seeded_error_rate_fails_some_calls,
    |h: Harness| async move {
        h.gitea.set_faults(
            Method::Ping,
            Faults {
                error_rate: 0.5,
                ..Faults::default()
            },
        );
        let client = h.anonymous();
        let mut n_failed = 0;
        for _ in 0..40 {
            if client.ping(PingRequest::default()).await.is_err() {
                n_failed += 1;
            }
        }
        assert!(
            (8..=32).contains(&n_failed),
            "{n_failed} of 40 failed at rate 0.5"
        );
        assert_eq!(h.gitea.rpc_count(Method::Ping), 40);
    }
);

/// UpdateTask and UpdateLog for a task that is another runner's, and for one that does not
/// exist: Gitea's `invalid runner for task` / `… not exist` answers become `TaskNotOwned`.
async fn check_task_not_owned(h: Harness) {
    let (owner, task) = h.running_task(spec()).await;
    let (stranger, _) = h.registered(&["ubuntu-latest"], false).await;
    const MISSING_TASK: i64 = 987_654;
    let cases = [
        (&stranger, task.id, "invalid runner for task"),
        (&owner, MISSING_TASK, "does not exist"),
    ];
    for (client, task_id, wording) in cases {
        let update_task = client
            .update_task(UpdateTaskRequest {
                state: Some(final_state(task_id, TaskResult::Success)),
                outputs: Default::default(),
            })
            .await
            .unwrap_err();
        let update_log = client
            .update_log(
                UpdateLogRequest {
                    task_id,
                    index: 0,
                    rows: rows(&["x"]),
                    no_more: false,
                }
                .into(),
            )
            .await
            .unwrap_err();
        for (error, expected_method) in [
            (update_task, Method::UpdateTask),
            (update_log, Method::UpdateLog),
        ] {
            match &error {
                ClientError::TaskNotOwned {
                    method, message, ..
                } => {
                    assert_eq!(*method, expected_method);
                    assert!(message.contains(wording), "{message}");
                }
                other => panic!("task {task_id}: expected TaskNotOwned, got {other:?}"),
            }
            assert!(!error.is_transient(), "{error}");
        }
    }
    // The owner's own task is still accepted, and the stranger's attempt changed nothing.
    let stored = h.gitea.task_state(task.id).unwrap();
    assert_eq!(stored.status, TaskStatus::Running);
    assert_eq!(stored.n_log_rows, 0);
}

conformance!(
    another_runners_or_a_missing_task_is_task_not_owned,
    |h: Harness| async move {
        check_task_not_owned(h).await;
    }
);
