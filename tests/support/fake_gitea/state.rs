//! Gitea's server semantics on an in-memory state (protocol.md §3, §4): registration tokens,
//! runner authentication and heartbeats, the tasks_version short-circuit, label containment,
//! the task queue, ephemeral runners, UpdateTask and the UpdateLog ack algorithm.
//! Knows nothing of HTTP or gRPC: errors are [`GiteaError`], turned into wire shapes by `service`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::SystemTime;

use act_runner::client::EncodedUpdateLog;
use act_runner::client::proto::runner::{
    FetchTaskResponse, LogRow, Result as TaskResult, Runner, StepState, TaskState,
    UpdateLogResponse, UpdateTaskRequest, UpdateTaskResponse,
};
use indexmap::IndexMap;
use prost::Message;
use prost_types::Timestamp;
use tokio::time::Instant;

use super::row_log::RowLog;
use super::task_gen::{PickContext, TaskSpec, build_task, random_token};

/// How the fake answers "unregistered runner".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Gitea ≤ 1.26 / main at R2: `unknown`, HTTP 500, `rpc error: code = Unauthenticated desc = …`.
    #[default]
    Legacy,
    /// post-R2: a real `unauthenticated`, HTTP 401, `unregistered runner`.
    Modern,
}

/// Which UpdateLog finalize semantics the fake follows (protocol.md §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFinalize {
    /// G-1.25: `no_more` with no new rows is ignored (the log is never archived).
    #[default]
    Gitea125,
    /// G-main: `{rows: [], no_more: true}` with `index <= ack` archives the log.
    GiteaMain,
}

/// What "the user cancels the run" does to a running task (protocol.md §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CancelMode {
    /// G-1.25: the task is final `cancelled` at once; later states are ignored.
    #[default]
    Immediate,
    /// G-main: a runner that declared the `cancelling` capability gets a non-final `cancelling`
    /// task (UpdateTask answers CANCELLED) and reports its own final result, stored as cancelled.
    Cancelling,
}

/// An error as Gitea's handlers make it: a grpc-go status, or a plain Go error.
#[derive(Debug, Clone)]
pub enum GiteaError {
    Grpc { code: tonic::Code, message: String },
    Plain(String),
}

fn internal(message: impl Into<String>) -> GiteaError {
    GiteaError::Grpc {
        code: tonic::Code::Internal,
        message: message.into(),
    }
}

/// A task's status as the server stores it (DB statuses 1–6 of protocol.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Waiting,
    Running,
    /// G-main: cancelled by the user, the runner is still cleaning up.
    Cancelling,
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl TaskStatus {
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            TaskStatus::Waiting | TaskStatus::Running | TaskStatus::Cancelling
        )
    }

    /// `AsResult()`: what UpdateTask answers.
    pub fn as_result(self) -> TaskResult {
        match self {
            TaskStatus::Waiting | TaskStatus::Running => TaskResult::Unspecified,
            TaskStatus::Cancelling => TaskResult::Cancelled,
            TaskStatus::Success => TaskResult::Success,
            TaskStatus::Failure => TaskResult::Failure,
            TaskStatus::Cancelled => TaskResult::Cancelled,
            TaskStatus::Skipped => TaskResult::Skipped,
        }
    }

    fn from_final_result(result: i32) -> TaskStatus {
        match TaskResult::try_from(result) {
            Ok(TaskResult::Success) => TaskStatus::Success,
            Ok(TaskResult::Cancelled) => TaskStatus::Cancelled,
            Ok(TaskResult::Skipped) => TaskStatus::Skipped,
            _ => TaskStatus::Failure,
        }
    }
}

/// A registered runner, as the fake stores it.
#[derive(Debug, Clone)]
pub struct RunnerRecord {
    pub id: i64,
    pub uuid: String,
    pub token: String,
    pub name: String,
    pub version: String,
    pub labels: Vec<String>,
    pub ephemeral: bool,
    pub capabilities: Vec<String>,
    /// Refreshed by every authenticated RPC.
    pub last_online: Option<Instant>,
    /// Refreshed by UpdateTask and UpdateLog.
    pub last_active: Option<Instant>,
    /// Soft-deleted (an ephemeral runner after its task): every RPC is "unregistered runner".
    pub deleted: bool,
    /// The one task an ephemeral runner got.
    pub ephemeral_task: Option<i64>,
}

