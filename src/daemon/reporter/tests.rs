//! Reporter tests under paused time against an in-memory server that implements Gitea's UpdateLog
//! ack algorithm and UpdateTask semantics, with injected failures, lost answers and outages.

use std::sync::Mutex;

use indexmap::IndexMap;
use rand::{Rng, SeedableRng};

use super::*;
use crate::client::proto::ping::{PingRequest, PingResponse};
use crate::client::proto::runner::{
    self as proto, DeclareRequest, FetchTaskRequest, FetchTaskResponse, RegisterRequest,
    RegisterResponse, TaskState, UpdateLogResponse, UpdateTaskRequest, UpdateTaskResponse,
};
use crate::client::{ClientError, Declared, EncodedUpdateLog, Method};
use crate::daemon::observe::NoObserver;
use crate::executor::event::{LogLines, PlannedStep};

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Log {
        index: i64,
        n_rows: usize,
        bytes: usize,
        no_more: bool,
        at: Instant,
    },
    Task {
        result: i32,
        n_outputs: usize,
        at: Instant,
    },
}

struct Inner {
    rows: Vec<proto::LogRow>,
    archived: bool,
    final_state: Option<TaskState>,
    last_state: Option<TaskState>,
    outputs: IndexMap<String, String>,
    server_result: i32,
    fail_rate: f64,
    outage_until: Option<Instant>,
    unauthenticated_after_final: bool,
    lose_final_answer: bool,
    /// Stores at most this many rows of each UpdateLog (a partial ack).
    store_at_most: Option<usize>,
    /// Answers an `ack_index` this many rows past what it stored (a lying server).
    ack_beyond: i64,
    rng: rand::rngs::StdRng,
    calls: Vec<Call>,
}

struct MemoryGitea {
    inner: Mutex<Inner>,
}

/// What a faulty call does.
enum Fault {
    None,
    /// Fails before the server does anything.
    Refused,
    /// The server does the work but the answer is lost.
    AnswerLost,
}

impl MemoryGitea {
    fn new() -> Arc<MemoryGitea> {
        Arc::new(MemoryGitea {
            inner: Mutex::new(Inner {
                rows: Vec::new(),
                archived: false,
                final_state: None,
                last_state: None,
                outputs: IndexMap::new(),
                server_result: 0,
                fail_rate: 0.0,
                outage_until: None,
                unauthenticated_after_final: false,
                lose_final_answer: false,
                store_at_most: None,
                ack_beyond: 0,
                rng: rand::rngs::StdRng::seed_from_u64(7),
                calls: Vec::new(),
            }),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut crate::sync::lock(&self.inner))
    }

    fn fault(inner: &mut Inner) -> Fault {
        if inner
            .outage_until
            .is_some_and(|until| Instant::now() < until)
        {
            return Fault::Refused;
        }
        let draw: f64 = inner.rng.random();
        if draw < inner.fail_rate / 2.0 {
            Fault::Refused
        } else if draw < inner.fail_rate {
            Fault::AnswerLost
        } else {
            Fault::None
        }
    }

    fn contents(&self) -> Vec<String> {
        self.with(|inner| inner.rows.iter().map(|row| row.content.clone()).collect())
    }
}

fn unavailable(method: Method) -> ClientError {
    ClientError::Unavailable {
        method,
        url: String::new(),
        message: "injected".into(),
    }
}

impl RunnerApi for MemoryGitea {
    async fn ping(&self, _: PingRequest) -> Result<PingResponse, ClientError> {
        unreachable!()
    }
    async fn register(&self, _: RegisterRequest) -> Result<RegisterResponse, ClientError> {
        unreachable!()
    }
    async fn declare(&self, _: DeclareRequest) -> Result<Declared, ClientError> {
        unreachable!()
    }
    async fn fetch_task(&self, _: FetchTaskRequest) -> Result<FetchTaskResponse, ClientError> {
        unreachable!()
    }

