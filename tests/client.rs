//! The runner API client against the fake Gitea. One conformance suite, every case run over
//! both transports (ripgrep's `SearcherTester` idea): `conformance!(name, case)` expands to
//! `name::connect` and `name::grpc`, so a failure names its transport.

use std::future::Future;
use std::time::Duration;

use act_runner::client::proto::ping::PingRequest;
use act_runner::client::proto::runner::{
    DeclareRequest, FetchTaskRequest, LogRow, RegisterRequest, Result as TaskResult, StepState,
    Task, TaskState, UpdateLogRequest, UpdateTaskRequest,
};
use act_runner::client::{
    Client, ClientError, ClientSettings, Credentials, Method, Protocol, RunnerApi,
};
use prost_types::Timestamp;

use crate::support::fake_gitea::{
    AuthMode, FakeGitea, FakeOptions, Faults, InjectedError, LogFinalize, TaskSpec, TaskStatus,
};

/// Every case finishes well within this, or fails.
const CASE_LIMIT: Duration = Duration::from_secs(30);
const REGISTRATION_TOKEN: &str = "registration-token-0123456789";

const WORKFLOW: &str = r#"
name: ci
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    needs: [setup]
    steps:
      - run: echo one
      - run: echo two
"#;

/// A fake Gitea and the transport a case runs over.
struct Harness {
    gitea: FakeGitea,
    protocol: Protocol,
}

impl Harness {
    fn instance(&self) -> String {
        match self.protocol {
            Protocol::Connect => self.gitea.connect_url(),
            Protocol::Grpc => self.gitea.grpc_url(),
        }
    }

    fn client_with(&self, credentials: Option<Credentials>, timeout: Duration) -> Client {
        Client::new(ClientSettings {
            instance: format!("{}/", self.instance()),
            protocol: self.protocol,
            insecure: false,
            timeout,
            credentials,
        })
        .unwrap()
    }

    fn anonymous(&self) -> Client {
        self.client_with(None, Duration::from_secs(5))
    }

    /// Registers through the RPC and returns a client holding the new credentials.
    async fn registered(&self, labels: &[&str], ephemeral: bool) -> (Client, Credentials) {
        let client = self.anonymous();
        let reply = client
            .register(RegisterRequest {
                name: "runner-1".into(),
                token: REGISTRATION_TOKEN.into(),
                version: "v0.1.0".into(),
                labels: labels.iter().map(|label| (*label).to_owned()).collect(),
                ephemeral,
                ..RegisterRequest::default()
            })
            .await
            .unwrap();
        let runner = reply.runner.unwrap();
        let credentials = Credentials {
            uuid: runner.uuid,
            token: runner.token,
        };
        (client.with_credentials(credentials.clone()), credentials)
    }

    /// Registers, then fetches the one queued task built from `spec`.
    async fn running_task(&self, spec: TaskSpec) -> (Client, Task) {
        let (client, _) = self.registered(&["ubuntu-latest"], false).await;
        self.gitea.enqueue_task(spec);
        let reply = client
            .fetch_task(FetchTaskRequest { tasks_version: 0 })
            .await
            .unwrap();
        (client, reply.task.unwrap())
    }
}

async fn run<F, Fut>(protocol: Protocol, options: FakeOptions, case: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut options = options;
    options
        .registration_tokens
        .push(REGISTRATION_TOKEN.to_owned());
    let gitea = FakeGitea::start(options).await.unwrap();
    let harness = Harness { gitea, protocol };
    tokio::time::timeout(CASE_LIMIT, case(harness))
        .await
        .unwrap_or_else(|_| panic!("case over {protocol} did not finish within {CASE_LIMIT:?}"));
}

macro_rules! conformance {
    ($name:ident, $case:expr) => {
        conformance!($name, FakeOptions::default(), $case);
    };
    ($name:ident, $options:expr, $case:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn connect() {
                run(Protocol::Connect, $options, $case).await;
            }

            #[tokio::test]
            async fn grpc() {
                run(Protocol::Grpc, $options, $case).await;
            }
        }
    };
}

fn spec() -> TaskSpec {
    TaskSpec::from_workflow(WORKFLOW).unwrap()
}

fn now() -> Option<Timestamp> {
    Some(Timestamp::from(std::time::SystemTime::now()))
}

fn rows(lines: &[&str]) -> Vec<LogRow> {
    lines
        .iter()
        .map(|line| LogRow {
            time: now(),
            content: (*line).to_owned(),
        })
        .collect()
}

