//! `exec` on the docker backend: connecting to the engine and the per-job backend configuration.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value as Json;

use super::ExecArgs;
use crate::executor::JobSpec;
use crate::executor::backend::docker::{self, DockerBackend, DockerJobConfig, JobIdentity};

/// A job container's keep-alive (upstream exec: 3 h).
const EXEC_MAX_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// How long services may take to become healthy.
const SERVICE_READY_LIMIT: Duration = Duration::from_secs(300);
/// Upper bound on pulling one image.
const PULL_LIMIT: Duration = Duration::from_secs(600);

/// A Docker backend for one job of this run, on the `-i` image.
pub async fn docker_backend(args: &ExecArgs, spec: &JobSpec) -> anyhow::Result<DockerBackend> {
    let host = docker::connect::discover_docker_host_from_process(&args.docker_host)
        .context("cannot find the Docker daemon")?;
    let client = docker::connect::connect(&host)
        .await
        .with_context(|| format!("cannot connect to Docker at {host}"))?;
    let repository = spec
        .github
        .get("repository")
        .and_then(Json::as_str)
        .unwrap_or("local/repo")
        .to_string();
    let event = spec
        .github
        .get("event_name")
        .and_then(Json::as_str)
        .unwrap_or("push")
        .to_string();
    let workflow_name = Path::new(&spec.workflow_file)
        .file_stem()
        .map_or_else(String::new, |stem| stem.to_string_lossy().into_owned());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let valid_volumes = if args.valid_volumes.is_empty() {
        vec![String::from("**")]
    } else {
        args.valid_volumes.clone()
    };
    let config = DockerJobConfig {
        image: args.image.clone(),
        credentials: None,
        runner_options: args.container_opts.clone(),
        job_options: String::new(),
        env: std::collections::BTreeMap::new(),
        volumes: Vec::new(),
        ports: Vec::new(),
        services: Vec::new(),
        network: args.network.clone(),
        privileged_allowed: args.privileged,
        valid_volumes,
        force_pull: false,
        docker_socket: docker::connect::socket_to_mount(&args.docker_host, &host),
        container_name: format!(
            "GITEA-ACTIONS-TASK-{event}_WORKFLOW-{workflow_name}_JOB-{}-{suffix}",
            spec.job_id
        ),
        job_alias: spec.job_id.clone(),
        identity: JobIdentity {
            runner_uuid: String::from("act-runner-exec"),
            task_id: 0,
        },
        workspace: format!("/workspace/{repository}"),
        max_lifetime: EXEC_MAX_LIFETIME,
        service_ready_timeout: Some(SERVICE_READY_LIMIT),
        pull_timeout: PULL_LIMIT,
    };
    Ok(DockerBackend::new(client, config))
}
