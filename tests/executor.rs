//! The executor's event contract, driven through `run_job` on the host backend: event order,
//! masking before events leave, cancellation (the completed job hook still runs), and bad input
//! as a failed job with a position.

use std::time::Duration;

use act_runner::executor::backend::host::HostBackend;
use act_runner::executor::event::{Conclusion, JobEvent};
use act_runner::executor::{JobSpec, run_job};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Runs `yaml`'s job `job` and returns its result and every event.
pub async fn run(spec: JobSpec, cancel: CancellationToken) -> (Conclusion, Vec<JobEvent>) {
    let parent = tempfile::tempdir().unwrap();
    let mut backend = HostBackend::new(parent.path());
    let (events, mut received) = mpsc::channel(1024);
    let collector = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(event) = received.recv().await {
            all.push(event);
        }
        all
    });
    let result = timeout(TEST_LIMIT, run_job(spec, &mut backend, events, cancel))
        .await
        .expect("run_job timed out");
    let events = timeout(TEST_LIMIT, collector).await.unwrap().unwrap();
    (result, events)
}

pub fn spec(yaml: &str) -> JobSpec {
    JobSpec::new(yaml.to_string(), "test.yml".to_string(), "job".to_string())
}

pub fn log_lines(events: &[JobEvent]) -> Vec<String> {
    events
        .iter()
        .flat_map(|event| match event {
            JobEvent::Log(log) => log.lines.iter().map(String::from).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[tokio::test]
async fn events_come_in_contract_order() {
    let (result, events) = run(
        spec("on: push\njobs:\n  job:\n    outputs:\n      o: ${{ steps.a.outputs.v }}\n    steps:\n      - id: a\n        run: echo \"v=1\" >> \"$GITHUB_OUTPUT\"; echo hello\n      - run: exit 0\n"),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(result, Conclusion::Success);
    assert!(matches!(events.first(), Some(JobEvent::JobStarted { steps, .. }) if steps.len() == 2));
    assert!(matches!(
        events.last(),
        Some(JobEvent::JobFinished {
            result: Conclusion::Success,
            ..
        })
    ));
    let outputs = events.iter().find_map(|event| match event {
        JobEvent::Outputs(outputs) => Some(outputs.clone()),
        _ => None,
    });
    assert_eq!(outputs.unwrap()["o"], "1");
    // Step 0's log line sits between its start and finish.
    let started = events
        .iter()
        .position(|e| matches!(e, JobEvent::StepStarted { step_idx: 0, .. }))
        .unwrap();
    let line = events
        .iter()
        .position(|e| matches!(e, JobEvent::Log(log) if log.lines.iter().any(|line| line == "hello") && log.step_idx == Some(0)))
        .unwrap();
    let finished = events
        .iter()
        .position(|e| {
            matches!(
                e,
                JobEvent::StepFinished {
                    step_idx: 0,
                    conclusion: Conclusion::Success,
                    ..
                }
            )
        })
        .unwrap();
    assert!(started < line && line < finished);
}

#[tokio::test]
async fn secrets_never_leave_unmasked() {
    let mut job = spec(
        "on: push\njobs:\n  job:\n    steps:\n      - run: |\n          echo \"${{ secrets.TOKEN }}\"\n          printf %s \"${{ secrets.TOKEN }}\" | base64\n          echo \"::add-mask::runtime-value-99\"\n          echo runtime-value-99\n",
    );
    job.secrets
        .insert("TOKEN".into(), "s3cret-token-value".into());
    let (result, events) = run(job, CancellationToken::new()).await;
    assert_eq!(result, Conclusion::Success);
    let lines = log_lines(&events).join("\n");
    assert!(!lines.contains("s3cret-token-value"), "{lines}");
    assert!(!lines.contains("czNjcmV0LXRva2VuLXZhbHVl"), "{lines}");
    assert!(!lines.contains("runtime-value-99"), "{lines}");
    assert!(lines.contains("***"));
}

#[tokio::test]
async fn the_completed_hook_still_runs_after_a_cancellation_and_its_lines_are_the_jobs() {
    let scratch = tempfile::tempdir().unwrap();
    let hook = scratch.path().join("completed.sh");
    std::fs::write(&hook, "echo \"completed hook after $GITHUB_JOB\"\n").unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let mut job = spec("on: push\njobs:\n  job:\n    steps:\n      - run: sleep 60\n");
    job.hooks.completed = Some(hook.display().to_string());
    let (result, events) = run(job, cancel).await;
    assert_eq!(result, Conclusion::Cancelled);
    let hook_lines: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            JobEvent::Log(log)
                if log
                    .lines
                    .iter()
                    .any(|line| line == "completed hook after job") =>
            {
                Some(log.step_idx)
            }
            _ => None,
        })
        .collect();
    assert_eq!(hook_lines, [None], "{:#?}", log_lines(&events));
}

#[tokio::test]
async fn cancellation_ends_the_job_as_cancelled_and_skips_the_rest() {
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let started = tokio::time::Instant::now();
    let mut job = spec(
        "on: push\njobs:\n  job:\n    steps:\n      - run: sleep 60\n      - run: echo never\n",
    );
    // A cancelled job cleans up at once: no checkpoint (the collector would hold it).
    job.log_delivery_wait = Some(Duration::from_secs(60));
    let (result, events) = run(job, cancel).await;
    assert_eq!(result, Conclusion::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!has_checkpoint(&events));
    assert!(events.iter().any(|e| matches!(
        e,
        JobEvent::StepFinished {
            step_idx: 1,
            conclusion: Conclusion::Skipped,
            ..
        }
    )));
    assert!(matches!(
        events.last(),
        Some(JobEvent::JobFinished {
            result: Conclusion::Cancelled,
            ..
        })
    ));
}

#[tokio::test]
async fn bad_input_fails_the_job_with_a_position() {
    for (yaml, expected) in [
        (
            "on: push\njobs:\n  job:\n    steps:\n      - run: [unclosed\n",
            "test.yml:5:",
        ),
        (
            "on: push\njobs:\n  job:\n    steps:\n      - run: x\n        bogus: 1\n",
            "test.yml:6:9: step: unknown key `bogus`",
        ),
        (
            "on: push\njobs:\n  job:\n    steps:\n      - run: echo ${{ 1 == }}\n",
            "test.yml:5:",
        ),
        (
            "on: push\njobs:\n  job:\n    timeout-minutes: [1]\n    steps:\n      - run: x\n",
            "test.yml:4:22: timeout-minutes: expected a string, found a sequence",
        ),
    ] {
        let (result, events) = run(spec(yaml), CancellationToken::new()).await;
        assert_eq!(result, Conclusion::Failure, "{yaml}");
        let lines = log_lines(&events).join("\n");
        assert!(lines.contains(expected), "{yaml}: {lines}");
        assert!(matches!(
            events.last(),
            Some(JobEvent::JobFinished {
                result: Conclusion::Failure,
                ..
            })
        ));
    }
}

#[tokio::test]
async fn gitea_single_combination_matrix_is_taken_from_the_payload() {
    // Gitea sends one job whose matrix holds one-element arrays.
    let (result, _) = run(
        spec("on: push\njobs:\n  job:\n    strategy:\n      matrix:\n        os: [debian]\n        v: [3]\n    steps:\n      - run: test \"${{ matrix.os }}-${{ matrix.v }}\" = debian-3\n"),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(result, Conclusion::Success);
}

fn has_checkpoint(events: &[JobEvent]) -> bool {
    events
        .iter()
        .any(|event| matches!(event, JobEvent::LogCheckpoint(_)))
}

/// The index of the first event `wanted` accepts.
fn position(events: &[JobEvent], wanted: fn(&JobEvent) -> bool) -> usize {
    events
        .iter()
        .position(wanted)
        .expect("the event is missing")
}

#[tokio::test]
async fn a_job_waits_for_its_log_checkpoint_before_its_clean_up() {
    const HOLD: Duration = Duration::from_millis(300);
    let parent = tempfile::tempdir().unwrap();
    let mut backend = HostBackend::new(parent.path());
    let workspace_parent = parent.path().to_path_buf();
    let (events, mut received) = mpsc::channel(1024);
    // Holds the checkpoint a while, checking that the job has not cleaned up meanwhile; notes
    // where it came among the other events and when it was let go.
    let collector = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut released = None;
        while let Some(event) = received.recv().await {
            if let JobEvent::LogCheckpoint(checkpoint) = event {
                tokio::time::sleep(HOLD).await;
                let n_entries = std::fs::read_dir(&workspace_parent).unwrap().count();
                assert!(
                    n_entries > 0,
                    "the job cleaned up while its checkpoint was held"
                );
                drop(checkpoint);
                released = Some((all.len(), std::time::SystemTime::now()));
                continue;
            }
            all.push(event);
        }
        (all, released.expect("no checkpoint came"))
    });
    let mut job = spec(
        "on: push\njobs:\n  job:\n    outputs:\n      o: done\n    steps:\n      - run: echo hello\n",
    );
    job.log_delivery_wait = Some(Duration::from_secs(60));
    let result = timeout(
        TEST_LIMIT,
        run_job(job, &mut backend, events, CancellationToken::new()),
    )
    .await
    .expect("run_job timed out");
    assert_eq!(result, Conclusion::Success);
    let (events, (checkpoint, released_at)) =
        timeout(TEST_LIMIT, collector).await.unwrap().unwrap();
    // The checkpoint came after the job's outputs and right before its result, which waited.
    let outputs = position(&events, |e| matches!(e, JobEvent::Outputs(_)));
    let finished = position(&events, |e| matches!(e, JobEvent::JobFinished { .. }));
    assert!(outputs < checkpoint && checkpoint == finished, "{events:?}");
    let JobEvent::JobFinished { at, .. } = &events[finished] else {
        unreachable!()
    };
    assert!(*at >= released_at);
    assert_eq!(
        std::fs::read_dir(parent.path()).unwrap().count(),
        0,
        "the job cleaned up after its result"
    );
}

#[tokio::test]
async fn a_checkpoint_never_let_go_holds_the_job_only_for_its_limit() {
    const LIMIT: Duration = Duration::from_millis(500);
    let mut job = spec("on: push\njobs:\n  job:\n    steps:\n      - run: echo hello\n");
    job.log_delivery_wait = Some(LIMIT);
    let started = tokio::time::Instant::now();
    // `run`'s collector keeps every event, the checkpoint too.
    let (result, events) = run(job, CancellationToken::new()).await;
    assert_eq!(result, Conclusion::Success);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= LIMIT && elapsed < Duration::from_secs(20),
        "{elapsed:?}"
    );
    let checkpoint = position(&events, |e| matches!(e, JobEvent::LogCheckpoint(_)));
    assert_eq!(checkpoint, events.len() - 2, "{events:?}");
}

