//! UpdateTask and UpdateLog over both transports: outputs, the final state, cancellation,
//! log acknowledgement and archiving, the ephemeral runner's end, and reply decoding.

use super::*;

conformance!(
    update_task_outputs_are_first_write_wins,
    |h: Harness| async move {
        let (client, task) = h.running_task(spec()).await;
        let heartbeat = |outputs: &[(&str, &str)]| UpdateTaskRequest {
            state: Some(TaskState {
                id: task.id,
                ..TaskState::default()
            }),
            outputs: outputs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let first = client.update_task(heartbeat(&[("a", "1")])).await.unwrap();
        assert_eq!(first.sent_outputs, ["a"]);
        assert_eq!(first.state.unwrap().result, TaskResult::Unspecified as i32);
        let second = client
            .update_task(heartbeat(&[("a", "changed"), ("b", "2")]))
            .await
            .unwrap();
        let mut sent = second.sent_outputs.clone();
        sent.sort();
        assert_eq!(sent, ["a", "b"]);
        let outputs = h.gitea.task_outputs(task.id);
        assert!(
            outputs.contains(&("a".to_owned(), "1".to_owned())),
            "{outputs:?}"
        );
        assert!(
            outputs.contains(&("b".to_owned(), "2".to_owned())),
            "{outputs:?}"
        );
    }
);

conformance!(
    update_task_records_the_final_state,
    |h: Harness| async move {
        let (client, task) = h.running_task(spec()).await;
        let mut state = final_state(task.id, TaskResult::Success);
        state.steps = vec![
            StepState {
                id: 0,
                result: TaskResult::Success as i32,
                log_index: 0,
                log_length: 2,
                started_at: now(),
                stopped_at: now(),
            },
            StepState {
                id: 1,
                result: TaskResult::Skipped as i32,
                ..StepState::default()
            },
        ];
        let reply = client
            .update_task(UpdateTaskRequest {
                state: Some(state.clone()),
                outputs: Default::default(),
            })
            .await
            .unwrap();
        assert_eq!(reply.state.unwrap().result, TaskResult::Success as i32);
        let stored = h.gitea.task_state(task.id).unwrap();
        assert_eq!(stored.status, TaskStatus::Success);
        assert_eq!(stored.steps[0].log_length, 2);
        assert_eq!(stored.steps[1].result, TaskResult::Skipped as i32);
        assert_eq!(stored.stopped_at, state.stopped_at);
        // A final task ignores later states.
        let late = client
            .update_task(UpdateTaskRequest {
                state: Some(final_state(task.id, TaskResult::Failure)),
                outputs: Default::default(),
            })
            .await
            .unwrap();
        assert_eq!(late.state.unwrap().result, TaskResult::Success as i32);
    }
);

conformance!(
    cancelled_and_reaped_tasks_answer_their_result,
    |h: Harness| async move {
        let (client, _) = h.registered(&["ubuntu-latest"], false).await;
        let first = h.gitea.enqueue_task(spec());
        let second = h.gitea.enqueue_task(spec());
        for expected in [first, second] {
            let task = client
                .fetch_task(FetchTaskRequest { tasks_version: 0 })
                .await
                .unwrap();
            assert_eq!(task.task.unwrap().id, expected);
        }
        assert!(h.gitea.cancel_task(first));
        assert!(h.gitea.reap_task(second));
        for (task_id, expected) in [
            (first, TaskResult::Cancelled),
            (second, TaskResult::Failure),
        ] {
            let reply = client
                .update_task(UpdateTaskRequest {
                    state: Some(TaskState {
                        id: task_id,
                        ..TaskState::default()
                    }),
                    outputs: Default::default(),
                })
                .await
                .unwrap();
            assert_eq!(reply.state.unwrap().result, expected as i32);
        }
        // A reaped task's log is archived: new rows are refused with their own variant.
        let error = client
            .update_log(
                UpdateLogRequest {
                    task_id: second,
                    index: 0,
                    rows: rows(&["late"]),
                    no_more: false,
                }
                .into(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::LogArchived {
                    method: Method::UpdateLog,
                    ..
                }
            ),
            "{error:?}"
        );
    }
);

/// The `ack_index` Gitea answers `request` with.
async fn ack(client: &Client, request: UpdateLogRequest) -> i64 {
    client.update_log(request.into()).await.unwrap().ack_index
}

conformance!(
    update_log_acks_exactly_once_in_order,
    |h: Harness| async move {
        let (client, task) = h.running_task(spec()).await;
        let send = |index: i64, lines: &[&str], no_more: bool| UpdateLogRequest {
            task_id: task.id,
            index,
            rows: rows(lines),
            no_more,
        };
        // An empty first call acks 0, which is an empty response body.
        assert_eq!(ack(&client, send(0, &[], false)).await, 0);
        assert_eq!(ack(&client, send(0, &["a", "b", "c"], false)).await, 3);
        // A resend overlapping what was stored appends only the new rows.
        assert_eq!(ack(&client, send(1, &["b", "c", "d", "e"], false)).await, 5);
        // A gap is not written; all-old rows are not written.
        assert_eq!(ack(&client, send(9, &["z"], false)).await, 5);
        assert_eq!(ack(&client, send(0, &["a"], false)).await, 5);
        assert_eq!(ack(&client, send(5, &["f"], true)).await, 6);
        assert_eq!(
            h.gitea.task_log_lines(task.id),
            ["a", "b", "c", "d", "e", "f"]
        );
        // The fake records when each call that added rows did (benchmarks time delivery by it).
        let writes = h.gitea.task_log_writes(task.id);
        assert_eq!(
            writes.iter().map(|(rows, _)| *rows).collect::<Vec<_>>(),
            [3, 5, 6]
        );
        assert!(writes.windows(2).all(|pair| pair[0].1 <= pair[1].1));
        assert!(h.gitea.log_archived(task.id));
        // After archival: old rows are acked, new ones refused.
        assert_eq!(ack(&client, send(5, &["f"], true)).await, 6);
        let error = client
            .update_log(send(6, &["g"], false).into())
            .await
            .unwrap_err();
        assert!(
            matches!(error, ClientError::LogArchived { .. }),
            "{error:?}"
        );
    }
);

/// An UpdateLog with no rows and `no_more`.
fn empty_no_more(task_id: i64) -> act_runner::client::EncodedUpdateLog {
    UpdateLogRequest {
        task_id,
        index: 0,
        rows: Vec::new(),
        no_more: true,
    }
    .into()
}

conformance!(
    update_log_empty_no_more_is_ignored_on_gitea_1_25,
    |h: Harness| async move {
        let (client, task) = h.running_task(spec()).await;
        let reply = client.update_log(empty_no_more(task.id)).await.unwrap();
        assert_eq!(reply.ack_index, 0);
        assert!(!h.gitea.log_archived(task.id));
    }
);

conformance!(
    update_log_empty_no_more_archives_on_gitea_main,
    FakeOptions {
        log_finalize: LogFinalize::GiteaMain,
        ..FakeOptions::default()
    },
    |h: Harness| async move {
        let (client, task) = h.running_task(spec()).await;
        let reply = client.update_log(empty_no_more(task.id)).await.unwrap();
        assert_eq!(reply.ack_index, 0);
        assert!(h.gitea.log_archived(task.id));
    }
);

conformance!(
    ephemeral_runner_is_deleted_by_its_final_update_task,
    |h: Harness| async move {
        let (client, _) = h.registered(&["ubuntu-latest"], true).await;
        let task_id = h.gitea.enqueue_task(spec());
        h.gitea.enqueue_task(spec());
        let task = client
            .fetch_task(FetchTaskRequest { tasks_version: 0 })
            .await
            .unwrap()
            .task
            .unwrap();
        assert_eq!(task.id, task_id);
        // At most one task while it runs.
        let none = client
            .fetch_task(FetchTaskRequest { tasks_version: 0 })
            .await
            .unwrap();
        assert!(none.task.is_none());
        client
            .update_task(UpdateTaskRequest {
                state: Some(final_state(task_id, TaskResult::Success)),
                outputs: Default::default(),
            })
            .await
            .unwrap();
        assert!(h.gitea.runners()[0].deleted);
        let error = client
            .update_log(
                UpdateLogRequest {
                    task_id,
                    index: 0,
                    rows: rows(&["late"]),
                    no_more: true,
                }
                .into(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, ClientError::Unauthenticated { .. }),
            "{error:?}"
        );
    }
);

conformance!(
    large_replies_decode_gzipped_or_not,
    |h: Harness| async move {
        let big = "x".repeat(4096);
        let (_, task) = h.running_task(spec().with_secret("BIG", &big)).await;
        assert_eq!(task.secrets["BIG"], big);
        if h.protocol == Protocol::Connect {
            assert!(
                h.gitea.gzipped_responses() >= 1,
                "the fake gzips replies over 1 KiB"
            );
            let headers = h.gitea.last_request_headers(Method::FetchTask).unwrap();
            assert!(
                headers
                    .get("accept-encoding")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .contains("gzip")
            );
        }
    }
);

conformance!(
    empty_replies_decode_as_default_messages,
    |h: Harness| async move {
        let (client, task) = h.running_task(spec()).await;
        // UpdateLogResponse{ack_index: 0} is an empty body (connect_wire pins the bytes).
        let reply = client
            .update_log(
                UpdateLogRequest {
                    task_id: task.id,
                    ..UpdateLogRequest::default()
                }
                .into(),
            )
            .await
            .unwrap();
        assert_eq!(reply.ack_index, 0);
    }
);

// Upstream's own mock runner (tests/integration/actions_runner_test.go), step by step.
conformance!(
    cancelling_mode_lets_a_capable_runner_finish_then_stores_cancelled,
    FakeOptions {
        cancel_mode: CancelMode::Cancelling,
        ..FakeOptions::default()
    },
    |h: Harness| async move {
        let (client, task) = h.running_task(spec()).await;
        client
            .declare(DeclareRequest {
                labels: vec!["ubuntu-latest".into()],
                capabilities: vec!["cancelling".into()],
                ..DeclareRequest::default()
            })
            .await
            .unwrap();
        assert!(h.gitea.cancel_task(task.id));
        assert_eq!(
            h.gitea.task_state(task.id).unwrap().status,
            TaskStatus::Cancelling
        );
        let heartbeat = client
            .update_task(UpdateTaskRequest {
                state: Some(TaskState {
                    id: task.id,
                    ..TaskState::default()
                }),
                outputs: Default::default(),
            })
            .await
            .unwrap();
        assert_eq!(
            heartbeat.state.unwrap().result,
            TaskResult::Cancelled as i32
        );
        // Post-steps still run: their logs are accepted, then the runner reports any result.
        let ack = client
            .update_log(
                UpdateLogRequest {
                    task_id: task.id,
                    index: 0,
                    rows: rows(&["post step"]),
                    no_more: true,
                }
                .into(),
            )
            .await
            .unwrap();
        assert_eq!(ack.ack_index, 1);
        client
            .update_task(UpdateTaskRequest {
                state: Some(final_state(task.id, TaskResult::Failure)),
                outputs: Default::default(),
            })
            .await
            .unwrap();
        assert_eq!(
            h.gitea.task_state(task.id).unwrap().status,
            TaskStatus::Cancelled
        );
    }
);
