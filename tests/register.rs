//! `act_runner register` end to end against the fake Gitea, over Connect and over gRPC: the
//! Register RPC, then the `.runner` file, then `Runner registered successfully.`; a bad token
//! exits 77. The binary runs as a child process; the fake Gitea runs in the test's runtime.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use act_runner::client::proto::runner::DeclareRequest;
use act_runner::client::{Client, ClientSettings, Credentials, Protocol, RunnerApi};
use act_runner::config::Registration;

use crate::support::command::Scratch;
use crate::support::fake_gitea::{FakeGitea, FakeOptions};

const LIMIT: Duration = Duration::from_secs(60);
const REGISTRATION_TOKEN: &str = "reg-token-0123456789abcdef";

struct Case {
    gitea: FakeGitea,
    scratch: Scratch,
    protocol: Protocol,
}

impl Case {
    async fn start(protocol: Protocol) -> Case {
        let gitea = FakeGitea::start(FakeOptions::default()).await.unwrap();
        gitea.add_registration_token(REGISTRATION_TOKEN);
        let scratch = Scratch::new();
        scratch.write("config.yaml", &format!("runner:\n  protocol: {protocol}\n"));
        Case {
            gitea,
            scratch,
            protocol,
        }
    }

    fn instance(&self) -> String {
        match self.protocol {
            Protocol::Connect => self.gitea.connect_url(),
            Protocol::Grpc => self.gitea.grpc_url(),
        }
    }

    /// Runs `act_runner -c config.yaml register --no-interactive --instance … <args>` off the
    /// runtime (the fake Gitea must keep serving meanwhile).
    async fn register(&self, args: &[&str], envs: &[(&str, &str)]) -> (Output, String) {
        let mut command = self.scratch.act_runner();
        command
            .args([
                "-c",
                "config.yaml",
                "register",
                "--no-interactive",
                "--instance",
            ])
            .arg(self.instance())
            .args(args);
        for (name, value) in envs {
            command.env(name, value);
        }
        let output =
            tokio::time::timeout(LIMIT, tokio::task::spawn_blocking(move || command.output()))
                .await
                .expect("register finishes in time")
                .unwrap()
                .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output, text)
    }
}

async fn registers_and_writes_the_runner_file(protocol: Protocol) {
    let case = Case::start(protocol).await;
    let (output, text) = case
        .register(
            &[
                "--token",
                REGISTRATION_TOKEN,
                "--name",
                "e2e-runner",
                "--labels",
                "self:host, node:docker://node:20",
            ],
            &[],
        )
        .await;
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("Runner registered successfully."), "{text}");
    assert!(
        !text.contains(REGISTRATION_TOKEN),
        "the token must not be logged: {text}"
    );

    let runners = case.gitea.runners();
    assert_eq!(runners.len(), 1);
    let server_side = &runners[0];
    assert_eq!(server_side.name, "e2e-runner");
    assert_eq!(
        server_side.labels,
        ["self", "node"],
        "Register sends bare label names"
    );
    assert_eq!(server_side.capabilities, ["cancelling"]);
    assert_eq!(server_side.version, act_runner::VERSION);

    let path = case.scratch.file(".runner");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let registration = Registration::load(&path).unwrap();
    assert_eq!(registration.uuid, server_side.uuid);
    assert_eq!(registration.id, server_side.id);
    assert_eq!(registration.name, "e2e-runner");
    assert_eq!(registration.address, case.instance());
    assert_eq!(registration.labels, ["self:host", "node:docker://node:20"]);
    assert!(!registration.ephemeral);
    assert_ne!(
        registration.token.expose(),
        REGISTRATION_TOKEN,
        "the runner token replaces it"
    );

    // The stored credentials authenticate: Declare succeeds with them.
    let client = Client::new(ClientSettings {
        instance: registration.address.clone(),
        protocol,
        insecure: false,
        timeout: Duration::from_secs(10),
        credentials: Some(Credentials {
            uuid: registration.uuid.clone(),
            token: registration.token.expose().to_owned(),
        }),
    })
    .unwrap();
    let declared = tokio::time::timeout(
        LIMIT,
        client.declare(DeclareRequest {
            version: act_runner::VERSION.to_owned(),
            labels: vec!["self".into()],
            ..DeclareRequest::default()
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(declared.response.runner.unwrap().uuid, registration.uuid);
}

async fn a_bad_token_exits_77_and_writes_nothing(protocol: Protocol) {
    let case = Case::start(protocol).await;
    let (output, text) = case.register(&["--token", "not-a-valid-token"], &[]).await;
    assert_eq!(output.status.code(), Some(77), "{text}");
    assert!(text.contains("rejected the registration"), "{text}");
    assert!(text.contains("registration token not found"), "{text}");
    assert!(!case.scratch.file(".runner").exists());
    assert!(case.gitea.runners().is_empty());
}

async fn the_token_can_come_from_a_systemd_credential(protocol: Protocol) {
    let case = Case::start(protocol).await;
    let credentials = case.scratch.file("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(
        credentials.join("registration-token"),
        format!("{REGISTRATION_TOKEN}\n"),
    )
    .unwrap();
    let credentials_dir = credentials.display().to_string();
    let (output, text) = case
        .register(
            &["--ephemeral"],
            &[("CREDENTIALS_DIRECTORY", credentials_dir.as_str())],
        )
        .await;
    assert_eq!(output.status.code(), Some(0), "{text}");
    let registration = Registration::load(&case.scratch.file(".runner")).unwrap();
    assert!(registration.ephemeral);
    assert!(case.gitea.runners()[0].ephemeral);
    // No --labels and none in the config: upstream's default labels.
    assert_eq!(
        case.gitea.runners()[0].labels,
        ["ubuntu-latest", "ubuntu-24.04", "ubuntu-22.04"]
    );
}

macro_rules! over_both_transports {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn connect() {
                    tokio::time::timeout(2 * LIMIT, super::$name(Protocol::Connect)).await.unwrap();
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn grpc() {
                    tokio::time::timeout(2 * LIMIT, super::$name(Protocol::Grpc)).await.unwrap();
                }
            }
        )*
    };
}

over_both_transports!(
    registers_and_writes_the_runner_file,
    a_bad_token_exits_77_and_writes_nothing,
    the_token_can_come_from_a_systemd_credential,
);
