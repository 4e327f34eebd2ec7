//! Fuzz target for the daemon's way from a fetched task to a job (issue 22): whatever the task,
//! the poller admits it, `daemon::execution` turns it into a job (or refuses it), the reporter
//! reports its end, and then its admission slot is free again and its spool is gone. A task that
//! kept its slot would wedge a runner for good, so a slot still held after `RELEASE_WITHIN` fails
//! the run, as does a panic anywhere on the way.
//!
//! The first byte picks what the rest is: even, the workflow payload of a task with an ordinary
//! context (the YAML the server sends); odd, a whole `Task` message as protobuf (context, secrets,
//! needs, payload: everything the server controls). Jobs that convert run on a Docker label while
//! the runner has no Docker, so they end in the backend choice's refusal and nothing of the input
//! is ever executed on the fuzzing machine.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use act_runner::client::proto::ping::{PingRequest, PingResponse};
use act_runner::client::proto::runner::{
    DeclareRequest, FetchTaskRequest, FetchTaskResponse, RegisterRequest, RegisterResponse, Task,
    UpdateLogResponse, UpdateTaskRequest, UpdateTaskResponse,
};
use act_runner::client::{ClientError, Declared, EncodedUpdateLog, Method, RunnerApi};
use act_runner::config::{Config, Label, LoadEnv, Platform};
use act_runner::daemon::execution::{Execution, ExecutionConfig};
use act_runner::daemon::observe::NoObserver;
use act_runner::daemon::poller::{Admission, PollEnd, PollMode, Poller, PollerSettings};
use act_runner::daemon::spool::SpoolRoot;
use act_runner::daemon::task::RunnerContext;
use act_runner::executor::backend::job_processes::ProcessScope;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a task may take from admission to a free slot. Nothing runs, so it takes
/// milliseconds; libFuzzer's own `-timeout` (10 s in the CI step) is the backstop.
const RELEASE_WITHIN: Duration = Duration::from_secs(5);

/// A server that hands out one task and acknowledges everything reported for it.
#[derive(Default)]
struct OneTaskServer {
    task: Mutex<Option<Task>>,
    /// Rows acknowledged so far.
    rows: Mutex<i64>,
    /// The result of the final UpdateTask (0 until one arrived).
    final_result: Mutex<i32>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn not_served(method: Method) -> ClientError {
    ClientError::Unavailable {
        method,
        url: String::new(),
        message: "not served by the fuzz target".into(),
    }
}

impl RunnerApi for OneTaskServer {
    async fn ping(&self, _: PingRequest) -> Result<PingResponse, ClientError> {
        Err(not_served(Method::Ping))
    }
    async fn register(&self, _: RegisterRequest) -> Result<RegisterResponse, ClientError> {
        Err(not_served(Method::Register))
    }
    async fn declare(&self, _: DeclareRequest) -> Result<Declared, ClientError> {
        Err(not_served(Method::Declare))
    }
    async fn fetch_task(&self, _: FetchTaskRequest) -> Result<FetchTaskResponse, ClientError> {
        Ok(FetchTaskResponse {
            task: lock(&self.task).take(),
            tasks_version: 1,
        })
    }
    async fn update_task(
        &self,
        request: UpdateTaskRequest,
    ) -> Result<UpdateTaskResponse, ClientError> {
        let state = request.state.unwrap_or_default();
        if state.result != 0 {
            *lock(&self.final_result) = state.result;
        }
        Ok(UpdateTaskResponse {
            state: Some(state),
            sent_outputs: request.outputs.into_keys().collect(),
        })
    }
    async fn update_log(
        &self,
        request: EncodedUpdateLog,
    ) -> Result<UpdateLogResponse, ClientError> {
        let mut rows = lock(&self.rows);
        let end = request.index().saturating_add(request.n_rows() as i64);
        if request.index() <= *rows {
            *rows = (*rows).max(end);
        }
        Ok(UpdateLogResponse { ack_index: *rows })
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    /// The runner's state directory; its `spool/` must be empty after every task.
    state_dir: std::path::PathBuf,
    config: ExecutionConfig,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("tokio runtime: {error}"));
        let state_dir =
            std::env::temp_dir().join(format!("act-runner-fuzz-task-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir)
            .unwrap_or_else(|error| panic!("{}: {error}", state_dir.display()));
        let env = LoadEnv::with_home(&state_dir);
        let mut config = Config::defaults(&env);
        config.host.workdir_parent = state_dir.join("work");
        config.runner.capacity = 1;
        let label = Label::parse("fuzz:docker://act-runner-fuzz/none:0")
            .unwrap_or_else(|error| panic!("label: {error}"));
        let config = ExecutionConfig {
            runner: RunnerContext {
                name: "fuzz".into(),
                uuid: "00000000-0000-0000-0000-000000000000".into(),
                address: "http://gitea.invalid".into(),
                envs: Default::default(),
                timeout: config.runner.timeout,
                server_capabilities: String::new(),
                github_mirror: None,
            },
            labels: vec![label],
            fallback: Platform::Docker {
                image: "act-runner-fuzz/none:0".into(),
            },
            ephemeral: false,
            cache: None,
            host_scope: ProcessScope::private(),
            config: Arc::new(config),
        };
        Fixture {
            runtime,
            state_dir,
            config,
        }
    })
}

fn text(value: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(value.into())),
    }
}

