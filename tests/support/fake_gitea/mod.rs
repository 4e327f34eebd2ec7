//! A faithful fake Gitea for tests (spec/protocol.md §7): the tonic-generated `RunnerService`
//! and `PingService` implemented once on shared state, served over Connect (HTTP/1.1, axum) and
//! over gRPC (h2c, tonic), with Gitea's semantics and fault injection per RPC.
//!
//! # Use
//! ```ignore
//! use crate::support::fake_gitea::{FakeGitea, FakeOptions, TaskSpec, Faults};
//!
//! let gitea = FakeGitea::start(FakeOptions::default()).await?;
//! gitea.add_registration_token("REG");
//! // point the runner at gitea.connect_url() (Connect) or gitea.grpc_url() (runner.protocol: grpc)
//! let task_id = gitea.enqueue_task(TaskSpec::from_workflow(YAML)?.with_secret("S", "v"));
//! let done = gitea.wait_task_final(task_id, Duration::from_secs(30)).await;   // Option<TaskSnapshot>
//! assert_eq!(gitea.task_logs(task_id).len(), 7);                              // rows in index order
//! ```
//!
//! # API
//! - [`FakeGitea::start`]`(FakeOptions) -> io::Result<FakeGitea>`: binds 127.0.0.1 ports; dropping
//!   the handle stops both servers. [`FakeOptions`]: `registration_tokens`, `auth_mode`
//!   ([`AuthMode::Legacy`] = HTTP 500 `rpc error: code = Unauthenticated desc = unregistered
//!   runner`, default; `Modern` = 401 `unauthenticated`), `log_finalize` ([`LogFinalize::Gitea125`]
//!   default, or `GiteaMain`), `cancel_mode` ([`CancelMode::Immediate`] = G-1.25, default;
//!   `Cancelling` = G-main for runners that declared the `cancelling` capability), `seed` (fault draws), `gzip_min_bytes` (`Some(1024)` as Gitea),
//!   `prefix` (`/api/actions`), `admin_api` (the `/_fake/*` JSON routes), `connect_addr`, `grpc_addr`.
//! - URLs: [`FakeGitea::connect_url`], [`FakeGitea::grpc_url`] are instance URLs (the client appends
//!   `/api/actions`).
//! - Registration: [`FakeGitea::add_registration_token`]; [`FakeGitea::register_runner`] registers
//!   without an RPC and returns `(uuid, token)`, for tests that start from a `.runner` file.
//! - Tasks: [`FakeGitea::enqueue_task`]`(TaskSpec) -> task_id` (bumps tasks_version; matched by
//!   label containment; FIFO), [`FakeGitea::task_state`] (a [`TaskSnapshot`]: status, result,
//!   runner, steps, stopped_at, final state), [`FakeGitea::task_logs`] (every accepted row, in index
//!   order: exactly-once in-order delivery is `task_logs == expected`), [`FakeGitea::task_outputs`]
//!   (first write wins), [`FakeGitea::log_archived`], [`FakeGitea::wait_task_final`] and
//!   [`FakeGitea::wait_until`] (bounded polling).
//! - Server-side events: [`FakeGitea::cancel_task`] (the next UpdateTask answers CANCELLED),
//!   [`FakeGitea::reap_task`] (FAILURE, log archived); switches [`FakeGitea::set_auth_mode`],
//!   [`FakeGitea::set_log_finalize`], [`FakeGitea::set_cancel_mode`],
//!   [`FakeGitea::set_declare_unimplemented`] (Gitea < 1.21),
//!   [`FakeGitea::set_declare_capabilities`] (G-main's `X-Gitea-Actions-Capabilities` header).
//! - Runners: [`FakeGitea::runners`] ([`RunnerSnapshot`]: labels, version, capabilities,
//!   ephemeral, deleted, last_online/last_active).
//! - Faults: [`FakeGitea::set_faults`]`(Method, Faults)` (seeded `error_rate` answered with an
//!   [`InjectedError`]: 503 `unavailable`, Gitea's 500 `Internal`, or a proxy's non-JSON 429/502/504;
//!   `latency`; `timeout_rate` = never answered; `drop_rate` = connection closed without an
//!   answer), [`FakeGitea::outage`]`(from_now, duration)` (every RPC 503/UNAVAILABLE in the
//!   window), [`FakeGitea::clear_faults`].
//! - Counters: [`FakeGitea::rpc_count`]`(Method)` (every request that named the RPC, faulted or
//!   not), [`FakeGitea::gzipped_responses`], [`FakeGitea::dropped_connections`],
//!   [`FakeGitea::last_request_headers`]`(Method)`.
//!
//! - Jobs' side ([`results`]): the artifact v4 service and the step summary endpoint;
//!   [`FakeGitea::step_summaries`], [`FakeGitea::artifacts`], [`FakeGitea::set_summaries_hang`];
//!   the `job-summary` capability is [`FakeGitea::set_declare_capabilities`]. Tasks of one run:
//!   [`TaskSpec::with_run_id`].
//!
//! Out of process: `cargo run --example fake-gitea -- --help` serves this with an admin API
//! (`tests/support/fake_gitea/admin.rs` lists its routes).

