//! Poller tests under paused time: admission never exceeds capacity, backoff waits, tasks_version.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::client::proto::ping::{PingRequest, PingResponse};
use crate::client::proto::runner::{
    DeclareRequest, FetchTaskResponse, RegisterRequest, RegisterResponse, UpdateLogResponse,
    UpdateTaskRequest, UpdateTaskResponse,
};
use crate::client::{Declared, EncodedUpdateLog, Method};
use crate::daemon::observe::NoObserver;

/// What the scripted server answers to each FetchTask, in order; `Task` forever once exhausted.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Task,
    Empty,
    Error,
    Unauthenticated,
    Hang,
}

struct ScriptedApi {
    answers: Mutex<VecDeque<Answer>>,
    default: Answer,
    fetches: Mutex<Vec<(Instant, i64)>>,
    next_task_id: AtomicUsize,
    server_version: i64,
}

impl ScriptedApi {
    fn new(answers: &[Answer], default: Answer) -> Arc<ScriptedApi> {
        Arc::new(ScriptedApi {
            answers: Mutex::new(answers.iter().copied().collect()),
            default,
            fetches: Mutex::new(Vec::new()),
            next_task_id: AtomicUsize::new(1),
            server_version: 7,
        })
    }

    fn fetch_times(&self) -> Vec<Instant> {
        crate::sync::lock(&self.fetches)
            .iter()
            .map(|(at, _)| *at)
            .collect()
    }

    fn sent_versions(&self) -> Vec<i64> {
        crate::sync::lock(&self.fetches)
            .iter()
            .map(|(_, v)| *v)
            .collect()
    }
}

impl RunnerApi for ScriptedApi {
    async fn ping(&self, _: PingRequest) -> Result<PingResponse, ClientError> {
        unreachable!("the poller never pings")
    }
    async fn register(&self, _: RegisterRequest) -> Result<RegisterResponse, ClientError> {
        unreachable!("the poller never registers")
    }
    async fn declare(&self, _: DeclareRequest) -> Result<Declared, ClientError> {
        unreachable!("the poller never declares")
    }
    async fn fetch_task(
        &self,
        request: FetchTaskRequest,
    ) -> Result<FetchTaskResponse, ClientError> {
        crate::sync::lock(&self.fetches).push((Instant::now(), request.tasks_version));
        let answer = crate::sync::lock(&self.answers)
            .pop_front()
            .unwrap_or(self.default);
        match answer {
            Answer::Task => {
                let id = self.next_task_id.fetch_add(1, Ordering::SeqCst) as i64;
                Ok(FetchTaskResponse {
                    task: Some(Task {
                        id,
                        ..Task::default()
                    }),
                    tasks_version: self.server_version,
                })
            }
            Answer::Empty => Ok(FetchTaskResponse {
                task: None,
                tasks_version: self.server_version,
            }),
            Answer::Error => Err(ClientError::Unavailable {
                method: Method::FetchTask,
                url: String::new(),
                message: "try later".into(),
            }),
            Answer::Unauthenticated => Err(ClientError::Unauthenticated {
                method: Method::FetchTask,
                url: String::new(),
                message: "unregistered runner".into(),
            }),
            Answer::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
        }
    }
    async fn update_task(&self, _: UpdateTaskRequest) -> Result<UpdateTaskResponse, ClientError> {
        unreachable!("the poller never reports")
    }
    async fn update_log(&self, _: EncodedUpdateLog) -> Result<UpdateLogResponse, ClientError> {
        unreachable!("the poller never reports")
    }
}

/// Counts jobs running at once; each job takes `job_time`.
struct CountingRunner {
    job_time: Duration,
    running: AtomicUsize,
    max_running: AtomicUsize,
    finished: AtomicUsize,
}

impl CountingRunner {
    fn new(job_time: Duration) -> Arc<CountingRunner> {
        Arc::new(CountingRunner {
            job_time,
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        })
    }
}