    async fn update_log(
        &self,
        request: EncodedUpdateLog,
    ) -> Result<UpdateLogResponse, ClientError> {
        use prost::Message;
        let bytes = request.encoded_len();
        let mut inner = crate::sync::lock(&self.inner);
        let already_held = request.rows_already_held(inner.rows.len() as i64);
        // What the server decodes; every row is checked to be a LogRow on the way.
        let request = request.to_request().unwrap();
        inner.calls.push(Call::Log {
            index: request.index,
            n_rows: request.rows.len(),
            bytes,
            no_more: request.no_more,
            at: Instant::now(),
        });
        let fault = Self::fault(&mut inner);
        if matches!(fault, Fault::Refused) {
            return Err(unavailable(Method::UpdateLog));
        }
        if let Some(skip) = already_held {
            if inner.archived {
                return Err(ClientError::LogArchived {
                    method: Method::UpdateLog,
                    url: String::new(),
                    message: "log file has been archived".into(),
                });
            }
            let take = inner.store_at_most.unwrap_or(usize::MAX);
            let all_stored = request.rows.len() - skip <= take;
            inner
                .rows
                .extend(request.rows.into_iter().skip(skip).take(take));
            // The log is archived with its last row, never before.
            if request.no_more && all_stored {
                inner.archived = true;
            }
        }
        let ack_index = inner.rows.len() as i64 + inner.ack_beyond;
        match fault {
            Fault::AnswerLost => Err(ClientError::DeadlineExceeded {
                method: Method::UpdateLog,
                url: String::new(),
                timeout: Duration::from_secs(1),
            }),
            _ => Ok(UpdateLogResponse { ack_index }),
        }
    }

