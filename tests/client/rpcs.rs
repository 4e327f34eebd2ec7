//! Ping, Register, Declare and FetchTask over both transports, and upstream's mock runner
//! going through every RPC.

use super::*;

conformance!(ping_answers_hello, |h: Harness| async move {
    let reply = h
        .anonymous()
        .ping(PingRequest { data: "x".into() })
        .await
        .unwrap();
    assert_eq!(reply.data, "Hello, x!");
});

conformance!(
    register_mints_credentials_and_stores_the_runner,
    |h: Harness| async move {
        let (_, credentials) = h.registered(&["ubuntu-latest", "self"], false).await;
        assert_eq!(credentials.token.len(), 40);
        assert!(credentials.token.chars().all(|c| c.is_ascii_hexdigit()));
        let runners = h.gitea.runners();
        assert_eq!(runners.len(), 1);
        assert_eq!(runners[0].uuid, credentials.uuid);
        assert_eq!(runners[0].labels, ["ubuntu-latest", "self"]);
        assert_eq!(runners[0].version, "v0.1.0");
        // Register carries no runner headers, and names us.
        let headers = h.gitea.last_request_headers(Method::Register).unwrap();
        assert!(headers.get("x-runner-token").is_none());
        let user_agent = headers.get("user-agent").unwrap().to_str().unwrap();
        assert!(
            user_agent.starts_with(&format!("act_runner/{}", act_runner::VERSION)),
            "{user_agent}"
        );
    }
);

conformance!(register_echoes_ephemeral, |h: Harness| async move {
    let reply = h
        .anonymous()
        .register(RegisterRequest {
            name: "eph".into(),
            token: REGISTRATION_TOKEN.into(),
            ephemeral: true,
            ..RegisterRequest::default()
        })
        .await
        .unwrap();
    assert!(reply.runner.unwrap().ephemeral);
});

conformance!(
    register_with_an_unknown_token_is_a_server_error,
    |h: Harness| async move {
        let error = h
            .anonymous()
            .register(RegisterRequest {
                name: "r".into(),
                token: "wrong".into(),
                ..RegisterRequest::default()
            })
            .await
            .unwrap_err();
        match &error {
            ClientError::Server {
                method,
                code,
                message,
                ..
            } => {
                assert_eq!(*method, Method::Register);
                assert_eq!(code, "unknown");
                assert_eq!(message, "runner registration token not found");
            }
            other => panic!("expected a server error, got {other:?}"),
        }
    }
);

conformance!(
    declare_replaces_labels_and_returns_no_token,
    |h: Harness| async move {
        let (client, credentials) = h.registered(&["old"], false).await;
        let reply = client
            .declare(DeclareRequest {
                version: "v9".into(),
                labels: vec!["new".into()],
                capabilities: vec!["cancelling".into()],
            })
            .await
            .unwrap();
        let runner = reply.response.runner.unwrap();
        assert_eq!(runner.token, "");
        assert_eq!(runner.labels, ["new"]);
        let stored = &h.gitea.runners()[0];
        assert_eq!(
            (stored.version.as_str(), stored.labels.clone()),
            ("v9", vec!["new".to_owned()])
        );
        assert_eq!(stored.capabilities, ["cancelling"]);
        assert!(stored.last_online.is_some());
        let headers = h.gitea.last_request_headers(Method::Declare).unwrap();
        assert_eq!(
            headers.get("x-runner-uuid").unwrap(),
            credentials.uuid.as_str()
        );
        assert_eq!(
            headers.get("x-runner-token").unwrap(),
            credentials.token.as_str()
        );
    }
);

conformance!(
    fetch_task_short_circuits_on_the_current_version,
    |h: Harness| async move {
        let (client, _) = h.registered(&["ubuntu-latest"], false).await;
        let empty = client
            .fetch_task(FetchTaskRequest { tasks_version: 0 })
            .await
            .unwrap();
        assert!(empty.task.is_none());
        assert_eq!(empty.tasks_version, 1);
        let task_id = h.gitea.enqueue_task(spec());
        // The runner still holds the old version, so the server looks at the queue.
        let same = client
            .fetch_task(FetchTaskRequest { tasks_version: 2 })
            .await
            .unwrap();
        assert!(same.task.is_none(), "equal versions must not pick");
        assert_eq!(same.tasks_version, 2);
        let picked = client
            .fetch_task(FetchTaskRequest { tasks_version: 1 })
            .await
            .unwrap();
        assert_eq!(picked.task.unwrap().id, task_id);
        assert_eq!(
            h.gitea.task_state(task_id).unwrap().status,
            TaskStatus::Running
        );
    }
);

conformance!(
    fetch_task_matches_labels_by_containment,
    |h: Harness| async move {
        let (client, _) = h.registered(&["ubuntu-latest"], false).await;
        let task_id = h
            .gitea
            .enqueue_task(spec().with_runs_on(&["ubuntu-latest", "gpu"]));
        let reply = client
            .fetch_task(FetchTaskRequest { tasks_version: 0 })
            .await
            .unwrap();
        assert!(reply.task.is_none());
        client
            .declare(DeclareRequest {
                labels: vec!["ubuntu-latest".into(), "gpu".into(), "x".into()],
                ..DeclareRequest::default()
            })
            .await
            .unwrap();
        let reply = client
            .fetch_task(FetchTaskRequest { tasks_version: 0 })
            .await
            .unwrap();
        assert_eq!(reply.task.unwrap().id, task_id);
    }
);

