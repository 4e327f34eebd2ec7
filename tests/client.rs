//! The runner API client against the fake Gitea. One conformance suite, every case run over
//! both transports (ripgrep's `SearcherTester` idea): `conformance!(name, case)` expands to
//! `name::connect` and `name::grpc`, so a failure names its transport.
//! `rpcs`: Ping, Register, Declare, FetchTask; `reports`: UpdateTask and UpdateLog; `errors`:
//! error shapes and faults; `connect_wire`: raw-HTTP checks of the Connect wire and transport
//! specifics.

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
    AuthMode, CancelMode, FakeGitea, FakeOptions, Faults, InjectedError, LogFinalize, TaskSpec,
    TaskStatus,
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

mod connect_wire;
mod errors;
mod reports;
mod rpcs;
