//! Workflow conformance: every file under `tests/workflows/` (and `tests/workflows/invalid/`) runs
//! through `act_runner exec`. Each workflow checks itself (a step exits 1 on a mismatch); a header
//! of `# key: value` comment lines tells the harness what else to expect:
//! - `expect: success|failure|invalid` (default success): the exit code of `exec` (0, 1 or 78);
//! - `backends: host docker` (default both): where the workflow is meaningful;
//! - `args: ...`: extra `exec` flags (split like a shell);
//! - `directory: path`: the working tree (`-C`), relative to `tests/workflows/` (default: an empty
//!   temporary directory);
//! - `setenv: K=V`: an environment variable for `exec` (`\n` in V is a newline);
//! - `output-contains: text` / `output-lacks: text`: checks on stdout plus stderr;
//! - `output-order: text` (repeated): each text appears after the previous one;
//! - `copy: FROM TO` (repeated): before the run, `tests/workflows/FROM` is copied to `TO` in the
//!   working directory (`-C`), e.g. a reusable workflow the run calls as `./TO`.
//!
//! A run's failures are collected and reported together, each under the workflow's file name.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One workflow run may take this long at most.
const RUN_LIMIT: Duration = Duration::from_secs(120);

struct Expectations {
    /// The exit code `exec` must end with.
    code: i32,
    backends: Vec<String>,
    args: Vec<String>,
    directory: Option<PathBuf>,
    setenv: Vec<(String, String)>,
    contains: Vec<String>,
    lacks: Vec<String>,
    order: Vec<String>,
    copies: Vec<(String, String)>,
}

fn expectations(path: &Path) -> Expectations {
    let text = std::fs::read_to_string(path).unwrap();
    let mut expectations = Expectations {
        code: 0,
        backends: vec!["host".into(), "docker".into()],
        args: Vec::new(),
        directory: None,
        setenv: Vec::new(),
        contains: Vec::new(),
        lacks: Vec::new(),
        order: Vec::new(),
        copies: Vec::new(),
    };
    for line in text.lines().take_while(|line| line.starts_with('#')) {
        let Some((key, value)) = line.trim_start_matches('#').trim().split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "expect" => {
                expectations.code = match value {
                    "success" => 0,
                    "failure" => 1,
                    "invalid" => 78,
                    other => panic!("{}: unknown expectation {other:?}", path.display()),
                }
            }
            "backends" => {
                expectations.backends = value.split_whitespace().map(String::from).collect()
            }
            "args" => expectations.args.extend(shell_words::split(value).unwrap()),
            "directory" => expectations.directory = Some(workflows_dir().join(value)),
            "setenv" => {
                let (name, value) = value.split_once('=').unwrap();
                expectations
                    .setenv
                    .push((name.into(), value.replace("\\n", "\n")));
            }
            "output-contains" => expectations.contains.push(value.into()),
            "output-lacks" => expectations.lacks.push(value.into()),
            "output-order" => expectations.order.push(value.into()),
            "copy" => {
                let (from, to) = value.split_once(' ').unwrap();
                expectations.copies.push((from.into(), to.trim().into()));
            }
            _ => {}
        }
    }
    expectations
}

pub fn workflow_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    files
}

pub fn workflows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workflows")
}

/// Runs one workflow file on `backend` (`host` or an image name); `Err` says what went wrong.
pub fn run_workflow(path: &Path, backend: &str, image_args: &[&str]) -> Result<(), String> {
    run_workflow_with(path, backend, image_args, &[])
}

