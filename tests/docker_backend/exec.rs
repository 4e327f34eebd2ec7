//! Steps in the job container: output as it is printed, exit codes, env and working directory,
//! files, the shell step's own end report, a terminal with `allocate_pty`, timeout and cancel.

use super::*;

#[tokio::test]
async fn exec_streams_each_line_as_it_is_printed() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        let (status, lines) = run(
            &backend,
            request("echo first; sleep 2; echo second"),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        assert_eq!(texts(&lines), ["first", "second"]);
        assert!(
            lines[0].0 < Duration::from_millis(1500),
            "first line arrived after {:?}",
            lines[0].0
        );
        assert!(
            lines[1].0 >= Duration::from_secs(2),
            "second line arrived after {:?}",
            lines[1].0
        );
        backend.cleanup().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn exec_reports_exit_codes_and_merges_stderr_into_stdout_in_order() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        let (status, lines) = run(
            &backend,
            request("echo out; echo err >&2; exit 3"),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(3));
        let streams: Vec<_> = lines
            .iter()
            .map(|(_, stream, line)| (*stream, line.as_str()))
            .collect();
        // One stream in the order written, so an `add-mask` on either covers the next line.
        assert_eq!(
            streams,
            [(Stream::Stdout, "out"), (Stream::Stdout, "err")],
            "{streams:?}"
        );
        let (status, _) = run(&backend, request("true"), CancellationToken::new()).await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        let (status, lines) = run(
            &backend,
            request("printf 'no newline'"),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        assert_eq!(texts(&lines), ["no newline"]);
        backend.cleanup().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn exec_sets_env_and_working_directory() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(DEBIAN_IMAGE)).await;
        result.unwrap();
        let (status, _) = run(
            &backend,
            request("mkdir -p sub/dir"),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        let mut exec = request("echo \"$GREETING\"; pwd; echo \"$FROM_CONTAINER_ENV\"");
        exec.env
            .insert(String::from("GREETING"), String::from("hello world"));
        exec.working_dir = Some(String::from("sub/dir"));
        let (status, lines) = run(&backend, exec, CancellationToken::new()).await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        assert_eq!(
            texts(&lines),
            ["hello world", "/workspace/owner/repo/sub/dir", "yes"]
        );
        let (_, lines) = run(&backend, request("pwd"), CancellationToken::new()).await;
        assert_eq!(texts(&lines), ["/workspace/owner/repo"]);
        backend.cleanup().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn configure_applies_the_workflow_container_and_base_env_has_the_image_path() {
    with_docker(|docker| async move {
        let mut backend = DockerBackend::new(docker.clone(), job_config(BUSYBOX_IMAGE));
        let job = ContainerSpec {
            image: DEBIAN_IMAGE.to_string(),
            env: BTreeMap::from([(String::from("FROM_WORKFLOW"), String::from("1"))]),
            options: String::from("--hostname wf-host"),
            ..Default::default()
        };
        backend
            .configure(JobContainers {
                job: Some(job),
                services: Vec::new(),
            })
            .unwrap();
        let (log_tx, _log_rx) = mpsc::channel(64);
        backend.prepare(&log_tx).await.unwrap();
        let base_env = backend.base_env();
        assert!(base_env["PATH"].contains("/usr/bin"), "{base_env:?}");
        assert_eq!(base_env["FROM_WORKFLOW"], "1");
        let mut exec = request("hostname; python3 -c 'print(6*7)'");
        exec.env = base_env;
        let (status, lines) = run(&backend, exec, CancellationToken::new()).await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0), "{lines:?}");
        assert_eq!(texts(&lines), ["wf-host", "42"]);
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}

#[tokio::test]
async fn files_round_trip_through_the_container() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        backend
            .write_file("/tmp/act/deep/script.sh", b"echo from-script\n", 0o755)
            .await
            .unwrap();
        let (status, lines) = run(
            &backend,
            request("/tmp/act/deep/script.sh"),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(status.unwrap(), ExitStatus::Exited(0));
        assert_eq!(texts(&lines), ["from-script"]);
        backend
            .write_file("relative.txt", b"in workspace", 0o644)
            .await
            .unwrap();
        assert_eq!(
            backend
                .read_file("/workspace/owner/repo/relative.txt")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"in workspace"[..])
        );
        let (_, lines) = run(
            &backend,
            request("printf 'a=1\\nb=2\\n' > out.env"),
            CancellationToken::new(),
        )
        .await;
        assert!(lines.is_empty());
        assert_eq!(
            backend.read_file("out.env").await.unwrap().as_deref(),
            Some(&b"a=1\nb=2\n"[..])
        );
        assert_eq!(
            backend.read_file("/tmp/does-not-exist").await.unwrap(),
            None
        );
        backend.cleanup().await.unwrap();
    })
    .await;
}

/// A shell step as the executor sends one: its script and empty command files go along with
/// the exec, and their directory is named so the backend can report on it.
fn shell_step(script: &str) -> ExecRequest {
    let dir = "/tmp/act/commands/step";
    let new_file = |path: String, contents: &str| NewFile {
        path,
        contents: contents.as_bytes().to_vec(),
        mode: 0o644,
    };
    ExecRequest {
        argv: ["sh", "-e", "/tmp/act/step.sh"].map(String::from).to_vec(),
        files: vec![
            new_file(format!("{dir}/set_env"), ""),
            new_file(format!("{dir}/set_output"), ""),
            new_file(String::from("/tmp/act/step.sh"), script),
        ],
        command_dir: Some(dir.to_string()),
        ..request("")
    }
}

