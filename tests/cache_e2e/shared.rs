//! `act_runner cache-server` as the cache of several runners: two daemons (each with its own
//! fake Gitea) grant their tasks' tokens through it, and a save on one restores on the other; a
//! `kill -9` of the server in the middle of an upload leaves no entry behind; started by
//! `systemd-socket-activate` as `act-runner-cache.socket` starts it, it serves on the inherited
//! socket with the secret from its systemd credential, and serves its metrics.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::fixture::{Jobs, MAIN};
use super::free_port;
use crate::daemon::harness::{Daemon, RunnerDir, bounded, start_fake};

pub const SECRET: &str = "shared-cache-secret-for-tests";

/// A running `act_runner cache-server` on a loopback port.
pub struct CacheServer {
    child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl CacheServer {
    /// Starts it on `dir` (its `cache.dir`) and `port`, and waits until it accepts connections.
    pub async fn start(dir: &Path, port: u16) -> CacheServer {
        std::fs::create_dir_all(dir).expect("create the server's directory");
        let config = dir.join("cache-server.yaml");
        // The secret from a file, as an operator keeps it out of the configuration.
        let secret_file = dir.join("cache-secret");
        std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write the secret file");
        std::fs::write(
            &config,
            format!(
                "cache:\n  host: 127.0.0.1\n  external_secret_file: {}\n",
                secret_file.display()
            ),
        )
        .expect("write the server's config");
        let log = dir.join(format!("server-{}.log", rand_suffix()));
        let child = spawn_logged(
            Command::new(env!("CARGO_BIN_EXE_act_runner"))
                .arg("-c")
                .arg(&config)
                .arg("cache-server")
                .arg("--dir")
                .arg(dir.join("store"))
                .arg("--port")
                .arg(port.to_string()),
            &log,
        );
        let server = CacheServer { child, port, log };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cache-server did not listen on {port}:\n{}", server.log());
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Reserves `key` (version `v1`, `size` bytes) through the v1 API as `token`; its cacheId.
    pub async fn reserve(&self, http: &reqwest::Client, token: &str, key: &str, size: u64) -> i64 {
        let reserved: serde_json::Value = http
            .post(format!("{}_apis/artifactcache/caches", self.url()))
            .bearer_auth(token)
            .json(&serde_json::json!({ "key": key, "version": "v1", "cacheSize": size }))
            .send()
            .await
            .expect("reserve")
            .error_for_status()
            .expect("the reserve is accepted")
            .json()
            .await
            .expect("a cacheId");
        reserved["cacheId"].as_i64().expect("a numeric cacheId")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn kill_hard(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Spawns `command` with no stdin and its output in the file `log`; killed when dropped.
fn spawn_logged(command: &mut Command, log: &Path) -> Child {
    let log_file = std::fs::File::create(log).expect("create the server log");
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("clone the log handle"))
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"))
}

/// A grant of `token` for `owner/app` on `main`, for an hour.
fn main_grant(token: &str) -> act_runner::cache::Grant {
    crate::cache::grant_for(token, "owner/app", "refs/heads/main")
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default()
}

fn client_section(server: &CacheServer) -> String {
    format!(
        "cache:\n  external_server: {}\n  external_secret: {SECRET}\n",
        server.url()
    )
}

#[tokio::test]
async fn two_daemons_share_one_cache_server() {
    super::fixture::require_node();
    bounded(async {
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let server = CacheServer::start(scratch.path(), free_port()).await;
        let gitea_a = start_fake().await;
        let gitea_b = start_fake().await;
        let dir_a = RunnerDir::register(&gitea_a, "host-test:host", &client_section(&server)).await;
        let dir_b = RunnerDir::register(&gitea_b, "host-test:host", &client_section(&server)).await;
        let daemon_a = Daemon::start(&dir_a, &[]).await;
        let daemon_b = Daemon::start(&dir_b, &[]).await;
        let jobs_a = Jobs::new(&gitea_a, &daemon_a, "host-test");
        let jobs_b = Jobs::new(&gitea_b, &daemon_b, "host-test");
        jobs_a.save("fleet-v1", MAIN).await;
        let (found, lines) = jobs_b.restore("fleet-v1", "", MAIN).await;
        assert!(
            found.hit && found.restored,
            "{lines:#?}\nserver log:\n{}",
            server.log()
        );
        assert_eq!(found.content.as_deref(), Some("cached bytes for fleet-v1"));
        daemon_a.stop().await;
        daemon_b.stop().await;
        server.kill_hard().await;
    })
    .await;
}

#[tokio::test]
async fn kill_9_of_the_cache_server_mid_upload_leaves_no_entry() {
    use act_runner::cache::{RemoteGrants, TaskGrants as _};
    use act_runner::config::Secret;

    bounded(async {
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let port = free_port();
        let server = CacheServer::start(scratch.path(), port).await;
        let grants =
            RemoteGrants::new(&server.url(), Secret::new(SECRET)).expect("a control-plane client");
        let token = "kill-9-task-token";
        let grant = || main_grant(token);
        grants.grant(grant()).await.expect("grant the token");
        let http = reqwest::Client::new();
        let api = format!("{}_apis/artifactcache/", server.url());
        let id = server.reserve(&http, token, "half", 2048).await;
        http.patch(format!("{api}caches/{id}"))
            .bearer_auth(token)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", "bytes 0-1023/*")
            .body(vec![7u8; 1024])
            .send()
            .await
            .expect("upload a chunk")
            .error_for_status()
            .expect("the chunk is accepted");
        server.kill_hard().await;

        let server = CacheServer::start(scratch.path(), port).await;
        grants.grant(grant()).await.expect("grant the token again");
        let lookup = http
            .get(format!("{api}cache?keys=half&version=v1"))
            .bearer_auth(token)
            .send()
            .await
            .expect("look up");
        assert_eq!(
            lookup.status(),
            204,
            "a half upload became an entry:\n{}",
            server.log()
        );
        let store = scratch.path().join("store");
        server.kill_hard().await;
        let config = scratch.path().join("cache-server.yaml");
        let output = Command::new(env!("CARGO_BIN_EXE_act_runner"))
            .arg("-c")
            .arg(&config)
            .args(["cache", "list", "--dir"])
            .arg(&store)
            .output()
            .await
            .expect("cache list runs");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!text.contains("half"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_socket_activated_cache_server_takes_the_secret_credential_and_serves_metrics() {
    use act_runner::cache::{RemoteGrants, TaskGrants as _};
    use act_runner::config::Secret;

    if !crate::systemd::require_tool("systemd-socket-activate") {
        return;
    }
    bounded(async {
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let (port, metrics_port) = (free_port(), free_port());
        // No secret in the configuration: it comes from $CREDENTIALS_DIRECTORY/cache-secret, as
        // LoadCredential=cache-secret:... in act-runner-cache.service provides it.
        let config = scratch.path().join("cache-server.yaml");
        std::fs::write(
            &config,
            format!(
                "cache:\n  host: 127.0.0.1\nmetrics:\n  enabled: true\n  addr: 127.0.0.1:{metrics_port}\n"
            ),
        )
        .expect("write the server's config");
        let credentials = scratch.path().join("credentials");
        std::fs::create_dir(&credentials).expect("create the credentials directory");
        std::fs::write(credentials.join("cache-secret"), format!("{SECRET}\n"))
            .expect("write the credential");
        let log = scratch.path().join("server.log");
        let mut activator = spawn_logged(
            Command::new("systemd-socket-activate")
                .arg("-l")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--fdname=cache")
                .arg("-E")
                .arg(format!("CREDENTIALS_DIRECTORY={}", credentials.display()))
                .args(["-E", "PATH", "-E", "HOME"])
                .arg(env!("CARGO_BIN_EXE_act_runner"))
                .arg("-c")
                .arg(&config)
                .arg("cache-server")
                .arg("--dir")
                .arg(scratch.path().join("store")),
            &log,
        );
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        // A connection before the activator listens is refused, not queued.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !read_log().contains(&format!("Listening on 127.0.0.1:{port}")) {
            assert!(tokio::time::Instant::now() < deadline, "the activator never listened:\n{}", read_log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // The first connection starts the server (systemd-socket-activate execs it then).
        let url = format!("http://127.0.0.1:{port}/");
        let grants = RemoteGrants::new(&url, Secret::new(SECRET)).expect("a control-plane client");
        let token = "activated-task-token";
        grants
            .grant(main_grant(token))
            .await
            .unwrap_or_else(|err| panic!("the credential's secret is refused: {err}\n{}", read_log()));
        let lookup = reqwest::Client::new()
            .get(format!("{url}_apis/artifactcache/cache?keys=k&version=v"))
            .bearer_auth(token)
            .send()
            .await
            .expect("look up");
        assert_eq!(lookup.status(), 204, "{}", read_log());
        let wrong = RemoteGrants::new(&url, Secret::new("not-the-shared-secret"))
            .expect("a control-plane client");
        assert!(
            wrong
                .revoke(&Secret::new(token))
                .await
                .is_err_and(|err| err.to_string().contains("401")),
            "another secret reached the grant endpoints"
        );

        let metrics = super::scrape(metrics_port).await;
        for sample in [
            "act_runner_cache_requests_total{op=\"grant\",result=\"ok\"} 1",
            "act_runner_cache_requests_total{op=\"grant\",result=\"denied\"} 1",
            "act_runner_cache_requests_total{op=\"lookup\",result=\"miss\"} 1",
            "act_runner_cache_entries 0",
        ] {
            assert!(metrics.lines().any(|line| line == sample), "{sample} missing:\n{metrics}");
        }

        // SIGHUP (a habit of `systemctl reload` users) leaves the server serving.
        let pid = nix::unistd::Pid::from_raw(activator.id().expect("the server's pid") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP the server");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(super::scrape(metrics_port).await.contains("act_runner_cache_entries 0"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM the server");
        let status = tokio::time::timeout(Duration::from_secs(30), activator.wait())
            .await
            .expect("the server stops on SIGTERM")
            .expect("its exit status");
        let text = read_log();
        assert!(status.success(), "{status}: {text}");
        assert!(
            text.contains("cache server is listening") && text.contains(&format!(":{port}/")),
            "{text}"
        );
        assert!(!text.contains(SECRET) && !text.contains(token), "{text}");
        assert!(text.contains("SIGHUP received"), "{text}");
    })
    .await;
}