impl TaskRunner for CountingRunner {
    async fn run(&self, _task: Task, jobs_cancel: CancellationToken) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        tokio::select! {
            _ = tokio::time::sleep(self.job_time) => {}
            _ = jobs_cancel.cancelled() => {}
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

fn settings(capacity: usize) -> PollerSettings {
    PollerSettings {
        capacity,
        fetch_timeout: Duration::from_secs(5),
        fetch_interval: Duration::from_secs(2),
        fetch_interval_max: Duration::from_secs(60),
    }
}

struct Harness {
    stop: CancellationToken,
    jobs_cancel: CancellationToken,
    jobs: TaskTracker,
    handle: tokio::task::JoinHandle<PollEnd>,
    settings_tx: watch::Sender<PollerSettings>,
}

fn start(
    api: Arc<ScriptedApi>,
    runner: Arc<CountingRunner>,
    settings: PollerSettings,
    mode: PollMode,
) -> Harness {
    let (settings_tx, settings_rx) = watch::channel(settings.clone());
    let admission = Admission::new(settings.capacity);
    let poller = Poller::new(api, runner, settings_rx, admission, Arc::new(NoObserver));
    let stop = CancellationToken::new();
    let jobs_cancel = CancellationToken::new();
    let jobs = TaskTracker::new();
    let handle = tokio::spawn({
        let (stop, jobs_cancel, jobs) = (stop.clone(), jobs_cancel.clone(), jobs.clone());
        async move { poller.run(mode, stop, jobs_cancel, &jobs).await }
    });
    Harness {
        stop,
        jobs_cancel,
        jobs,
        handle,
        settings_tx,
    }
}

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(3600), future)
        .await
        .expect("bounded wait elapsed")
}

#[tokio::test(start_paused = true)]
async fn capacity_n_runs_n_at_once_and_never_n_plus_one() {
    for capacity in [1, 3, 5] {
        let api = ScriptedApi::new(&[], Answer::Task);
        let runner = CountingRunner::new(Duration::from_secs(10));
        let harness = start(
            api,
            Arc::clone(&runner),
            settings(capacity),
            PollMode::Continuous,
        );
        tokio::time::sleep(Duration::from_secs(55)).await;
        assert_eq!(runner.running.load(Ordering::SeqCst), capacity);
        assert_eq!(runner.max_running.load(Ordering::SeqCst), capacity);
        assert!(runner.finished.load(Ordering::SeqCst) >= 5 * capacity);
        harness.stop.cancel();
        assert_eq!(bounded(harness.handle).await.unwrap(), PollEnd::Stopped);
        harness.jobs.close();
        bounded(harness.jobs.wait()).await;
        assert_eq!(runner.max_running.load(Ordering::SeqCst), capacity);
    }
}