/// A task (a queued job, then a picked one), as the fake stores it.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: i64,
    pub spec: TaskSpec,
    pub status: TaskStatus,
    pub runner_id: Option<i64>,
    pub token: String,
    pub stopped_at: Option<Timestamp>,
    pub steps: Vec<StepState>,
    /// First write wins, in arrival order.
    pub outputs: IndexMap<String, String>,
    pub log: RowLog,
    /// Each UpdateLog that added rows: the log's length after it, and when (for benchmarks).
    pub log_writes: Vec<(usize, SystemTime)>,
    pub log_archived: bool,
    /// The state of the UpdateTask that made the task final.
    pub final_state: Option<TaskState>,
    /// Bumped by every UpdateTask while running (zombie detection).
    pub updated: Option<Instant>,
}

#[derive(Debug)]
pub struct State {
    pub registration_tokens: HashSet<String>,
    pub runners: Vec<RunnerRecord>,
    pub tasks: BTreeMap<i64, TaskRecord>,
    /// Waiting task ids, oldest first.
    pub queue: VecDeque<i64>,
    pub tasks_version: i64,
    pub auth_mode: AuthMode,
    pub log_finalize: LogFinalize,
    pub cancel_mode: CancelMode,
    /// Answer Declare with `unimplemented`, as Gitea < 1.21 does.
    pub declare_unimplemented: bool,
    /// G-main's `X-Gitea-Actions-Capabilities` answer to Declare (`None`: no header, as 1.25).
    pub declare_capabilities: Option<String>,
    /// ROOT_URL as the tasks' context shows it (with trailing slash).
    pub server_url: String,
    next_runner_id: i64,
    next_task_id: i64,
}

/// Task ids differ between fake Giteas, in one test process and across processes, because the
/// runner names job containers after the task id: two test runs sharing a Docker engine (or two
/// tests in one run) must not fight over `GITEA-ACTIONS-TASK-1_…`.
fn first_task_id() -> i64 {
    static INSTANCES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let instance = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000;
    i64::from(std::process::id()) * 1_000_000 + instance * 1000 + 1
}

const MAX_OUTPUT_KEY: usize = 255;
const MAX_OUTPUT_VALUE: usize = 1024 * 1024;

impl State {
    pub fn new(auth_mode: AuthMode, log_finalize: LogFinalize) -> State {
        State {
            registration_tokens: HashSet::new(),
            runners: Vec::new(),
            tasks: BTreeMap::new(),
            queue: VecDeque::new(),
            tasks_version: 1,
            auth_mode,
            log_finalize,
            cancel_mode: CancelMode::Immediate,
            declare_unimplemented: false,
            declare_capabilities: None,
            server_url: "http://127.0.0.1/".to_owned(),
            next_runner_id: 1,
            next_task_id: first_task_id(),
        }
    }

    pub fn register(
        &mut self,
        name: &str,
        registration_token: &str,
        version: &str,
        labels: Vec<String>,
        ephemeral: bool,
        capabilities: Vec<String>,
    ) -> Result<Runner, GiteaError> {
        if registration_token.is_empty() || name.is_empty() {
            return Err(GiteaError::Plain("missing runner token, name".to_owned()));
        }
        if !self.registration_tokens.contains(registration_token) {
            return Err(GiteaError::Plain(
                "runner registration token not found".to_owned(),
            ));
        }
        let record = RunnerRecord {
            id: self.next_runner_id,
            uuid: uuid::Uuid::new_v4().to_string(),
            token: random_token(),
            name: name.chars().take(255).collect(),
            version: version.to_owned(),
            labels,
            ephemeral,
            capabilities,
            last_online: None,
            last_active: None,
            deleted: false,
            ephemeral_task: None,
        };
        self.next_runner_id += 1;
        let runner = Runner {
            id: record.id,
            uuid: record.uuid.clone(),
            token: record.token.clone(),
            name: record.name.clone(),
            version: record.version.clone(),
            labels: record.labels.clone(),
            ephemeral: record.ephemeral,
            ..Runner::default()
        };
        self.runners.push(record);
        Ok(runner)
    }

    /// The interceptor: the runner id for these headers, heartbeat columns refreshed.
    pub fn authenticate(
        &mut self,
        uuid: Option<&str>,
        token: Option<&str>,
        active: bool,
        now: Instant,
    ) -> Result<i64, GiteaError> {
        let unregistered = GiteaError::Grpc {
            code: tonic::Code::Unauthenticated,
            message: "unregistered runner".to_owned(),
        };
        let (Some(uuid), Some(token)) = (uuid, token) else {
            return Err(unregistered);
        };
        let Some(runner) = self
            .runners
            .iter_mut()
            .find(|runner| runner.uuid == uuid && !runner.deleted)
        else {
            return Err(unregistered);
        };
        if runner.token != token {
            return Err(unregistered);
        }
        runner.last_online = Some(now);
        if active {
            runner.last_active = Some(now);
        }
        Ok(runner.id)
    }