#[tokio::test]
async fn without_a_limit_no_checkpoint_is_sent() {
    let (result, events) = run(
        spec("on: push\njobs:\n  job:\n    steps:\n      - run: echo hello\n"),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(result, Conclusion::Success);
    assert!(!has_checkpoint(&events));
}

/// Issue 22: output without a newline leaves in rows of at most 64 KiB on the host backend (as on
/// Docker), none lost; a command file past its bound fails the step and names the file.
#[tokio::test]
async fn host_output_and_command_files_are_bounded() {
    let (result, events) = run(
        spec("on: push\njobs:\n  job:\n    steps:\n      - run: head -c 2000000 /dev/zero | tr '\\0' x\n"),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(result, Conclusion::Success);
    let long: Vec<String> = log_lines(&events)
        .into_iter()
        .filter(|line| line.starts_with("xxx"))
        .collect();
    assert!(
        long.iter().all(|line| line.len() <= 64 * 1024),
        "a row over 64 KiB"
    );
    assert_eq!(long.iter().map(String::len).sum::<usize>(), 2_000_000);

    let (result, events) = run(
        spec("on: push\njobs:\n  job:\n    steps:\n      - run: truncate -s 65M \"$GITHUB_ENV\"\n"),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(result, Conclusion::Failure);
    let lines = log_lines(&events);
    assert!(
        lines
            .iter()
            .any(|line| line.contains("is larger than 67108864 bytes")),
        "{lines:#?}"
    );
}
