//! Step containers (docker actions) and the images of Dockerfile actions.
//!
//! A step container runs next to the job container: it joins its network namespace
//! (`container:<job>`), takes its volumes (`volumes_from`), carries the job's labels (so cleanup
//! and orphan removal find it), and sees the job's workspace and temp directory: they are copied
//! in before it starts and back into the job container after it ends (the job container keeps them
//! in its own filesystem, not in volumes). Output is streamed line by line; on cancellation or
//! timeout the container is killed. It is always removed afterwards.
//!
//! Its program runs through `inline_files::one_stream` (stderr into stdout) when the image has
//! `sh`, so `::add-mask::` printed on stdout masks what stderr prints right after: Docker reads
//! the two pipes of a container separately and gives no order between them. An image without
//! `sh` fails to start that way; its container is made again unwrapped, with two streams.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
    KillContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::exec::{forward, sleep_until_deadline};
use super::lines::LineSplitter;
use super::{bounded, container, describe, files, image, inline_files, is_not_found, send_log};
use crate::executor::backend::{
    BackendError, BuildContext, BuildRequest, ContainerRun, ExitStatus, OutputLines, Stream,
};
use crate::executor::line_batch::LineBatch;

/// Bound on copying the workspace or the temp directory between the job and a step container.
const COPY_LIMIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Bound on building one action image.
const BUILD_LIMIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// What the runtime says when a container's `sh` is not in its image (`executable file not found
/// in $PATH`, or `stat ...: no such file or directory` for a path).
const NO_SHELL: &str = r#"exec: "sh": "#;

/// What a step container needs from its job.
pub struct JobSide<'a> {
    pub docker: &'a Docker,
    pub job_container: &'a str,
    pub workspace: &'a str,
    pub temp: &'a str,
    pub labels: HashMap<String, String>,
    pub pull_timeout: std::time::Duration,
    /// `container.privileged`: step containers run privileged too, as the job's do.
    pub privileged: bool,
}

/// Runs one step container to its end and returns how it ended.
pub async fn run(
    job: JobSide<'_>,
    request: ContainerRun,
    output: mpsc::Sender<OutputLines>,
    cancel: CancellationToken,
) -> Result<ExitStatus, BackendError> {
    let docker = job.docker;
    let deadline = request.timeout.map(|timeout| Instant::now() + timeout);
    let (log_tx, mut log_rx) = mpsc::channel(64);
    let ensured = image::ensure_image(
        docker,
        &request.image,
        None,
        None,
        image::PullPolicy::Missing,
        job.pull_timeout,
        &log_tx,
    )
    .await;
    drop(log_tx);
    while let Some(line) = log_rx.recv().await {
        let _ = output
            .send(OutputLines {
                stream: Stream::Stdout,
                lines: LineBatch::one(line),
            })
            .await;
    }
    ensured?;

    let env: Vec<String> = request
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let cmd = (!request.args.is_empty()).then(|| request.args.clone());
    let plain = container_body(
        &job,
        &request.image,
        request.entrypoint.clone(),
        cmd,
        env.clone(),
    );
    let program = program(docker, &request).await?;
    if !program.is_empty() {
        let (argv, env) = inline_files::one_stream(program, env);
        let wrapped = container_body(&job, &request.image, Some(argv), None, env);
        let streams = (output.clone(), cancel.clone());
        match attempt(&job, &request, wrapped, true, deadline, streams).await? {
            Ran::Ended(status) => return Ok(status),
            Ran::NoShell => tracing::debug!(
                image = %request.image,
                "the image has no `sh`: its step container runs unwrapped, stdout and stderr read apart"
            ),
        }
    }
    match attempt(&job, &request, plain, false, deadline, (output, cancel)).await? {
        Ran::Ended(status) => Ok(status),
        // Only a wrapped program reports a missing `sh`.
        Ran::NoShell => Ok(ExitStatus::Exited(127)),
    }
}