    fn runner_mut(&mut self, runner_id: i64) -> Result<&mut RunnerRecord, GiteaError> {
        self.runners
            .iter_mut()
            .find(|runner| runner.id == runner_id)
            .ok_or_else(|| internal("get runner: not exist"))
    }

    pub fn declare(
        &mut self,
        runner_id: i64,
        version: &str,
        labels: Vec<String>,
        capabilities: Vec<String>,
    ) -> Result<Runner, GiteaError> {
        let runner = self.runner_mut(runner_id)?;
        runner.version = version.to_owned();
        runner.labels = labels;
        runner.capabilities = capabilities;
        // Gitea never loads the token again: Declare answers with an empty one.
        Ok(Runner {
            id: runner.id,
            uuid: runner.uuid.clone(),
            name: runner.name.clone(),
            version: runner.version.clone(),
            labels: runner.labels.clone(),
            ..Runner::default()
        })
    }

    /// Queues a job; bumps the tasks version as creating a run does.
    pub fn enqueue(&mut self, spec: TaskSpec) -> i64 {
        let id = self.next_task_id;
        self.next_task_id += 1;
        self.tasks.insert(
            id,
            TaskRecord {
                id,
                spec,
                status: TaskStatus::Waiting,
                runner_id: None,
                token: random_token(),
                stopped_at: None,
                steps: Vec::new(),
                outputs: IndexMap::new(),
                log: RowLog::default(),
                log_writes: Vec::new(),
                log_archived: false,
                final_state: None,
                updated: None,
            },
        );
        self.queue.push_back(id);
        self.tasks_version += 1;
        id
    }

    pub fn fetch_task(
        &mut self,
        runner_id: i64,
        request_version: i64,
        now: Instant,
    ) -> Result<FetchTaskResponse, GiteaError> {
        let latest = self.tasks_version;
        let no_task = FetchTaskResponse {
            task: None,
            tasks_version: latest,
        };
        if request_version == latest {
            return Ok(no_task);
        }
        let runner = self.runner_mut(runner_id)?.clone();
        if runner.ephemeral
            && let Some(task_id) = runner.ephemeral_task
        {
            let done = self
                .tasks
                .get(&task_id)
                .is_none_or(|task| task.status.is_final());
            if done {
                self.runner_mut(runner_id)?.deleted = true;
                return Err(internal("pick task: runner has been removed"));
            }
            return Ok(no_task);
        }
        let Some(queue_idx) = self.queue.iter().position(|task_id| {
            self.tasks.get(task_id).is_some_and(|task| {
                task.spec
                    .runs_on
                    .iter()
                    .all(|label| runner.labels.contains(label))
            })
        }) else {
            return Ok(no_task);
        };
        let Some(task_id) = self.queue.remove(queue_idx) else {
            return Ok(no_task);
        };
        let server_url = self.server_url.clone();
        let task = self
            .tasks
            .get_mut(&task_id)
            .ok_or_else(|| internal("pick task: task vanished"))?;
        task.status = TaskStatus::Running;
        task.runner_id = Some(runner_id);
        task.updated = Some(now);
        task.steps = (0..task.spec.n_steps as i64)
            .map(|id| StepState {
                id,
                ..StepState::default()
            })
            .collect();
        let message = build_task(
            &task.spec,
            &PickContext {
                task_id,
                task_token: &task.token,
                server_url: &server_url,
            },
        );
        if runner.ephemeral {
            self.runner_mut(runner_id)?.ephemeral_task = Some(task_id);
        }
        Ok(FetchTaskResponse {
            task: Some(message),
            tasks_version: latest,
        })
    }