#[tokio::test(start_paused = true)]
async fn no_fetch_while_at_capacity() {
    let api = ScriptedApi::new(&[], Answer::Task);
    let runner = CountingRunner::new(Duration::from_secs(100));
    let harness = start(Arc::clone(&api), runner, settings(2), PollMode::Continuous);
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert_eq!(
        api.fetch_times().len(),
        2,
        "two tasks fetched, then no poll at capacity"
    );
    harness.stop.cancel();
    harness.jobs_cancel.cancel();
    bounded(harness.handle).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn raised_capacity_admits_more_on_reload() {
    let api = ScriptedApi::new(&[], Answer::Task);
    let runner = CountingRunner::new(Duration::from_secs(1000));
    let harness = start(api, Arc::clone(&runner), settings(1), PollMode::Continuous);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runner.running.load(Ordering::SeqCst), 1);
    harness.settings_tx.send(settings(3)).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runner.running.load(Ordering::SeqCst), 3);
    assert_eq!(runner.max_running.load(Ordering::SeqCst), 3);
    harness.stop.cancel();
    harness.jobs_cancel.cancel();
    bounded(harness.handle).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn empty_polls_back_off_within_jitter_bounds() {
    let api = ScriptedApi::new(&[], Answer::Empty);
    let runner = CountingRunner::new(Duration::from_secs(1));
    let harness = start(Arc::clone(&api), runner, settings(1), PollMode::Continuous);
    tokio::time::sleep(Duration::from_secs(400)).await;
    harness.stop.cancel();
    bounded(harness.handle).await.unwrap();
    let times = api.fetch_times();
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).as_secs_f64())
        .collect();
    // Streak n after the n-th empty answer: 2, 4, 8, 16, 32, 60, 60, ... seconds, each ±20 %.
    let expected = [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0];
    assert!(gaps.len() >= expected.len(), "{gaps:?}");
    for (gap, base) in gaps.iter().zip(expected) {
        assert!(
            *gap >= base * 0.8 - 1e-6 && *gap < base * 1.2,
            "gap {gap} outside ±20 % of {base}: {gaps:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn errors_back_off_and_an_answer_resets_the_error_streak() {
    let api = ScriptedApi::new(
        &[Answer::Error, Answer::Error, Answer::Error, Answer::Error],
        Answer::Hang,
    );
    let runner = CountingRunner::new(Duration::from_secs(1));
    let harness = start(Arc::clone(&api), runner, settings(1), PollMode::Continuous);
    tokio::time::sleep(Duration::from_secs(100)).await;
    harness.stop.cancel();
    bounded(harness.handle).await.unwrap();
    let times = api.fetch_times();
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).as_secs_f64())
        .collect();
    for (gap, base) in gaps.iter().zip([2.0, 4.0, 8.0, 16.0]) {
        assert!(*gap >= base * 0.8 - 1e-6 && *gap < base * 1.2, "{gaps:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_fetch_is_cut_at_fetch_timeout_and_counts_as_empty() {
    let api = ScriptedApi::new(&[Answer::Hang, Answer::Hang], Answer::Task);
    let runner = CountingRunner::new(Duration::from_secs(1000));
    let harness = start(Arc::clone(&api), runner, settings(1), PollMode::Continuous);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let times = api.fetch_times();
    assert_eq!(times.len(), 3, "two hanging fetches then a task");
    let first_gap = (times[1] - times[0]).as_secs_f64();
    // 5 s fetch_timeout plus a 2 s ±20 % wait.
    assert!((6.6..7.4).contains(&first_gap), "{first_gap}");
    harness.stop.cancel();
    harness.jobs_cancel.cancel();
    bounded(harness.handle).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn tasks_version_is_kept_reset_after_a_task_and_periodically() {
    let mut script = vec![Answer::Empty, Answer::Empty, Answer::Task];
    script.extend(std::iter::repeat_n(Answer::Empty, 200));
    let api = ScriptedApi::new(&script, Answer::Empty);
    let runner = CountingRunner::new(Duration::from_secs(1));
    let mut poll_settings = settings(2);
    poll_settings.fetch_interval_max = Duration::from_secs(2);
    let harness = start(
        Arc::clone(&api),
        runner,
        poll_settings,
        PollMode::Continuous,
    );
    tokio::time::sleep(Duration::from_secs(12 * 60)).await;
    harness.stop.cancel();
    bounded(harness.handle).await.unwrap();
    let versions = api.sent_versions();
    assert_eq!(&versions[..5], &[0, 7, 7, 0, 7], "{versions:?}");
    let resets = versions
        .iter()
        .skip(5)
        .filter(|version| **version == 0)
        .count();
    assert_eq!(
        resets, 2,
        "one reset every 5 minutes in 12 minutes: {versions:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn unauthenticated_stops_polling() {
    let api = ScriptedApi::new(&[Answer::Empty, Answer::Unauthenticated], Answer::Task);
    let runner = CountingRunner::new(Duration::from_secs(1));
    let harness = start(
        Arc::clone(&api),
        Arc::clone(&runner),
        settings(1),
        PollMode::Continuous,
    );
    assert_eq!(
        bounded(harness.handle).await.unwrap(),
        PollEnd::Unauthenticated
    );
    assert_eq!(api.fetch_times().len(), 2);
    assert_eq!(runner.finished.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn once_mode_admits_exactly_one_task() {
    let api = ScriptedApi::new(&[Answer::Empty], Answer::Task);
    let runner = CountingRunner::new(Duration::from_secs(3));
    let harness = start(
        Arc::clone(&api),
        Arc::clone(&runner),
        settings(4),
        PollMode::Once,
    );
    assert_eq!(
        bounded(harness.handle).await.unwrap(),
        PollEnd::OnceAdmitted
    );
    harness.jobs.close();
    bounded(harness.jobs.wait()).await;
    assert_eq!(runner.finished.load(Ordering::SeqCst), 1);
    assert_eq!(api.fetch_times().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn stop_admits_nothing_more_and_interrupts_the_wait() {
    let api = ScriptedApi::new(&[], Answer::Empty);
    let runner = CountingRunner::new(Duration::from_secs(1));
    let harness = start(
        Arc::clone(&api),
        Arc::clone(&runner),
        settings(1),
        PollMode::Continuous,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped_at = Instant::now();
    harness.stop.cancel();
    assert_eq!(bounded(harness.handle).await.unwrap(), PollEnd::Stopped);
    assert!(stopped_at.elapsed() < Duration::from_millis(10));
    let fetches = api.fetch_times().len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(api.fetch_times().len(), fetches);
    assert_eq!(runner.finished.load(Ordering::SeqCst), 0);
}