conformance!(
    fetched_task_carries_payload_context_secrets_vars_needs,
    |h: Harness| async move {
        let spec = spec()
            .with_secret("DEPLOY_KEY", "s3cret")
            .with_var("REGION", "eu")
            .with_need("setup", &[("out", "42")], TaskResult::Success);
        let (_, task) = h.running_task(spec).await;
        let payload = String::from_utf8(task.workflow_payload.clone().unwrap()).unwrap();
        assert!(payload.contains("build"), "{payload}");
        assert!(
            !payload.contains("needs"),
            "needs are erased from the payload: {payload}"
        );
        let context = task.context.clone().unwrap();
        assert_eq!(context.fields.len(), 36, "{:?}", context.fields.keys());
        let token = match &context.fields["token"].kind {
            Some(prost_types::value::Kind::StringValue(token)) => token.clone(),
            other => panic!("token is a string, got {other:?}"),
        };
        assert_eq!(task.secrets["GITHUB_TOKEN"], token);
        assert_eq!(task.secrets["GITEA_TOKEN"], token);
        assert_eq!(task.secrets["DEPLOY_KEY"], "s3cret");
        assert_eq!(task.vars["REGION"], "eu");
        assert_eq!(task.needs["setup"].outputs["out"], "42");
        assert_eq!(task.needs["setup"].result, TaskResult::Success as i32);
    }
);

conformance!(upstream_mock_runner_happy_path, |h: Harness| async move {
    let ping = h
        .anonymous()
        .ping(PingRequest {
            data: "runner".into(),
        })
        .await
        .unwrap();
    assert_eq!(ping.data, "Hello, runner!");
    let (client, _) = h.registered(&["ubuntu-latest"], false).await;
    let task_id = h.gitea.enqueue_task(spec());
    let task = loop {
        let reply = client
            .fetch_task(FetchTaskRequest { tasks_version: 0 })
            .await
            .unwrap();
        if let Some(task) = reply.task {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(task.id, task_id);
    let lines = ["line 0", "line 1", "line 2"];
    for (row_idx, line) in lines.iter().enumerate() {
        let reply = client
            .update_log(
                UpdateLogRequest {
                    task_id,
                    index: row_idx as i64,
                    rows: rows(&[line]),
                    no_more: row_idx == lines.len() - 1,
                }
                .into(),
            )
            .await
            .unwrap();
        assert_eq!(reply.ack_index, row_idx as i64 + 1);
    }
    for (output_idx, key) in ["first", "second"].iter().enumerate() {
        let reply = client
            .update_task(UpdateTaskRequest {
                state: Some(TaskState {
                    id: task_id,
                    ..TaskState::default()
                }),
                outputs: [((*key).to_owned(), "v".to_owned())].into(),
            })
            .await
            .unwrap();
        assert_eq!(reply.sent_outputs.len(), output_idx + 1);
    }
    let reply = client
        .update_task(UpdateTaskRequest {
            state: Some(final_state(task_id, TaskResult::Success)),
            outputs: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(reply.state.unwrap().result, TaskResult::Success as i32);
    assert_eq!(h.gitea.task_log_lines(task_id), lines);
    assert!(h.gitea.log_archived(task_id));
    let stored = h.gitea.task_state(task_id).unwrap();
    assert_eq!(stored.status, TaskStatus::Success);
    let runner = &h.gitea.runners()[0];
    assert!(runner.last_active.is_some() && runner.last_online.is_some());
});

conformance!(
    register_without_a_name_is_refused,
    |h: Harness| async move {
        let error = h
            .anonymous()
            .register(RegisterRequest {
                token: REGISTRATION_TOKEN.into(),
                ..RegisterRequest::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ClientError::Server { message, .. } if message == "missing runner token, name"),
            "{error:?}"
        );
    }
);

conformance!(
    declare_on_gitea_before_1_21_is_unimplemented,
    |h: Harness| async move {
        let (client, _) = h.registered(&["x"], false).await;
        h.gitea.set_declare_unimplemented(true);
        let error = client.declare(DeclareRequest::default()).await.unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::Unimplemented {
                    method: Method::Declare,
                    ..
                }
            ),
            "{error:?}"
        );
    }
);

conformance!(
    declare_returns_the_servers_capabilities_header,
    |h: Harness| async move {
        let (client, _) = h.registered(&["x"], false).await;
        let before = client.declare(DeclareRequest::default()).await.unwrap();
        assert_eq!(before.capabilities, "", "Gitea 1.25 sends no header");
        h.gitea
            .set_declare_capabilities(Some(" job-summary,cache-v2 "));
        let after = client.declare(DeclareRequest::default()).await.unwrap();
        assert_eq!(after.capabilities, "job-summary,cache-v2");
        assert!(after.response.runner.is_some());
    }
);