#[tokio::test]
async fn a_shell_step_reports_its_end_itself_and_the_report_never_reaches_the_log() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        let quiet = "echo out; echo err >&2; printf 'no newline' >&2; exit 3";
        let (end, lines) = run_to_end(&backend, shell_step(quiet), CancellationToken::new()).await;
        assert_eq!(
            end.unwrap(),
            ExecEnd {
                status: ExitStatus::Exited(3),
                command_dir_empty: true
            }
        );
        // The step's stderr joins its stdout, so the lines keep the order they were written in.
        let stdout: Vec<_> = lines
            .iter()
            .filter(|(_, stream, _)| *stream == Stream::Stdout)
            .map(|(_, _, line)| line.as_str())
            .collect();
        assert_eq!(stdout, ["out", "err", "no newline"]);
        assert_eq!(texts(&lines).len(), 3, "{lines:?}");

        let writes = "echo name=value >> /tmp/act/commands/step/set_output";
        let (end, lines) = run_to_end(&backend, shell_step(writes), CancellationToken::new()).await;
        assert_eq!(
            end.unwrap(),
            ExecEnd {
                status: ExitStatus::Exited(0),
                command_dir_empty: false
            }
        );
        assert!(lines.is_empty(), "{lines:?}");
        let written = backend
            .read_dir_files("/tmp/act/commands/step")
            .await
            .unwrap();
        assert_eq!(written["set_output"], b"name=value\n");

        let killed = "kill -9 $$";
        let (end, _) = run_to_end(&backend, shell_step(killed), CancellationToken::new()).await;
        assert_eq!(end.unwrap().status, ExitStatus::Exited(128 + 9));

        // Without a command directory there is no report: the exit code comes from Docker.
        let mut plain = shell_step("exit 4");
        plain.command_dir = None;
        let (end, _) = run_to_end(&backend, plain, CancellationToken::new()).await;
        assert_eq!(end.unwrap(), ExitStatus::Exited(4).into());
        backend.cleanup().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn with_allocate_pty_a_step_writes_to_a_terminal_and_ends_as_without_one() {
    with_docker(|docker| async move {
        let mut config = job_config(BUSYBOX_IMAGE);
        config.allocate_pty = true;
        let (mut backend, result, _) = prepared(&docker, config).await;
        result.unwrap();
        let script = "test -t 0 && test -t 1 && test -t 2 && echo terminal; echo err >&2; printf 'no newline'; exit 3";
        let (end, lines) = run_to_end(&backend, shell_step(script), CancellationToken::new()).await;
        assert_eq!(
            end.unwrap(),
            ExecEnd {
                status: ExitStatus::Exited(3),
                command_dir_empty: true
            }
        );
        // One stream in the order written, without the terminal's `\r` and without the report.
        let all: Vec<_> = lines.iter().map(|(_, stream, line)| (*stream, line.as_str())).collect();
        assert_eq!(
            all,
            [
                (Stream::Stdout, "terminal"),
                (Stream::Stdout, "err"),
                (Stream::Stdout, "no newline")
            ]
        );

        // A child left running holds the terminal, not the step.
        let started = Instant::now();
        let (end, lines) =
            run_to_end(&backend, shell_step("sleep 30 & echo started"), CancellationToken::new())
                .await;
        assert_eq!(end.unwrap().status, ExitStatus::Exited(0));
        assert_eq!(texts(&lines), ["started"]);
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

        let mut slow = shell_step("sleep 30");
        slow.timeout = Some(Duration::from_millis(500));
        let (end, _) = run_to_end(&backend, slow, CancellationToken::new()).await;
        assert_eq!(end.unwrap().status, ExitStatus::TimedOut);
        backend.cleanup().await.unwrap();
    })
    .await;
}

/// How many processes in the container run `sleep <marker>`.
async fn count_sleepers(backend: &DockerBackend, marker: &str) -> usize {
    let script = format!(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '^sleep {marker} ' || true"
    );
    let (_, lines) = run(backend, request(&script), CancellationToken::new()).await;
    texts(&lines)
        .first()
        .and_then(|count| count.trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn timeout_kills_the_process_tree_inside_the_container() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        let mut exec = request("sleep 4242 & sleep 4242; echo never");
        exec.timeout = Some(Duration::from_secs(1));
        let started = Instant::now();
        let (status, lines) = run(&backend, exec, CancellationToken::new()).await;
        assert_eq!(status.unwrap(), ExitStatus::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "took {:?}",
            started.elapsed()
        );
        assert!(!texts(&lines).contains(&String::from("never")));
        assert_eq!(count_sleepers(&backend, "4242").await, 0);
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}

#[tokio::test]
async fn cancel_kills_the_process_and_cleanup_removes_everything() {
    with_docker(|docker| async move {
        let (mut backend, result, _) = prepared(&docker, job_config(BUSYBOX_IMAGE)).await;
        result.unwrap();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            trigger.cancel();
        });
        let started = Instant::now();
        let (status, lines) = run(&backend, request("echo started; exec sleep 4343"), cancel).await;
        assert_eq!(status.unwrap(), ExitStatus::Cancelled);
        assert_eq!(texts(&lines), ["started"]);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(count_sleepers(&backend, "4343").await, 0);
        backend.cleanup().await.unwrap();
        assert_all_gone(&docker, &backend).await;
    })
    .await;
}
