//! The fake Gitea as a process, for humans and for system tests that run the runner out of
//! process (systemd, nspawn):
//!
//! ```text
//! cargo run --example fake-gitea -- --listen 127.0.0.1:3000 --registration-token T \
//!     --enqueue .gitea/workflows/ci.yaml --labels ubuntu-latest
//! ```
//!
//! It prints the Connect and gRPC instance URLs and the ids of the enqueued tasks, then serves
//! until interrupted. The admin API on the Connect port (`/_fake/...`, documented in
//! `tests/support/fake_gitea/admin.rs`) enqueues more tasks and reads back state and logs as JSON:
//!
//! ```text
//! curl -X POST --data-binary @ci.yaml 'http://127.0.0.1:3000/_fake/tasks?labels=ubuntu-latest'
//! curl http://127.0.0.1:3000/_fake/tasks/1
//! ```

#[path = "fake_gitea/mod.rs"]
mod fake_gitea;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use fake_gitea::{AuthMode, FakeGitea, FakeOptions, LogFinalize, TaskSpec};

/// A fake Gitea Actions server (Connect and gRPC) with an admin API, for testing act_runner.
#[derive(Debug, Parser)]
struct Args {
    /// Address of the Connect (HTTP/1.1) server and the admin API.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Address of the gRPC (h2c) server; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    grpc_listen: SocketAddr,
    /// A registration token the server accepts (repeatable).
    #[arg(long = "registration-token")]
    registration_tokens: Vec<String>,
    /// A workflow file with one job to enqueue at start (repeatable).
    #[arg(long)]
    enqueue: Vec<PathBuf>,
    /// Replace the enqueued jobs' `runs-on` with these labels (comma-separated).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Answer unregistered runners with a real 401 `unauthenticated` instead of Gitea's 500.
    #[arg(long)]
    modern_auth: bool,
    /// Archive logs on an empty `no_more` UpdateLog, as Gitea main does (default: Gitea 1.25).
    #[arg(long)]
    gitea_main_logs: bool,
    /// Seed of the fault-injection draws.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let options = FakeOptions {
        registration_tokens: args.registration_tokens.clone(),
        auth_mode: if args.modern_auth {
            AuthMode::Modern
        } else {
            AuthMode::Legacy
        },
        log_finalize: if args.gitea_main_logs {
            LogFinalize::GiteaMain
        } else {
            LogFinalize::Gitea125
        },
        seed: args.seed,
        admin_api: true,
        connect_addr: args.listen,
        grpc_addr: args.grpc_listen,
        ..FakeOptions::default()
    };
    let gitea = FakeGitea::start(options).await?;
    println!("connect: {}", gitea.connect_url());
    println!("grpc: {}", gitea.grpc_url());
    println!("admin: {}/_fake/tasks", gitea.connect_url());
    for path in &args.enqueue {
        let yaml = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let mut spec = TaskSpec::from_workflow(&yaml)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        if !args.labels.is_empty() {
            spec.runs_on = args.labels.clone();
        }
        let task_id = gitea.enqueue_task(spec);
        println!("enqueued: {} task_id={task_id}", path.display());
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