/// How one attempt at a step container ended.
enum Ran {
    Ended(ExitStatus),
    /// The wrapped program could not start: the image has no `sh`.
    NoShell,
}

/// What the container is made of; `entrypoint` and `cmd` as the Docker API takes them.
fn container_body(
    job: &JobSide<'_>,
    image: &str,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint,
        cmd,
        env: Some(env),
        working_dir: Some(job.workspace.to_string()),
        labels: Some(job.labels.clone()),
        host_config: Some(HostConfig {
            network_mode: Some(format!("container:{}", job.job_container)),
            volumes_from: Some(vec![job.job_container.to_string()]),
            privileged: job.privileged.then_some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The program the container runs, entrypoint then arguments, merged with the image's as the
/// Docker daemon merges them: an entrypoint given drops the image's `Cmd`.
async fn program(docker: &Docker, request: &ContainerRun) -> Result<Vec<String>, BackendError> {
    let inspected = bounded(
        format!("inspect image {}", request.image),
        docker.inspect_image(&request.image),
    )
    .await?;
    let config = inspected.config.unwrap_or_default();
    let entrypoint = match &request.entrypoint {
        Some(entrypoint) => entrypoint.clone(),
        None => config.entrypoint.unwrap_or_default(),
    };
    let args = if !request.args.is_empty() {
        request.args.clone()
    } else if request.entrypoint.as_ref().is_some_and(|e| !e.is_empty()) {
        Vec::new()
    } else {
        config.cmd.unwrap_or_default()
    };
    Ok(entrypoint.into_iter().chain(args).collect())
}

/// Creates, runs and removes one step container.
async fn attempt(
    job: &JobSide<'_>,
    request: &ContainerRun,
    body: ContainerCreateBody,
    wrapped: bool,
    deadline: Option<Instant>,
    (output, cancel): (mpsc::Sender<OutputLines>, CancellationToken),
) -> Result<Ran, BackendError> {
    let docker = job.docker;
    let name = format!(
        "{}-step-{}",
        job.job_container,
        uuid::Uuid::new_v4().simple()
    );
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    bounded(
        format!("create step container for {}", request.image),
        docker.create_container(Some(options), body),
    )
    .await?;
    let ran = run_created(job, &name, wrapped, deadline, output, cancel).await;
    let removed = container::remove_container(docker, &name).await;
    let ran = ran?;
    removed?;
    Ok(ran)
}

async fn run_created(
    job: &JobSide<'_>,
    name: &str,
    wrapped: bool,
    deadline: Option<Instant>,
    output: mpsc::Sender<OutputLines>,
    cancel: CancellationToken,
) -> Result<Ran, BackendError> {
    let docker = job.docker;
    for path in [job.workspace, job.temp] {
        copy_dir(docker, job.job_container, name, path).await?;
    }
    let attach = AttachContainerOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .stream(true)
        .logs(true)
        .build();
    let attached = bounded(
        format!("attach to {name}"),
        docker.attach_container(name, Some(attach)),
    )
    .await?;
    let mut frames = attached.output;
    let started = bounded(
        format!("start step container {name}"),
        docker.start_container(name, None),
    )
    .await;
    match started {
        Err(BackendError::Docker(message)) if wrapped && message.contains(NO_SHELL) => {
            return Ok(Ran::NoShell);
        }
        started => started?,
    }
    let mut stdout = LineSplitter::default();
    let mut stderr = LineSplitter::default();
    let interrupted = loop {
        let frame = tokio::select! {
            biased;
            _ = cancel.cancelled() => break Some(ExitStatus::Cancelled),
            _ = sleep_until_deadline(deadline) => break Some(ExitStatus::TimedOut),
            frame = frames.next() => frame,
        };
        match frame {
            None | Some(Err(_)) => break None,
            Some(Ok(frame)) => forward(frame, &mut stdout, &mut stderr, &output, None).await,
        }
    };
    if interrupted.is_some() {
        let kill = KillContainerOptionsBuilder::default()
            .signal("KILL")
            .build();
        let _ = bounded(
            "kill step container",
            docker.kill_container(name, Some(kill)),
        )
        .await;
    }
    for (splitter, stream) in [(&mut stdout, Stream::Stdout), (&mut stderr, Stream::Stderr)] {
        if let Some(line) = splitter.finish() {
            let lines = LineBatch::one(line);
            let _ = output.send(OutputLines { stream, lines }).await;
        }
    }
    if let Some(status) = interrupted {
        return Ok(Ran::Ended(status));
    }
    let mut waits = docker.wait_container(name, None);
    let code = match tokio::time::timeout(super::API_TIMEOUT, waits.next()).await {
        Ok(Some(Ok(response))) => response.status_code,
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
        Ok(Some(Err(err))) => {
            return Err(BackendError::Docker(format!(
                "wait for {name}: {}",
                describe(&err)
            )));
        }
        Ok(None) | Err(_) => {
            return Err(BackendError::Docker(format!(
                "wait for {name}: no exit code"
            )));
        }
    };
    // What the action wrote (workspace files, GITHUB_OUTPUT, GITHUB_ENV) goes back to the job.
    for path in [job.workspace, job.temp] {
        copy_dir(docker, name, job.job_container, path).await?;
    }
    Ok(Ran::Ended(ExitStatus::Exited(code)))
}

/// Copies the directory `path` from one container to the same place in another.
async fn copy_dir(docker: &Docker, from: &str, to: &str, path: &str) -> Result<(), BackendError> {
    files::copy_dir(docker, from, to, path.trim_end_matches('/'), COPY_LIMIT).await
}

/// Builds a docker action's image unless it exists (or `force`).
pub async fn build(
    docker: &Docker,
    job_container: Option<&str>,
    request: BuildRequest,
    log: mpsc::Sender<String>,
) -> Result<(), BackendError> {
    if !request.force {
        match docker.inspect_image(&request.tag).await {
            Ok(_) => return Ok(()),
            Err(err) if is_not_found(&err) => {}
            Err(err) => {
                return Err(BackendError::Docker(format!(
                    "inspect image {}: {}",
                    request.tag,
                    describe(&err)
                )));
            }
        }
    }
    let (context, dockerfile) = match &request.context {
        BuildContext::HostDir(dir) => {
            (files::pack_dir(dir, ".").await?, request.dockerfile.clone())
        }
        BuildContext::EnvironmentDir(dir) => {
            let container = job_container.ok_or_else(|| {
                BackendError::Docker(String::from("the job container is not running"))
            })?;
            let dir = dir.trim_end_matches('/');
            let archive = files::download(docker, container, dir)
                .await?
                .ok_or_else(|| BackendError::Docker(format!("{dir} does not exist")))?;
            let base = dir.rsplit('/').next().unwrap_or_default();
            (archive, format!("{base}/{}", request.dockerfile))
        }
    };
    send_log(&log, format!("Building image {}", request.tag)).await;
    let options = BuildImageOptionsBuilder::default()
        .dockerfile(&dockerfile)
        .t(&request.tag)
        .rm(true)
        .forcerm(true)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let building = async {
        while let Some(item) = stream.next().await {
            let info = item.map_err(|err| {
                BackendError::Docker(format!("build {}: {}", request.tag, describe(&err)))
            })?;
            if let Some(detail) = info.error_detail {
                return Err(BackendError::Docker(format!(
                    "build {}: {}",
                    request.tag,
                    detail.message.unwrap_or_default()
                )));
            }
            if let Some(text) = info.stream {
                for line in text.lines().filter(|line| !line.trim().is_empty()) {
                    send_log(&log, line.to_string()).await;
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(BUILD_LIMIT, building).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::Docker(format!(
            "build {}: not done within {}",
            request.tag,
            humantime::format_duration(BUILD_LIMIT)
        ))),
    }
}