    pub fn update_task(
        &mut self,
        runner_id: i64,
        request: UpdateTaskRequest,
        now: Instant,
    ) -> Result<UpdateTaskResponse, GiteaError> {
        let Some(state) = request.state else {
            // Gitea dereferences the missing state and its recovery middleware answers 500.
            return Err(GiteaError::Plain(
                "runtime error: invalid memory address or nil pointer dereference".to_owned(),
            ));
        };
        let task = self
            .tasks
            .get_mut(&state.id)
            // Gitea's UpdateTaskByState answers `util.ErrNotExist` ("resource does not exist").
            .ok_or_else(|| internal("update task: resource does not exist"))?;
        if task.runner_id != Some(runner_id) {
            return Err(internal("update task: invalid runner for task"));
        }
        let mut became_final = false;
        if !task.status.is_final() {
            task.updated = Some(now);
            for (step_idx, stored) in task.steps.iter_mut().enumerate() {
                let Some(sent) = state.steps.iter().find(|step| step.id == step_idx as i64) else {
                    continue;
                };
                stored.log_index = sent.log_index;
                stored.log_length = sent.log_length;
                if is_set(&sent.started_at) {
                    stored.started_at = sent.started_at;
                }
                if is_set(&sent.stopped_at) {
                    stored.stopped_at = sent.stopped_at;
                }
                if sent.result != TaskResult::Unspecified as i32 {
                    stored.result = sent.result;
                }
            }
            if state.result != TaskResult::Unspecified as i32 {
                // G-main stores `cancelled` for a cancelling task, "preserving user intent".
                task.status = if task.status == TaskStatus::Cancelling {
                    TaskStatus::Cancelled
                } else {
                    TaskStatus::from_final_result(state.result)
                };
                // A missing stopped_at becomes Unix 0 on Gitea.
                task.stopped_at = Some(state.stopped_at.unwrap_or_default());
                task.final_state = Some(state.clone());
                became_final = true;
            }
        }
        for (key, value) in request.outputs {
            if key.len() > MAX_OUTPUT_KEY || value.len() > MAX_OUTPUT_VALUE {
                continue;
            }
            task.outputs.entry(key).or_insert(value);
        }
        let response = UpdateTaskResponse {
            state: Some(TaskState {
                id: state.id,
                result: task.status.as_result() as i32,
                ..TaskState::default()
            }),
            sent_outputs: task.outputs.keys().cloned().collect(),
        };
        if became_final {
            let runner = self.runner_mut(runner_id)?;
            if runner.ephemeral {
                runner.deleted = true;
            }
        }
        Ok(response)
    }

    /// Rows arrive still encoded, each checked to be a `LogRow` when the request was decoded.
    pub fn update_log(
        &mut self,
        runner_id: i64,
        request: EncodedUpdateLog,
    ) -> Result<UpdateLogResponse, GiteaError> {
        let log_finalize = self.log_finalize;
        let task = self.tasks.get_mut(&request.task_id()).ok_or_else(|| {
            internal(format!(
                "get task: task with id {}: resource does not exist",
                request.task_id()
            ))
        })?;
        if task.runner_id != Some(runner_id) {
            return Err(internal("invalid runner for task"));
        }
        let ack = task.log.len() as i64;
        let (index, no_more) = (request.index(), request.no_more());
        let Some(already_held) = request.rows_already_held(ack) else {
            let n_rows = request.n_rows();
            if log_finalize == LogFinalize::GiteaMain && n_rows == 0 && no_more && index <= ack {
                task.log_archived = true;
            }
            return Ok(UpdateLogResponse { ack_index: ack });
        };
        if task.log_archived {
            return Err(GiteaError::Grpc {
                code: tonic::Code::AlreadyExists,
                message: "log file has been archived".to_owned(),
            });
        }
        task.log.push_request(request, already_held);
        task.log_writes.push((task.log.len(), SystemTime::now()));
        if no_more {
            task.log_archived = true;
        }
        Ok(UpdateLogResponse {
            ack_index: task.log.len() as i64,
        })
    }

    /// The user cancels the run (G-1.25: the task is final `cancelled` at once).
    pub fn cancel_task(&mut self, task_id: i64, stopped_at: Timestamp) -> bool {
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return false;
        };
        if task.status.is_final() || task.status == TaskStatus::Cancelling {
            return false;
        }
        if task.status == TaskStatus::Waiting {
            self.queue.retain(|queued| *queued != task_id);
        }
        let runner_can_cancel = task.runner_id.is_some_and(|runner_id| {
            self.runners.iter().any(|runner| {
                runner.id == runner_id && runner.capabilities.iter().any(|cap| cap == "cancelling")
            })
        });
        if self.cancel_mode == CancelMode::Cancelling
            && task.status == TaskStatus::Running
            && runner_can_cancel
        {
            task.status = TaskStatus::Cancelling;
            return true;
        }
        task.status = TaskStatus::Cancelled;
        task.stopped_at = Some(stopped_at);
        true
    }

    /// The zombie/endless reaper: the task fails and its log is archived.
    pub fn reap_task(&mut self, task_id: i64, stopped_at: Timestamp) -> bool {
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return false;
        };
        task.status = match task.status {
            TaskStatus::Running => TaskStatus::Failure,
            TaskStatus::Cancelling => TaskStatus::Cancelled,
            _ => return false,
        };
        task.stopped_at = Some(stopped_at);
        task.log_archived = true;
        true
    }
}

fn is_set(timestamp: &Option<Timestamp>) -> bool {
    timestamp.is_some_and(|ts| ts.seconds != 0 || ts.nanos != 0)
}