// Each test module and the example use a different part of this API.
#![allow(dead_code, unused_imports)]

mod admin;
mod connect;
mod faults;
pub mod git_http;
pub mod results;
mod row_log;
mod serve;
mod service;
mod state;
mod task_gen;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use act_runner::client::Method;
use act_runner::client::proto::ping::ping_service_server::PingServiceServer;
use act_runner::client::proto::runner::runner_service_server::RunnerServiceServer;
use act_runner::client::proto::runner::{LogRow, Result as TaskResult, StepState, TaskState};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower::util::BoxCloneService;

pub use faults::{Faults, InjectedError};
pub use state::{AuthMode, CancelMode, LogFinalize, TaskStatus};
pub use task_gen::TaskSpec;

use serve::Wire;
use service::FakeService;
use state::State;

/// How to start a [`FakeGitea`].
#[derive(Debug, Clone)]
pub struct FakeOptions {
    pub registration_tokens: Vec<String>,
    pub auth_mode: AuthMode,
    pub log_finalize: LogFinalize,
    pub cancel_mode: CancelMode,
    /// Seed of the fault-injection draws.
    pub seed: u64,
    /// Gzip Connect replies at least this long when the client accepts gzip (`None`: never).
    pub gzip_min_bytes: Option<usize>,
    /// Where the routes are mounted.
    pub prefix: String,
    /// Serve the `/_fake/*` admin routes on the Connect port.
    pub admin_api: bool,
    pub connect_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// Serve the bare repositories under this directory as `/<owner>/<repo>` over git smart
    /// HTTP on the Connect port, to the token of a running task only (Gitea's rule for private
    /// repositories).
    pub git_root: Option<std::path::PathBuf>,
}

impl Default for FakeOptions {
    fn default() -> FakeOptions {
        FakeOptions {
            registration_tokens: Vec::new(),
            auth_mode: AuthMode::Legacy,
            log_finalize: LogFinalize::Gitea125,
            cancel_mode: CancelMode::Immediate,
            seed: 7,
            gzip_min_bytes: Some(1024),
            prefix: "/api/actions".to_owned(),
            admin_api: false,
            connect_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            git_root: None,
        }
    }
}

/// State shared by both servers and the handle.
pub struct Shared {
    state: Mutex<State>,
    options: FakeOptions,
    faults: faults::FaultTable,
    counters: Mutex<BTreeMap<Method, u64>>,
    gzipped_responses: AtomicU64,
    dropped_connections: AtomicU64,
    /// The headers of the latest request per RPC (tokens included: tests check them).
    last_headers: Mutex<BTreeMap<Method, http::HeaderMap>>,
    /// Artifacts and step summaries ([`results`]).
    results: Mutex<results::ResultsState>,
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge the fake for the others.
        act_runner::sync::lock(&self.state)
    }

    fn lock_results(&self) -> MutexGuard<'_, results::ResultsState> {
        act_runner::sync::lock(&self.results)
    }

    fn record(&self, method: Method, headers: &http::HeaderMap) {
        act_runner::sync::lock(&self.last_headers).insert(method, headers.clone());
        let mut counters = act_runner::sync::lock(&self.counters);
        *counters.entry(method).or_default() += 1;
    }
}

