//! The host backend against real processes: output, exit codes, the explicit environment, kills,
//! the terminal of `runner.allocate_pty`, the shared tool cache, files.

use super::*;

async fn run(
    backend: &HostBackend,
    script: &str,
    timeout: Option<Duration>,
    cancel: CancellationToken,
) -> (ExitStatus, Vec<String>) {
    let (tx, mut rx) = mpsc::channel(64);
    let request = ExecRequest {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: backend.base_env(),
        working_dir: None,
        timeout,
        files: Vec::new(),
        command_dir: None,
    };
    let status = tokio::time::timeout(Duration::from_secs(20), backend.exec(request, tx, cancel))
        .await
        .unwrap()
        .unwrap()
        .status;
    let mut lines = Vec::new();
    while let Ok(Some(output)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        let output: OutputLines = output;
        lines.extend(output.lines.iter().map(String::from));
    }
    (status, lines)
}

async fn prepared() -> (tempfile::TempDir, HostBackend) {
    let parent = tempfile::tempdir().unwrap();
    let mut backend = HostBackend::new(parent.path());
    let (tx, _rx) = mpsc::channel(8);
    backend.prepare(&tx).await.unwrap();
    (parent, backend)
}

#[tokio::test]
async fn output_and_exit_code_are_reported() {
    let (_parent, backend) = prepared().await;
    let (status, lines) = run(
        &backend,
        "echo one; echo two >&2; exit 3",
        None,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(3));
    assert!(lines.contains(&"one".to_string()) && lines.contains(&"two".to_string()));
}

#[tokio::test]
async fn environment_is_explicit() {
    let (_parent, backend) = prepared().await;
    let (_, lines) = run(
        &backend,
        "echo \"[$NOTIFY_SOCKET][$INVOCATION_ID]\"",
        None,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(lines, ["[][]"]);
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let (_parent, backend) = prepared().await;
    let marker = backend.paths().temp.join("alive");
    let script = format!("(sleep 3; touch {}) & sleep 30", marker.display());
    let started = tokio::time::Instant::now();
    let (status, _) = run(
        &backend,
        &script,
        Some(Duration::from_millis(300)),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(status, ExitStatus::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!marker.exists(), "the background child survived the kill");
}

#[tokio::test]
async fn cancellation_stops_the_command() {
    let (_parent, backend) = prepared().await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let (status, _) = run(&backend, "sleep 30", None, cancel).await;
    assert_eq!(status, ExitStatus::Cancelled);
}

#[tokio::test]
async fn background_process_does_not_hold_the_step() {
    let (_parent, backend) = prepared().await;
    let started = tokio::time::Instant::now();
    let (status, _) = run(
        &backend,
        "sleep 20 & echo started",
        None,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(0));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn with_allocate_pty_a_step_writes_to_a_terminal_and_ends_as_without_one() {
    let parent = tempfile::tempdir().unwrap();
    let options = HostOptions {
        allocate_pty: true,
        shared_tool_cache: None,
        scope: ProcessScope::private(),
    };
    let mut backend = HostBackend::with_options(parent.path(), options);
    let (tx, _rx) = mpsc::channel(8);
    backend.prepare(&tx).await.unwrap();
    let script = "test -t 0 && test -t 1 && test -t 2 && echo terminal; echo err >&2; printf 'no newline'; exit 3";
    let (status, lines) = run(&backend, script, None, CancellationToken::new()).await;
    assert_eq!(status, ExitStatus::Exited(3));
    assert_eq!(lines, ["terminal", "err", "no newline"]);

    // A child left running holds the terminal, not the step.
    let started = tokio::time::Instant::now();
    let (status, lines) = run(
        &backend,
        "sleep 30 & echo started",
        None,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(lines, ["started"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    backend.cleanup().await.unwrap();

    let (_parent, backend) = prepared().await;
    let (_, lines) = run(
        &backend,
        "test -t 1 && echo terminal || echo pipe",
        None,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(lines, ["pipe"]);
}

#[tokio::test]
async fn a_shared_tool_cache_is_outside_the_job_directory_and_outlives_it() {
    let parent = tempfile::tempdir().unwrap();
    let shared = parent.path().join("tool_cache");
    let options = HostOptions {
        allocate_pty: false,
        shared_tool_cache: Some(shared.clone()),
        scope: ProcessScope::private(),
    };
    let mut backend = HostBackend::with_options(parent.path(), options);
    let (tx, _rx) = mpsc::channel(8);
    backend.prepare(&tx).await.unwrap();
    assert_eq!(backend.paths().tool_cache, shared);
    let (status, _) = run(
        &backend,
        &format!("echo kept > {}/tool", shared.display()),
        None,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(0));
    backend.cleanup().await.unwrap();
    assert!(shared.join("tool").is_file());
}

#[tokio::test]
async fn files_round_trip_and_cleanup_removes_the_directory() {
    let (_parent, mut backend) = prepared().await;
    let path = backend.paths().temp.join("x/y.txt");
    backend
        .write_file(path.to_str().unwrap(), b"hi", 0o600)
        .await
        .unwrap();
    assert_eq!(
        backend
            .read_file(path.to_str().unwrap())
            .await
            .unwrap()
            .unwrap(),
        b"hi"
    );
    assert_eq!(backend.read_file("missing").await.unwrap(), None);
    let root = backend.root().to_path_buf();
    backend.cleanup().await.unwrap();
    assert!(!root.exists());
}

/// A cgroup tree that records what the backend asks of it; its launcher runs the command under
/// `env` with the cgroup's directory in `FAKE_CGROUP`.
#[derive(Debug, Default)]
struct FakeTree {
    calls: Mutex<Vec<String>>,
}

impl JobCgroupTree for FakeTree {
    fn create(&self, job: &str) -> std::io::Result<PathBuf> {
        sync::lock(&self.calls).push(format!("create {job}"));
        Ok(PathBuf::from(format!("/fake/jobs/{job}")))
    }

    fn launcher(&self, cgroup: &Path) -> Vec<std::ffi::OsString> {
        vec![
            "env".into(),
            format!("FAKE_CGROUP={}", cgroup.display()).into(),
        ]
    }

    fn finish(&self, job: &str) {
        sync::lock(&self.calls).push(format!("finish {job}"));
    }
}

#[tokio::test]
async fn with_a_cgroup_tree_every_command_starts_in_the_jobs_cgroup_and_cleanup_ends_it() {
    let parent = tempfile::tempdir().unwrap();
    let tree = Arc::new(FakeTree::default());
    let options = HostOptions {
        allocate_pty: false,
        shared_tool_cache: None,
        scope: ProcessScope::private().with_cgroups(tree.clone()),
    };
    let mut backend = HostBackend::with_options(parent.path(), options);
    let job = backend.job.clone();
    let (tx, _rx) = mpsc::channel(8);
    backend.prepare(&tx).await.unwrap();
    let (status, lines) = run(
        &backend,
        "echo \"$FAKE_CGROUP\"",
        None,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(lines, [format!("/fake/jobs/{job}")]);
    backend.cleanup().await.unwrap();
    assert_eq!(
        *sync::lock(&tree.calls),
        [format!("create {job}"), format!("finish {job}")]
    );
}