/// As [`run_workflow`], with more environment variables for `exec`.
pub fn run_workflow_with(
    path: &Path,
    backend: &str,
    image_args: &[&str],
    env: &[(&str, &str)],
) -> Result<(), String> {
    let expectations = expectations(path);
    if !expectations.backends.iter().any(|name| name == backend) {
        return Ok(());
    }
    let work_dir = tempfile::tempdir().unwrap();
    for (from, to) in &expectations.copies {
        let target = work_dir.path().join(to);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(workflows_dir().join(from), target).unwrap();
    }
    let mut command = assert_cmd::Command::cargo_bin("act_runner").unwrap();
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("exec")
        .arg("-W")
        .arg(path)
        .arg("-C")
        .arg(expectations.directory.as_deref().unwrap_or(work_dir.path()))
        .args(image_args)
        .args(&expectations.args)
        .timeout(RUN_LIMIT);
    for (name, value) in &expectations.setenv {
        command.env(name, value);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command
        .output()
        .map_err(|error| format!("cannot run exec: {error}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut problems = Vec::new();
    if output.status.code() != Some(expectations.code) {
        problems.push(format!(
            "expected exit status {}, got {:?} (none: a crash or a timeout?)",
            expectations.code,
            output.status.code()
        ));
    }
    for wanted in &expectations.contains {
        if !text.contains(wanted.as_str()) {
            problems.push(format!("output lacks `{wanted}`"));
        }
    }
    for unwanted in &expectations.lacks {
        if text.contains(unwanted.as_str()) {
            problems.push(format!("output contains `{unwanted}`"));
        }
    }
    let mut from = 0;
    for wanted in &expectations.order {
        match text[from..].find(wanted.as_str()) {
            Some(at) => from += at + wanted.len(),
            None => problems.push(format!("output lacks `{wanted}` after the texts before it")),
        }
    }
    if text.contains("panicked") {
        problems.push("the runner panicked".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n--- output ---\n{text}", problems.join("; ")))
    }
}

/// Runs every workflow of `dir` (`n_workers` at a time) and fails with all failures named.
pub fn check_all(dir: &Path, backend: &str, image_args: &[&str], n_workers: usize) {
    let files = workflow_files(dir);
    assert!(!files.is_empty(), "no workflows in {}", dir.display());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..n_workers {
            scope.spawn(|| {
                loop {
                    let idx = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(path) = files.get(idx) else { break };
                    if let Err(problem) = run_workflow(path, backend, image_args) {
                        act_runner::sync::lock(&failures)
                            .push(format!("== {} ({backend}): {problem}", path.display()));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} workflow(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn at_least_forty_self_checking_workflows_exist() {
    let n_workflows = workflow_files(&workflows_dir()).len();
    assert!(n_workflows >= 40, "only {n_workflows} workflows");
}

#[test]
fn workflows_pass_on_the_host_backend() {
    check_all(&workflows_dir(), "host", &["-i", "-self-hosted"], 2);
}

#[test]
fn invalid_workflows_fail_with_line_and_column() {
    check_all(
        &workflows_dir().join("invalid"),
        "host",
        &["-i", "-self-hosted"],
        2,
    );
}

/// The test image every `runs-on` maps to on the docker backend (built by `tests/setup.d/20-docker-images.sh`).
pub const DOCKER_TEST_IMAGE: &str = "act-runner-test/debian:12";

/// Whether the engine and the test image are there; without them the docker tests fail under `CI`
/// and are skipped (with the reason printed) otherwise.
pub fn docker_ready() -> bool {
    let ready = std::process::Command::new("docker")
        .args(["image", "inspect", DOCKER_TEST_IMAGE])
        .output()
        .is_ok_and(|output| output.status.success());
    let reason = format!(
        "docker or the image {DOCKER_TEST_IMAGE} is missing (run tests/setup.d/20-docker-images.sh)"
    );
    crate::support::require(ready, &reason)
}

#[test]
fn workflows_pass_on_the_docker_backend() {
    if docker_ready() {
        check_all(&workflows_dir(), "docker", &["-i", DOCKER_TEST_IMAGE], 4);
    }
}

/// Host-label jobs naming containers (`tests/workflows/host-label/`): a job `container:` runs in
/// Docker, and what cannot run is refused with the reason; never run as if the keys were absent.
#[test]
fn host_label_jobs_with_containers_run_in_docker_or_fail_saying_why() {
    if docker_ready() {
        check_all(
            &workflows_dir().join("host-label"),
            "host",
            &["-i", "-self-hosted"],
            2,
        );
    }
}

#[test]
fn exec_copies_the_working_tree_without_what_git_ignores_unless_told() {
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(git.success());
    std::fs::write(root.join(".gitignore"), "ignored.txt\n").unwrap();
    std::fs::write(root.join("ignored.txt"), "left out").unwrap();
    std::fs::write(root.join("kept.txt"), "copied").unwrap();
    std::fs::write(
        root.join("check.yml"),
        "on: push\njobs:\n  tree:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          \
         test \"$(cat kept.txt)\" = copied\n          test -d .git\n          \
         if [ \"$WANT_IGNORED\" = yes ]; then test -f ignored.txt; else test ! -e ignored.txt; fi\n",
    )
    .unwrap();
    for (flags, want_ignored) in [
        (&[][..], "no"),
        (&["--use-gitignore"][..], "no"),
        (&["--use-gitignore=false"][..], "yes"),
    ] {
        let output = assert_cmd::Command::cargo_bin("act_runner")
            .unwrap()
            .args(["exec", "-i", "-self-hosted", "-W", "check.yml", "-C"])
            .arg(root)
            .args(flags)
            .args(["--env", &format!("WANT_IGNORED={want_ignored}")])
            .timeout(RUN_LIMIT)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{flags:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Without `-d`, exec still shows the runner's own warnings on stderr, apart from the job's
/// output and without the debug log: here the step leaves a file where the job's directory was
/// (under `TMPDIR`), so the clean-up fails and says so.
#[test]
fn exec_without_debug_prints_the_runners_warnings_on_stderr() {
    let scratch = tempfile::tempdir().unwrap();
    let workflow = scratch.path().join("warn.yml");
    std::fs::write(
        &workflow,
        "on: push\njobs:\n  warn:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          \
         root=$(dirname \"$RUNNER_TEMP\"); cd /; rm -rf \"$root\"; touch \"$root\"\n",
    )
    .unwrap();
    let jobs_dir = tempfile::tempdir().unwrap();
    let output = assert_cmd::Command::cargo_bin("act_runner")
        .unwrap()
        .args(["exec", "-i", "-self-hosted", "-W"])
        .arg(&workflow)
        .arg("-C")
        .arg(scratch.path())
        .env("TMPDIR", jobs_dir.path())
        .env_remove("RUST_LOG")
        .timeout(RUN_LIMIT)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("job clean-up failed"), "{stderr}");
    assert!(!stdout.contains("job clean-up failed"), "{stdout}");
    assert!(!stderr.contains("running job"), "debug log shown: {stderr}");
}