fn final_state(task_id: i64, result: TaskResult) -> TaskState {
    TaskState {
        id: task_id,
        result: result as i32,
        stopped_at: now(),
        ..TaskState::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Happy paths: Ping, Register, Declare, FetchTask, UpdateTask, UpdateLog.

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
        let runner = reply.runner.unwrap();
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
            .update_log(UpdateLogRequest {
                task_id: second,
                index: 0,
                rows: rows(&["late"]),
                no_more: false,
            })
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
        assert_eq!(
            client
                .update_log(send(0, &[], false))
                .await
                .unwrap()
                .ack_index,
            0
        );
        assert_eq!(
            client
                .update_log(send(0, &["a", "b", "c"], false))
                .await
                .unwrap()
                .ack_index,
            3
        );
        // A resend overlapping what was stored appends only the new rows.
        assert_eq!(
            client
                .update_log(send(1, &["b", "c", "d", "e"], false))
                .await
                .unwrap()
                .ack_index,
            5
        );
        // A gap is not written; all-old rows are not written.
        assert_eq!(
            client
                .update_log(send(9, &["z"], false))
                .await
                .unwrap()
                .ack_index,
            5
        );
        assert_eq!(
            client
                .update_log(send(0, &["a"], false))
                .await
                .unwrap()
                .ack_index,
            5
        );
        assert_eq!(
            client
                .update_log(send(5, &["f"], true))
                .await
                .unwrap()
                .ack_index,
            6
        );
        assert_eq!(
            h.gitea.task_log_lines(task.id),
            ["a", "b", "c", "d", "e", "f"]
        );
        assert!(h.gitea.log_archived(task.id));
        // After archival: old rows are acked, new ones refused.
        assert_eq!(
            client
                .update_log(send(5, &["f"], true))
                .await
                .unwrap()
                .ack_index,
            6
        );
        let error = client.update_log(send(6, &["g"], false)).await.unwrap_err();
        assert!(
            matches!(error, ClientError::LogArchived { .. }),
            "{error:?}"
        );
    }
);

conformance!(
    update_log_empty_no_more_is_ignored_on_gitea_1_25,
    |h: Harness| async move {
        let (client, task) = h.running_task(spec()).await;
        let reply = client
            .update_log(UpdateLogRequest {
                task_id: task.id,
                index: 0,
                rows: Vec::new(),
                no_more: true,
            })
            .await
            .unwrap();
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
        let reply = client
            .update_log(UpdateLogRequest {
                task_id: task.id,
                index: 0,
                rows: Vec::new(),
                no_more: true,
            })
            .await
            .unwrap();
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
            .update_log(UpdateLogRequest {
                task_id,
                index: 0,
                rows: rows(&["late"]),
                no_more: true,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(error, ClientError::Unauthenticated { .. }),
            "{error:?}"
        );
    }
);

// ---------------------------------------------------------------------------------------------
// Error shapes.

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
        h.gitea.outage(Duration::ZERO, Duration::from_millis(300));
        let error = client.ping(PingRequest::default()).await.unwrap_err();
        assert!(
            matches!(error, ClientError::Unavailable { .. }),
            "{error:?}"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
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

// ---------------------------------------------------------------------------------------------
// Bodies: gzip and empty.

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
            .update_log(UpdateLogRequest {
                task_id: task.id,
                ..UpdateLogRequest::default()
            })
            .await
            .unwrap();
        assert_eq!(reply.ack_index, 0);
    }
);

// Upstream's own mock runner (tests/integration/actions_runner_test.go), step by step.
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
            .update_log(UpdateLogRequest {
                task_id,
                index: row_idx as i64,
                rows: rows(&[line]),
                no_more: row_idx == lines.len() - 1,
            })
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

// ---------------------------------------------------------------------------------------------
// The Connect wire itself, checked with a raw HTTP client.

mod connect_wire {
    use super::*;