/// A task as the server sees it.
#[derive(Debug, Clone)]
pub struct TaskSnapshot {
    pub id: i64,
    pub status: TaskStatus,
    /// What UpdateTask would answer now.
    pub result: TaskResult,
    pub runner_id: Option<i64>,
    pub steps: Vec<StepState>,
    pub stopped_at: Option<prost_types::Timestamp>,
    /// The TaskState of the UpdateTask that made the task final.
    pub final_state: Option<TaskState>,
    pub log_archived: bool,
    pub n_log_rows: usize,
}

/// A registered runner as the server sees it (no token).
#[derive(Debug, Clone)]
pub struct RunnerSnapshot {
    pub id: i64,
    pub uuid: String,
    pub name: String,
    pub version: String,
    pub labels: Vec<String>,
    pub capabilities: Vec<String>,
    pub ephemeral: bool,
    pub deleted: bool,
    pub last_online: Option<Instant>,
    pub last_active: Option<Instant>,
}

/// A running fake Gitea; dropping it stops the servers.
pub struct FakeGitea {
    shared: Arc<Shared>,
    connect_addr: SocketAddr,
    grpc_addr: SocketAddr,
    shutdown: CancellationToken,
    /// The git server of `FakeOptions::git_root`.
    git: Option<git_http::GitHttp>,
}

impl Drop for FakeGitea {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl FakeGitea {
    pub async fn start(options: FakeOptions) -> std::io::Result<FakeGitea> {
        let connect_listener = TcpListener::bind(options.connect_addr).await?;
        let grpc_listener = TcpListener::bind(options.grpc_addr).await?;
        let connect_addr = connect_listener.local_addr()?;
        let grpc_addr = grpc_listener.local_addr()?;
        let mut state = State::new(options.auth_mode, options.log_finalize);
        state.registration_tokens = options.registration_tokens.iter().cloned().collect();
        state.cancel_mode = options.cancel_mode;
        state.server_url = format!("http://{connect_addr}/");
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            faults: faults::FaultTable::new(options.seed),
            options,
            counters: Mutex::new(BTreeMap::new()),
            gzipped_responses: AtomicU64::new(0),
            dropped_connections: AtomicU64::new(0),
            last_headers: Mutex::new(BTreeMap::new()),
            results: Mutex::new(results::ResultsState::default()),
        });
        let service = FakeService {
            shared: shared.clone(),
        };
        let shutdown = CancellationToken::new();