/// A task as Gitea sends one, around `payload`.
fn task_with_payload(payload: &[u8]) -> Task {
    let fields: BTreeMap<String, prost_types::Value> = [
        ("repository", text("owner/repo")),
        ("workflow", text("ci.yml")),
        ("event_name", text("push")),
        ("run_id", text("1")),
        ("token", text("task-token")),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    Task {
        id: 7,
        workflow_payload: Some(payload.to_vec()),
        context: Some(prost_types::Struct { fields }),
        secrets: [("SECRET".to_owned(), "hunter2".to_owned())].into(),
        ..Task::default()
    }
}

async fn admit_and_run(task: Task, fixture: &Fixture) {
    let server = Arc::new(OneTaskServer::default());
    *lock(&server.task) = Some(task);
    let admission = Admission::new(1);
    let execution = Arc::new(Execution::new(
        Arc::clone(&server),
        SpoolRoot::new(&fixture.state_dir),
        fixture.config.clone(),
        None,
        Arc::new(NoObserver),
        admission.clone(),
        CancellationToken::new(),
    ));
    let (_settings_tx, settings) = watch::channel(PollerSettings {
        capacity: 1,
        fetch_timeout: Duration::from_secs(5),
        fetch_interval: Duration::from_millis(1),
        fetch_interval_max: Duration::from_millis(1),
    });
    let poller = Poller::new(
        Arc::clone(&server),
        execution,
        settings,
        admission.clone(),
        Arc::new(NoObserver),
    );
    let jobs = TaskTracker::new();
    let end = poller
        .run(
            PollMode::Once,
            CancellationToken::new(),
            CancellationToken::new(),
            &jobs,
        )
        .await;
    assert_eq!(end, PollEnd::OnceAdmitted);
    jobs.close();
    if tokio::time::timeout(RELEASE_WITHIN, jobs.wait())
        .await
        .is_err()
    {
        panic!(
            "the task still holds its slot {RELEASE_WITHIN:?} after admission ({} running)",
            admission.running()
        );
    }
    assert_eq!(admission.running(), 0, "the slot was not given back");
    assert_ne!(
        *lock(&server.final_result),
        0,
        "the task ended without a final result reported"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let task = if mode % 2 == 0 {
        task_with_payload(rest)
    } else {
        match Task::decode(rest) {
            Ok(task) => task,
            // The client refuses such a reply; no task is admitted.
            Err(_) => return,
        }
    };
    let fixture = fixture();
    fixture.runtime.block_on(admit_and_run(task, fixture));
    let left: Vec<_> = std::fs::read_dir(fixture.state_dir.join("spool"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "spool entries left after the task: {left:?}"
    );
});
