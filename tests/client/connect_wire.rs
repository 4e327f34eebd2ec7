//! The Connect wire itself, checked with a raw HTTP client, and transport specifics.

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
            .body(update_log_request(task_id))
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

/// Issue 22: a reply that inflates past its RPC's cap is refused while it is read, for FetchTask
/// (64 MiB) and for the rest (1 MiB); one under the cap still decodes.
#[tokio::test]
async fn a_reply_inflating_past_its_cap_is_refused() {
    tokio::time::timeout(CASE_LIMIT, async {
        let gitea = FakeGitea::start(FakeOptions::default()).await.unwrap();
        let (uuid, token) = gitea.register_runner("r", &["x"], false);
        let client = Client::new(ClientSettings {
            instance: gitea.connect_url(),
            protocol: Protocol::Connect,
            insecure: false,
            timeout: Duration::from_secs(20),
            credentials: Some(Credentials { uuid, token }),
        })
        .unwrap();
        let refused = |error: ClientError, method: Method| match error {
            ClientError::Decode {
                method: actual,
                message,
                ..
            } => {
                assert_eq!(actual, method);
                assert!(message.contains("larger than"), "{message}");
            }
            other => panic!("expected a Decode error, got {other:?}"),
        };
        gitea.set_faults(
            Method::FetchTask,
            Faults::always(InjectedError::GzipBomb { mebibytes: 65 }),
        );
        let error = client
            .fetch_task(FetchTaskRequest::default())
            .await
            .unwrap_err();
        refused(error, Method::FetchTask);
        gitea.set_faults(
            Method::Ping,
            Faults::always(InjectedError::GzipBomb { mebibytes: 2 }),
        );
        refused(
            client.ping(PingRequest::default()).await.unwrap_err(),
            Method::Ping,
        );
        // Under the cap the body is read whole and fails only as a message (zeros are none).
        gitea.set_faults(
            Method::FetchTask,
            Faults::always(InjectedError::GzipBomb { mebibytes: 2 }),
        );
        match client.fetch_task(FetchTaskRequest::default()).await {
            Err(ClientError::Decode { message, .. }) => {
                assert!(!message.contains("larger than"), "{message}")
            }
            other => panic!("expected a Decode error, got {other:?}"),
        }
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

/// `UpdateLogRequest{task_id}` as protobuf bytes: field 1, varint.
fn update_log_request(task_id: i64) -> Vec<u8> {
    let mut bytes = vec![0x08];
    let mut value = task_id as u64;
    while value >= 0x80 {
        bytes.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
    bytes
}