    async fn update_task(
        &self,
        request: UpdateTaskRequest,
    ) -> Result<UpdateTaskResponse, ClientError> {
        let mut inner = crate::sync::lock(&self.inner);
        let state = request.state.clone().unwrap();
        inner.calls.push(Call::Task {
            result: state.result,
            n_outputs: request.outputs.len(),
            at: Instant::now(),
        });
        if inner.final_state.is_some() && inner.unauthenticated_after_final {
            return Err(ClientError::Unauthenticated {
                method: Method::UpdateTask,
                url: String::new(),
                message: "unregistered runner".into(),
            });
        }
        let mut fault = Self::fault(&mut inner);
        if matches!(fault, Fault::Refused) {
            return Err(unavailable(Method::UpdateTask));
        }
        if inner.lose_final_answer && state.result != 0 {
            fault = Fault::AnswerLost;
        }
        if inner.final_state.is_none() {
            if state.result != 0 {
                inner.final_state = Some(state.clone());
            }
            inner.last_state = Some(state);
        }
        let mut outputs: Vec<(String, String)> = request.outputs.into_iter().collect();
        outputs.sort();
        for (key, value) in outputs {
            inner.outputs.entry(key).or_insert(value);
        }
        let result = inner
            .final_state
            .as_ref()
            .map_or(inner.server_result, |state| state.result);
        let response = UpdateTaskResponse {
            state: Some(TaskState {
                id: state_id(&inner),
                result,
                ..TaskState::default()
            }),
            sent_outputs: inner.outputs.keys().cloned().collect(),
        };
        match fault {
            Fault::AnswerLost => Err(ClientError::DeadlineExceeded {
                method: Method::UpdateTask,
                url: String::new(),
                timeout: Duration::from_secs(1),
            }),
            _ => Ok(response),
        }
    }
}

fn state_id(_: &Inner) -> i64 {
    42
}

fn settings() -> ReporterSettings {
    ReporterSettings {
        log_report_interval: Duration::from_secs(5),
        log_report_max_latency: Duration::from_secs(3),
        log_report_batch_size: 100,
        state_report_interval: Duration::from_secs(5),
        report_close_timeout: Duration::from_secs(10),
        delivery_timeout: Duration::from_secs(3 * 3600),
        ephemeral: false,
        job_log: None,
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn line(step_idx: Option<usize>, content: String) -> JobEvent {
    JobEvent::Log(LogLines::one(now(), step_idx, content))
}

struct Run {
    reporter: Reporter,
    events: mpsc::Sender<JobEvent>,
    job_cancel: CancellationToken,
    exit: CancellationToken,
    _temp: Option<tempfile::TempDir>,
    root: SpoolRoot,
}

fn start_with(api: &Arc<MemoryGitea>, settings: ReporterSettings, temp: tempfile::TempDir) -> Run {
    let root = SpoolRoot::new(temp.path());
    let job_cancel = CancellationToken::new();
    let exit = CancellationToken::new();
    let reporter = Reporter::start(
        Arc::clone(api),
        &root,
        42,
        settings,
        job_cancel.clone(),
        exit.clone(),
        Arc::new(NoObserver),
    )
    .unwrap();
    let events = reporter.events();
    Run {
        reporter,
        events,
        job_cancel,
        exit,
        _temp: Some(temp),
        root,
    }
}

fn start(api: &Arc<MemoryGitea>) -> Run {
    start_with(api, settings(), tempfile::tempdir().unwrap())
}

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(6 * 3600), future)
        .await
        .expect("bounded wait elapsed")
}

/// A job with `n_steps` steps printing `lines_per_step` lines each, outputs, then `result`.
async fn play_job(
    events: &mpsc::Sender<JobEvent>,
    n_steps: usize,
    lines_per_step: usize,
    result: Conclusion,
) {
    let steps = (0..n_steps)
        .map(|step_idx| PlannedStep {
            step_idx,
            name: format!("s{step_idx}"),
        })
        .collect();
    events.send(line(None, "set up".into())).await.unwrap();
    events
        .send(JobEvent::JobStarted { at: now(), steps })
        .await
        .unwrap();
    for step_idx in 0..n_steps {
        events
            .send(JobEvent::StepStarted {
                step_idx,
                at: now(),
            })
            .await
            .unwrap();
        for n in 0..lines_per_step {
            events
                .send(line(Some(step_idx), format!("step {step_idx} line {n}")))
                .await
                .unwrap();
        }
        events
            .send(JobEvent::StepFinished {
                step_idx,
                at: now(),
                outcome: result,
                conclusion: result,
            })
            .await
            .unwrap();
    }
    let mut outputs = IndexMap::new();
    outputs.insert("version".to_string(), "1.2.3".to_string());
    events.send(JobEvent::Outputs(outputs)).await.unwrap();
    events
        .send(JobEvent::JobFinished { at: now(), result })
        .await
        .unwrap();
}

/// The final UpdateLog carries an empty row when nothing else was left to send.
fn without_sentinel(mut rows: Vec<String>) -> Vec<String> {
    if rows.last().is_some_and(String::is_empty) {
        rows.pop();
    }
    rows
}

fn expected_rows(n_steps: usize, lines_per_step: usize) -> Vec<String> {
    let mut rows = vec!["set up".to_string()];
    for step_idx in 0..n_steps {
        for n in 0..lines_per_step {
            rows.push(format!("step {step_idx} line {n}"));
        }
    }
    rows
}

#[tokio::test(start_paused = true)]
async fn a_job_delivers_rows_steps_outputs_then_the_result() {
    let api = MemoryGitea::new();
    let run = start(&api);
    play_job(&run.events, 3, 10, Conclusion::Success).await;
    drop(run.events);
    let finished = bounded(run.reporter.finish()).await;
    assert_eq!(finished.delivery, Delivery::Delivered);
    assert_eq!(finished.result, Some(Conclusion::Success));

    assert_eq!(without_sentinel(api.contents()), expected_rows(3, 10));
    api.with(|inner| {
        assert!(inner.archived);
        let state = inner.final_state.clone().unwrap();
        assert_eq!(state.result, proto::Result::Success as i32);
        assert!(state.stopped_at.is_some());
        let ranges: Vec<(i64, i64)> = state
            .steps
            .iter()
            .map(|s| (s.log_index, s.log_length))
            .collect();
        assert_eq!(ranges, [(1, 10), (11, 10), (21, 10)]);
        assert!(
            state
                .steps
                .iter()
                .all(|s| s.result == 1 && s.started_at.is_some() && s.stopped_at.is_some())
        );
        assert_eq!(
            inner.outputs.get("version").map(String::as_str),
            Some("1.2.3")
        );
        // Order: the no_more UpdateLog and the outputs come before the only call with a result.
        let final_at = inner
            .calls
            .iter()
            .position(|call| matches!(call, Call::Task { result, .. } if *result != 0))
            .unwrap();
        let no_more_at = inner
            .calls
            .iter()
            .position(|call| matches!(call, Call::Log { no_more: true, .. }))
            .unwrap();
        let outputs_at = inner
            .calls
            .iter()
            .position(|call| matches!(call, Call::Task { n_outputs, .. } if *n_outputs > 0))
            .unwrap();
        assert!(
            no_more_at < final_at && outputs_at < final_at,
            "{:?}",
            inner.calls
        );
        assert_eq!(final_at, inner.calls.len() - 1);
    });
    assert!(
        run.root.recover().unwrap().is_empty(),
        "the spool is removed once delivered"
    );
}

#[tokio::test(start_paused = true)]
async fn rows_wait_for_max_latency_or_a_full_batch() {
    let api = MemoryGitea::new();
    let run = start(&api);
    let started = Instant::now();
    run.events.send(line(None, "one".into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_900)).await;
    let log_calls = |api: &MemoryGitea| {
        api.with(|inner| {
            inner
                .calls
                .iter()
                .filter_map(|call| match call {
                    Call::Log { at, n_rows, .. } => Some((*at, *n_rows)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
    };
    assert!(
        log_calls(&api).is_empty(),
        "a single row waits up to the max latency"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let calls = log_calls(&api);
    assert_eq!(calls.len(), 1);
    assert!(calls[0].0 - started >= Duration::from_secs(3));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let burst = |tag: &'static str| {
        let events = run.events.clone();
        async move {
            for n in 0..100 {
                events.send(line(None, format!("{tag} {n}"))).await.unwrap();
            }
        }
    };
    let burst_at = Instant::now();
    burst("first").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let calls = log_calls(&api);
    assert_eq!(calls.len(), 2, "a full batch goes at once");
    assert!(calls[1].0 - burst_at < Duration::from_millis(10));
    assert_eq!(calls[1].1, 100);

    // Right after a send, the next batch waits up to a second to grow into fewer, larger calls.
    let second_at = Instant::now();
    burst("second").await;
    burst("third").await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let calls = log_calls(&api);
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[2].0 - second_at <= Duration::from_secs(1));
    assert_eq!(calls[2].1, 200);
    drop(run.events);
    bounded(run.reporter.finish()).await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_job_still_sends_heartbeats() {
    let api = MemoryGitea::new();
    let run = start(&api);
    run.events
        .send(JobEvent::JobStarted {
            at: now(),
            steps: Vec::new(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let heartbeats = api.with(|inner| {
        inner
            .calls
            .iter()
            .filter(|call| matches!(call, Call::Task { result: 0, .. }))
            .count()
    });
    assert!(
        (11..=14).contains(&heartbeats),
        "{heartbeats} heartbeats in 60 s"
    );
    drop(run.events);
    bounded(run.reporter.finish()).await;
}

/// Sends `n_lines` lines `"{n} {payload}"`, then the job's success, from a task of its own.
fn produce_lines(
    events: tokio::sync::mpsc::Sender<JobEvent>,
    n_lines: usize,
    payload: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for n in 0..n_lines {
            events
                .send(line(None, format!("{n} {payload}")))
                .await
                .unwrap();
        }
        events
            .send(JobEvent::JobFinished {
                at: now(),
                result: Conclusion::Success,
            })
            .await
            .unwrap();
    })
}

#[tokio::test(start_paused = true)]
async fn a_burst_goes_in_few_requests_of_at_most_one_mib() {
    let api = MemoryGitea::new();
    let run = start(&api);
    let producer = produce_lines(run.events.clone(), 50_000, "x".repeat(200));
    drop(run.events);
    bounded(producer).await.unwrap();
    assert_eq!(
        bounded(run.reporter.finish()).await.delivery,
        Delivery::Delivered
    );
    assert_eq!(without_sentinel(api.contents()).len(), 50_000);
    api.with(|inner| {
        let sizes: Vec<usize> = inner
            .calls
            .iter()
            .filter_map(|call| match call {
                Call::Log { bytes, .. } => Some(*bytes),
                _ => None,
            })
            .collect();
        assert!(
            sizes.iter().all(|bytes| *bytes <= MAX_UPDATE_LOG_BYTES),
            "{sizes:?}"
        );
        // ~11 MB of rows: about a dozen full requests plus the first batch.
        assert!(sizes.len() <= 30, "{} requests", sizes.len());
    });
}

#[tokio::test(start_paused = true)]
async fn an_ack_index_beyond_the_rows_sent_skips_no_row() {
    // Issue 22: a server answering 400 rows more than it was sent must not make the spool skip
    // the rows not yet sent.
    let api = MemoryGitea::new();
    api.with(|inner| inner.ack_beyond = 400);
    let run = start(&api);
    for n in 0..13 {
        run.events
            .send(line(None, format!("early {n}")))
            .await
            .unwrap();
    }
    // The first rows go out alone before the rest arrive.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(api.contents().len() >= 13, "{:?}", api.contents());
    let producer = produce_lines(run.events.clone(), 400, "late".into());
    drop(run.events);
    bounded(producer).await.unwrap();
    assert_eq!(
        bounded(run.reporter.finish()).await.delivery,
        Delivery::Delivered
    );
    let mut expected: Vec<String> = (0..13).map(|n| format!("early {n}")).collect();
    expected.extend((0..400).map(|n| format!("{n} late")));
    assert_eq!(without_sentinel(api.contents()), expected);
}

#[tokio::test(start_paused = true)]
async fn after_a_partial_ack_the_next_request_starts_where_the_server_stopped() {
    // The request built while one is in flight starts after all of its rows: when Gitea stores
    // fewer, that one must be dropped and the rows from Gitea's ack sent instead.
    let api = MemoryGitea::new();
    api.with(|inner| inner.store_at_most = Some(1000));
    let run = start(&api);
    let payload = "x".repeat(200);
    let producer = produce_lines(run.events.clone(), 20_000, payload.clone());
    drop(run.events);
    bounded(producer).await.unwrap();
    assert_eq!(
        bounded(run.reporter.finish()).await.delivery,
        Delivery::Delivered
    );
    let expected: Vec<String> = (0..20_000).map(|n| format!("{n} {payload}")).collect();
    assert_eq!(without_sentinel(api.contents()), expected);
    api.with(|inner| {
        let mut stored = 0;
        let mut n_requests = 0;
        for call in &inner.calls {
            if let Call::Log { index, n_rows, .. } = call {
                assert_eq!(
                    *index, stored,
                    "request {n_requests} does not start at the ack"
                );
                stored += (*n_rows).min(1000) as i64;
                n_requests += 1;
            }
        }
        assert!(n_requests >= 20, "{n_requests} requests");
    });
}

#[tokio::test(start_paused = true)]
async fn faults_and_an_outage_lose_and_duplicate_nothing() {
    let api = MemoryGitea::new();
    api.with(|inner| inner.fail_rate = 0.3);
    let run = start(&api);
    let producer = {
        let events = run.events.clone();
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            let steps = vec![PlannedStep {
                step_idx: 0,
                name: "s".into(),
            }];
            events
                .send(JobEvent::JobStarted { at: now(), steps })
                .await
                .unwrap();
            events
                .send(JobEvent::StepStarted {
                    step_idx: 0,
                    at: now(),
                })
                .await
                .unwrap();
            for n in 0..3_000 {
                if n == 1_000 {
                    api.with(|inner| {
                        inner.outage_until = Some(Instant::now() + Duration::from_secs(60))
                    });
                }
                events
                    .send(line(Some(0), format!("row {n}")))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            events
                .send(JobEvent::StepFinished {
                    step_idx: 0,
                    at: now(),
                    outcome: Conclusion::Success,
                    conclusion: Conclusion::Success,
                })
                .await
                .unwrap();
            events
                .send(JobEvent::JobFinished {
                    at: now(),
                    result: Conclusion::Success,
                })
                .await
                .unwrap();
        })
    };
    drop(run.events);
    bounded(producer).await.unwrap();
    let finished = bounded(run.reporter.finish()).await;
    assert_eq!(finished.delivery, Delivery::Delivered);
    let rows = api.contents();
    let expected: Vec<String> = (0..3_000).map(|n| format!("row {n}")).collect();
    assert_eq!(&rows[..3_000], expected.as_slice());
    assert!(rows.len() <= 3_001);
    api.with(|inner| {
        let state = inner.final_state.clone().unwrap();
        assert_eq!(state.result, 1);
        assert_eq!(
            (state.steps[0].log_index, state.steps[0].log_length),
            (0, 3_000)
        );
        let failures = inner.calls.len();
        assert!(failures > 50, "faults were exercised: {failures} calls");
    });
}

#[tokio::test(start_paused = true)]
async fn a_cancel_from_the_server_cancels_the_job_and_the_result_still_arrives() {
    let api = MemoryGitea::new();
    let run = start(&api);
    run.events
        .send(JobEvent::JobStarted {
            at: now(),
            steps: vec![PlannedStep {
                step_idx: 0,
                name: "s".into(),
            }],
        })
        .await
        .unwrap();
    run.events
        .send(JobEvent::StepStarted {
            step_idx: 0,
            at: now(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.with(|inner| inner.server_result = proto::Result::Cancelled as i32);
    let asked = Instant::now();
    bounded(run.job_cancel.cancelled()).await;
    assert!(asked.elapsed() <= settings().state_report_interval + Duration::from_millis(100));
    // The executor sees the cancel and ends the job.
    send_finished(&run.events, Conclusion::Cancelled).await;
    drop(run.events);
    let finished = bounded(run.reporter.finish()).await;
    assert_eq!(finished.result, Some(Conclusion::Cancelled));
    assert_eq!(finished.delivery, Delivery::Delivered);
    api.with(|inner| assert_eq!(inner.final_state.as_ref().unwrap().result, 3));
}

#[tokio::test(start_paused = true)]
async fn events_ending_without_a_result_close_the_job_as_failed() {
    let api = MemoryGitea::new();
    let run = start(&api);
    run.events.send(line(None, "started".into())).await.unwrap();
    drop(run.events);
    let finished = bounded(run.reporter.finish()).await;
    assert_eq!(finished.result, Some(Conclusion::Failure));
    assert_eq!(api.contents(), ["started", "Early termination"]);
    api.with(|inner| assert!(inner.final_state.as_ref().unwrap().stopped_at.is_some()));
}

#[tokio::test(start_paused = true)]
async fn exit_during_an_outage_keeps_the_spool_and_a_restart_delivers_it() {
    let api = MemoryGitea::new();
    api.with(|inner| inner.outage_until = Some(Instant::now() + Duration::from_secs(3600)));
    let temp = tempfile::tempdir().unwrap();
    let state_dir = temp.path().to_path_buf();
    let mut run = start_with(&api, settings(), temp);
    let keep_temp = run._temp.take();
    play_job(&run.events, 2, 5, Conclusion::Failure).await;
    drop(run.events);
    tokio::time::sleep(Duration::from_secs(20)).await;
    run.exit.cancel();
    let finished = bounded(run.reporter.finish()).await;
    assert_eq!(finished.delivery, Delivery::Kept);
    assert!(api.contents().is_empty());

    // The next start: Gitea is back.
    api.with(|inner| inner.outage_until = None);
    let recovered = SpoolRoot::new(&state_dir).recover().unwrap();
    assert_eq!(recovered.len(), 1);
    let (spool, record) = recovered.into_iter().next().unwrap();
    assert!(record.job.is_finished());
    let delivery = bounded(deliver_recovered(
        Arc::clone(&api),
        spool,
        record,
        settings(),
        CancellationToken::new(),
        Arc::new(NoObserver),
    ))
    .await;
    assert_eq!(delivery, Delivery::Delivered);
    assert_eq!(without_sentinel(api.contents()), expected_rows(2, 5));
    api.with(|inner| {
        assert_eq!(inner.final_state.as_ref().unwrap().result, 2);
        assert_eq!(inner.outputs.len(), 1);
    });
    drop(keep_temp);
}

#[tokio::test(start_paused = true)]
async fn a_spool_of_a_job_that_never_finished_is_delivered_as_failed() {
    let api = MemoryGitea::new();
    let temp = tempfile::tempdir().unwrap();
    let root = SpoolRoot::new(temp.path());
    {
        // What a daemon killed mid-job leaves: rows, a state without result, half of them acked.
        let mut job = TaskReport::new(42);
        job.apply(
            JobEvent::JobStarted {
                at: now(),
                steps: vec![PlannedStep {
                    step_idx: 0,
                    name: "s".into(),
                }],
            },
            0,
        );
        job.apply(
            JobEvent::StepStarted {
                step_idx: 0,
                at: now(),
            },
            0,
        );
        let record = SpoolRecord {
            job,
            acked_rows: 0,
            acked_bytes: 0,
            log_finished: false,
            deliver_until: now(),
        };
        let mut spool = root.create(&record).unwrap();
        for n in 0..10 {
            spool
                .append(&proto::LogRow {
                    time: Some(now().into()),
                    content: format!("row {n}"),
                })
                .unwrap();
        }
        spool.flush().unwrap();
        // Gitea already has the first four rows.
        api.with(|inner| {
            for n in 0..4 {
                inner.rows.push(proto::LogRow {
                    time: None,
                    content: format!("row {n}"),
                });
            }
        });
    }
    let (spool, record) = root.recover().unwrap().into_iter().next().unwrap();
    let delivery = bounded(deliver_recovered(
        Arc::clone(&api),
        spool,
        record,
        settings(),
        CancellationToken::new(),
        Arc::new(NoObserver),
    ))
    .await;
    assert_eq!(delivery, Delivery::Delivered);
    let rows = api.contents();
    assert_eq!(rows.len(), 11);
    assert_eq!(rows[9], "row 9");
    assert!(rows[10].contains("runner stopped"));
    api.with(|inner| {
        let state = inner.final_state.as_ref().unwrap();
        assert_eq!(state.result, 2);
        assert_eq!(state.steps[0].result, 3, "the unfinished step is cancelled");
    });
}

#[tokio::test(start_paused = true)]
async fn an_ephemeral_runner_deleted_by_a_lost_final_answer_counts_as_delivered() {
    let api = MemoryGitea::new();
    api.with(|inner| inner.unauthenticated_after_final = true);
    let mut ephemeral = settings();
    ephemeral.ephemeral = true;
    let run = start_with(&api, ephemeral, tempfile::tempdir().unwrap());
    play_job(&run.events, 1, 3, Conclusion::Success).await;
    api.with(|inner| inner.lose_final_answer = true);
    drop(run.events);
    let finished = bounded(run.reporter.finish()).await;
    assert_eq!(finished.delivery, Delivery::Delivered);
}

async fn send_finished(events: &mpsc::Sender<JobEvent>, result: Conclusion) {
    let finished = JobEvent::JobFinished { at: now(), result };
    events.send(finished).await.unwrap();
}

/// Sends a job's start, one step of `n_lines` lines and its end, then a checkpoint; returns what
/// resolves once the checkpoint is let go.
async fn lines_then_checkpoint(
    events: &mpsc::Sender<JobEvent>,
    n_lines: usize,
) -> tokio::sync::oneshot::Receiver<()> {
    let steps = vec![PlannedStep {
        step_idx: 0,
        name: "s0".into(),
    }];
    events
        .send(JobEvent::JobStarted { at: now(), steps })
        .await
        .unwrap();
    let started = JobEvent::StepStarted {
        step_idx: 0,
        at: now(),
    };
    events.send(started).await.unwrap();
    for n in 0..n_lines {
        events
            .send(line(Some(0), format!("line {n}")))
            .await
            .unwrap();
    }
    let finished = JobEvent::StepFinished {
        step_idx: 0,
        at: now(),
        outcome: Conclusion::Success,
        conclusion: Conclusion::Success,
    };
    events.send(finished).await.unwrap();
    let (checkpoint, released) = LogCheckpoint::new();
    events
        .send(JobEvent::LogCheckpoint(checkpoint))
        .await
        .unwrap();
    released
}

#[tokio::test(start_paused = true)]
async fn a_log_checkpoint_is_let_go_once_gitea_holds_every_row_before_it() {
    let api = MemoryGitea::new();
    api.with(|inner| inner.outage_until = Some(Instant::now() + Duration::from_secs(30)));
    let run = start(&api);
    let mut released = lines_then_checkpoint(&run.events, 10).await;
    let early = tokio::time::timeout(Duration::from_secs(25), &mut released).await;
    assert!(early.is_err(), "let go while Gitea held no row");
    let _ = bounded(released).await;
    // At that moment (paused time: nothing ran in between) Gitea holds every row.
    let expected: Vec<String> = (0..10).map(|n| format!("line {n}")).collect();
    assert_eq!(api.contents(), expected);
    api.with(|inner| assert!(inner.final_state.is_none()));

    send_finished(&run.events, Conclusion::Success).await;
    drop(run.events);
    let finished = bounded(run.reporter.finish()).await;
    assert_eq!(finished.delivery, Delivery::Delivered);
}

#[tokio::test(start_paused = true)]
async fn a_log_checkpoint_is_let_go_at_once_when_delivery_stops() {
    let api = MemoryGitea::new();
    api.with(|inner| inner.outage_until = Some(Instant::now() + Duration::from_secs(3600)));
    let run = start(&api);
    let released = lines_then_checkpoint(&run.events, 3).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    run.exit.cancel();
    let let_go = tokio::time::timeout(Duration::from_secs(1), released).await;
    assert!(let_go.is_ok(), "the checkpoint outlived the delivery");
    assert!(api.contents().is_empty());
    drop(run.events);
    assert_eq!(
        bounded(run.reporter.finish()).await.delivery,
        Delivery::Kept
    );
}

#[tokio::test(start_paused = true)]
async fn the_result_goes_at_job_finished_while_the_executor_still_cleans_up() {
    let api = MemoryGitea::new();
    let run = start(&api);
    play_job(&run.events, 1, 5, Conclusion::Success).await;
    // The executor's sender stays open (it is removing containers): the result goes anyway.
    bounded(async {
        while api.with(|inner| inner.final_state.is_none()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    // Nothing sent after `JobFinished` belongs to the report.
    run.events
        .send(line(None, "after the result".into()))
        .await
        .unwrap();
    drop(run.events);
    let finished = bounded(run.reporter.finish()).await;
    assert_eq!(finished.delivery, Delivery::Delivered);
    assert_eq!(without_sentinel(api.contents()), expected_rows(1, 5));
}