    async fn post(
        gitea: &FakeGitea,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", gitea.connect_url()))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn empty_message_is_an_empty_body_both_ways() {
        tokio::time::timeout(CASE_LIMIT, async {
            let gitea = FakeGitea::start(FakeOptions::default()).await.unwrap();
            let (uuid, token) = gitea.register_runner("r", &["x"], false);
            let response = reqwest::Client::new()
                .post(format!(
                    "{}/api/actions/runner.v1.RunnerService/FetchTask",
                    gitea.connect_url()
                ))
                .header("content-type", "application/proto")
                .header("x-runner-uuid", uuid)
                .header("x-runner-token", token)
                .body(vec![0x08, 0x01]) // tasks_version 1 = the current version
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], "application/proto");
            assert_eq!(response.bytes().await.unwrap().as_ref(), [0x10, 0x01]);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn update_log_ack_zero_is_an_empty_200_body() {
        tokio::time::timeout(CASE_LIMIT, async {
            let gitea = FakeGitea::start(FakeOptions::default()).await.unwrap();
            let (uuid, token) = gitea.register_runner("r", &["ubuntu-latest"], false);
            let client = Client::new(ClientSettings {
                instance: gitea.connect_url(),
                protocol: Protocol::Connect,
                insecure: false,
                timeout: Duration::from_secs(5),
                credentials: Some(Credentials {
                    uuid: uuid.clone(),
                    token: token.clone(),
                }),
            })
            .unwrap();
            let task_id = gitea.enqueue_task(spec());
            client
                .fetch_task(FetchTaskRequest::default())
                .await
                .unwrap();
            let response = reqwest::Client::new()
                .post(format!(
                    "{}/api/actions/runner.v1.RunnerService/UpdateLog",
                    gitea.connect_url()
                ))
                .header("content-type", "application/proto")
                .header("x-runner-uuid", uuid)
                .header("x-runner-token", token)
                .body(vec![0x08, task_id as u8]) // UpdateLogRequest{task_id}
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert!(response.bytes().await.unwrap().is_empty());
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_garbled_reply_is_a_decode_error() {
        tokio::time::timeout(CASE_LIMIT, async {
            let gitea = FakeGitea::start(FakeOptions::default()).await.unwrap();
            gitea.set_faults(Method::Ping, Faults::always(InjectedError::GarbledBody));
            let client = Client::new(ClientSettings {
                instance: gitea.connect_url(),
                protocol: Protocol::Connect,
                insecure: false,
                timeout: Duration::from_secs(5),
                credentials: None,
            })
            .unwrap();
            let error = client.ping(PingRequest::default()).await.unwrap_err();
            assert!(
                matches!(
                    error,
                    ClientError::Decode {
                        method: Method::Ping,
                        ..
                    }
                ),
                "{error:?}"
            );
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn wrong_content_type_is_415_and_unknown_path_is_plain_404() {
        tokio::time::timeout(CASE_LIMIT, async {
            let gitea = FakeGitea::start(FakeOptions::default()).await.unwrap();
            let response = post(
                &gitea,
                "/api/actions/ping.v1.PingService/Ping",
                "application/x-protobuf",
                Vec::new(),
            )
            .await;
            assert_eq!(response.status(), 415);
            let response = post(
                &gitea,
                "/api/actions/ping.v1.PingService/Nope",
                "application/proto",
                Vec::new(),
            )
            .await;
            assert_eq!(response.status(), 404);
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain")
            );
            let response = post(
                &gitea,
                "/ping.v1.PingService/Ping",
                "application/proto",
                Vec::new(),
            )
            .await;
            assert_eq!(response.status(), 404);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn legacy_unauthenticated_is_http_500_unknown_json() {
        tokio::time::timeout(CASE_LIMIT, async {
            let gitea = FakeGitea::start(FakeOptions::default()).await.unwrap();
            let response = post(&gitea, "/api/actions/runner.v1.RunnerService/FetchTask", "application/proto", Vec::new()).await;
            assert_eq!(response.status(), 500);
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(
                body,
                serde_json::json!({"code": "unknown", "message": "rpc error: code = Unauthenticated desc = unregistered runner"})
            );
            gitea.set_auth_mode(AuthMode::Modern);
            let response = post(&gitea, "/api/actions/runner.v1.RunnerService/FetchTask", "application/proto", Vec::new()).await;
            assert_eq!(response.status(), 401);
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body, serde_json::json!({"code": "unauthenticated", "message": "unregistered runner"}));
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn client_sends_connect_headers_and_a_sub_path_instance_works() {
        tokio::time::timeout(CASE_LIMIT, async {
            let options = FakeOptions {
                prefix: "/gitea/api/actions".into(),
                ..FakeOptions::default()
            };
            let gitea = FakeGitea::start(options).await.unwrap();
            let client = Client::new(ClientSettings {
                instance: format!("{}/gitea/", gitea.connect_url()),
                protocol: Protocol::Connect,
                insecure: false,
                timeout: Duration::from_secs(4),
                credentials: Some(Credentials {
                    uuid: "u".into(),
                    token: "t".into(),
                }),
            })
            .unwrap();
            client.ping(PingRequest::default()).await.unwrap();
            let headers = gitea.last_request_headers(Method::Ping).unwrap();
            assert_eq!(headers["content-type"], "application/proto");
            assert_eq!(headers["connect-protocol-version"], "1");
            assert_eq!(headers["connect-timeout-ms"], "4000");
            // Ping is unauthenticated: no runner headers even when the client has credentials.
            assert!(headers.get("x-runner-uuid").is_none());
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn grpc_client_adds_the_path_prefix() {
        tokio::time::timeout(CASE_LIMIT, async {
            let options = FakeOptions {
                prefix: "/gitea/api/actions".into(),
                ..FakeOptions::default()
            };
            let gitea = FakeGitea::start(options).await.unwrap();
            let client = |instance: String| {
                Client::new(ClientSettings {
                    instance,
                    protocol: Protocol::Grpc,
                    insecure: false,
                    timeout: Duration::from_secs(4),
                    credentials: None,
                })
                .unwrap()
            };
            let reply = client(format!("{}/gitea", gitea.grpc_url()))
                .ping(PingRequest { data: "g".into() })
                .await
                .unwrap();
            assert_eq!(reply.data, "Hello, g!");
            // Without the sub-path the prefix does not match: the fake answers a plain 404.
            let error = client(gitea.grpc_url())
                .ping(PingRequest::default())
                .await
                .unwrap_err();
            assert!(
                matches!(error, ClientError::Unimplemented { .. }),
                "{error:?}"
            );
        })
        .await
        .unwrap();
    }
}