        let mut connect_router =
            results::router(shared.clone()).merge(connect::router(service.clone()));
        if shared.options.admin_api {
            connect_router = connect_router.merge(admin::router(shared.clone()));
        }
        let git = shared.options.git_root.as_deref().map(|root| {
            let state = shared.clone();
            let running_task_token: git_http::TokenCheck =
                Arc::new(move |token: &str| {
                    state.lock_state().tasks.values().any(|task| {
                        task.status == state::TaskStatus::Running && task.token == token
                    })
                });
            git_http::GitHttp::new(root, Some(running_task_token))
        });
        if let Some(git) = &git {
            connect_router = connect_router.merge(git.router());
        }
        let connect_app: serve::App = BoxCloneService::new(connect_router);
        let grpc_routes = tonic::service::Routes::new(RunnerServiceServer::new(service.clone()))
            .add_service(PingServiceServer::new(service))
            .prepare();
        let grpc_app: serve::App = BoxCloneService::new(ServiceExt::<
            http::Request<hyper::body::Incoming>,
        >::map_response(
            grpc_routes,
            |response: http::Response<tonic::body::Body>| response.map(axum::body::Body::new),
        ));
        tokio::spawn(serve::accept_loop(
            connect_listener,
            Wire::Connect,
            connect_app,
            shared.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(serve::accept_loop(
            grpc_listener,
            Wire::Grpc,
            grpc_app,
            shared.clone(),
            shutdown.clone(),
        ));
        Ok(FakeGitea {
            shared,
            connect_addr,
            grpc_addr,
            shutdown,
            git,
        })
    }

    /// The instance URL for the Connect transport (`http://127.0.0.1:PORT`).
    pub fn connect_url(&self) -> String {
        format!("http://{}", self.connect_addr)
    }

    /// The instance URL for the gRPC transport (h2c).
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The git requests served so far (path and `Authorization` header), with `git_root`.
    pub fn git_requests(&self) -> Vec<(String, String)> {
        self.git
            .as_ref()
            .map(git_http::GitHttp::requests)
            .unwrap_or_default()
    }

    pub fn connect_addr(&self) -> SocketAddr {
        self.connect_addr
    }

    pub fn add_registration_token(&self, token: &str) {
        self.shared
            .lock_state()
            .registration_tokens
            .insert(token.to_owned());
    }

    /// Registers a runner directly (no RPC); returns `(uuid, token)`.
    pub fn register_runner(
        &self,
        name: &str,
        labels: &[&str],
        ephemeral: bool,
    ) -> (String, String) {
        let mut state = self.shared.lock_state();
        let token = format!("direct-registration-{name}");
        state.registration_tokens.insert(token.clone());
        let labels = labels.iter().map(|label| (*label).to_owned()).collect();
        match state.register(name, &token, "test", labels, ephemeral, Vec::new()) {
            Ok(runner) => (runner.uuid, runner.token),
            Err(error) => panic!("fake registration failed: {error:?}"),
        }
    }

    pub fn set_auth_mode(&self, auth_mode: AuthMode) {
        self.shared.lock_state().auth_mode = auth_mode;
    }

    pub fn set_log_finalize(&self, log_finalize: LogFinalize) {
        self.shared.lock_state().log_finalize = log_finalize;
    }

    pub fn set_cancel_mode(&self, cancel_mode: CancelMode) {
        self.shared.lock_state().cancel_mode = cancel_mode;
    }

    /// Declare answers `unimplemented`, as Gitea < 1.21 does.
    pub fn set_declare_unimplemented(&self, unimplemented: bool) {
        self.shared.lock_state().declare_unimplemented = unimplemented;
    }

    /// Declare answers with `X-Gitea-Actions-Capabilities: <capabilities>`, as G-main does.
    pub fn set_declare_capabilities(&self, capabilities: Option<&str>) {
        self.shared.lock_state().declare_capabilities = capabilities.map(str::to_owned);
    }

    pub fn enqueue_task(&self, spec: TaskSpec) -> i64 {
        self.shared.lock_state().enqueue(spec)
    }

    /// The task's token (`GITEA_TOKEN`), for tests that check where it went.
    pub fn task_token(&self, task_id: i64) -> Option<String> {
        self.shared
            .lock_state()
            .tasks
            .get(&task_id)
            .map(|task| task.token.clone())
    }

    pub fn tasks_version(&self) -> i64 {
        self.shared.lock_state().tasks_version
    }

    pub fn task_state(&self, task_id: i64) -> Option<TaskSnapshot> {
        let state = self.shared.lock_state();
        let task = state.tasks.get(&task_id)?;
        Some(TaskSnapshot {
            id: task.id,
            status: task.status,
            result: task.status.as_result(),
            runner_id: task.runner_id,
            steps: task.steps.clone(),
            stopped_at: task.stopped_at,
            final_state: task.final_state.clone(),
            log_archived: task.log_archived,
            n_log_rows: task.log.len(),
        })
    }

    /// Every row the server accepted, in index order.
    pub fn task_logs(&self, task_id: i64) -> Vec<LogRow> {
        let state = self.shared.lock_state();
        state
            .tasks
            .get(&task_id)
            .map(|task| task.log.rows().collect())
            .unwrap_or_default()
    }

    /// Each UpdateLog that added rows: the log's length after it, and when.
    pub fn task_log_writes(&self, task_id: i64) -> Vec<(usize, std::time::SystemTime)> {
        let state = self.shared.lock_state();
        state
            .tasks
            .get(&task_id)
            .map(|task| task.log_writes.clone())
            .unwrap_or_default()
    }

    /// The row contents only, for easy comparison.
    pub fn task_log_lines(&self, task_id: i64) -> Vec<String> {
        self.task_logs(task_id)
            .into_iter()
            .map(|row| row.content)
            .collect()
    }

    pub fn log_archived(&self, task_id: i64) -> bool {
        self.task_state(task_id)
            .is_some_and(|task| task.log_archived)
    }

    pub fn task_outputs(&self, task_id: i64) -> Vec<(String, String)> {
        let state = self.shared.lock_state();
        state
            .tasks
            .get(&task_id)
            .map(|task| task.outputs.clone().into_iter().collect())
            .unwrap_or_default()
    }

    /// The user cancels: the next UpdateTask answers CANCELLED. False if already final.
    pub fn cancel_task(&self, task_id: i64) -> bool {
        self.shared
            .lock_state()
            .cancel_task(task_id, now_timestamp())
    }

    /// The reaper fails a running task (FAILURE) and archives its log.
    pub fn reap_task(&self, task_id: i64) -> bool {
        self.shared.lock_state().reap_task(task_id, now_timestamp())
    }

    pub fn runners(&self) -> Vec<RunnerSnapshot> {
        let state = self.shared.lock_state();
        state
            .runners
            .iter()
            .map(|runner| RunnerSnapshot {
                id: runner.id,
                uuid: runner.uuid.clone(),
                name: runner.name.clone(),
                version: runner.version.clone(),
                labels: runner.labels.clone(),
                capabilities: runner.capabilities.clone(),
                ephemeral: runner.ephemeral,
                deleted: runner.deleted,
                last_online: runner.last_online,
                last_active: runner.last_active,
            })
            .collect()
    }

    pub fn set_faults(&self, method: Method, faults: Faults) {
        self.shared.faults.set(method, faults);
    }

    /// Every RPC fails (503 / UNAVAILABLE) from `from_now` for `duration`.
    pub fn outage(&self, from_now: Duration, duration: Duration) {
        let from = Instant::now() + from_now;
        self.shared.faults.outage(from, from + duration);
    }

    /// Removes every fault and the outage window.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    pub fn rpc_count(&self, method: Method) -> u64 {
        let counters = act_runner::sync::lock(&self.shared.counters);
        counters.get(&method).copied().unwrap_or_default()
    }

    /// The headers of the latest request that named `method`.
    pub fn last_request_headers(&self, method: Method) -> Option<http::HeaderMap> {
        act_runner::sync::lock(&self.shared.last_headers)
            .get(&method)
            .cloned()
    }

    pub fn gzipped_responses(&self) -> u64 {
        self.shared.gzipped_responses.load(Ordering::Relaxed)
    }

    pub fn dropped_connections(&self) -> u64 {
        self.shared.dropped_connections.load(Ordering::Relaxed)
    }

    /// Polls `condition` every 10 ms until it holds (true) or `limit` passes (false).
    pub async fn wait_until(
        &self,
        limit: Duration,
        mut condition: impl FnMut(&FakeGitea) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The task once it is final, or `None` if it is not within `limit`.
    pub async fn wait_task_final(&self, task_id: i64, limit: Duration) -> Option<TaskSnapshot> {
        let is_final = |gitea: &FakeGitea| {
            gitea
                .task_state(task_id)
                .is_some_and(|task| task.status.is_final())
        };
        if self.wait_until(limit, is_final).await {
            self.task_state(task_id)
        } else {
            None
        }
    }
}

fn now_timestamp() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}
