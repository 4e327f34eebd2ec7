//! `exec` on the docker backend: connecting to the engine once per run (with a small pool of
//! pre-created job networks) and the per-job backend configuration.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value as Json;

use super::ExecArgs;
use crate::executor::JobSpec;
use crate::executor::backend::docker::{
    self, DockerBackend, DockerJobConfig, JobIdentity, NetworkPool,
};

/// A job container's keep-alive (upstream exec: 3 h).
const EXEC_MAX_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// How long services may take to become healthy.
const SERVICE_READY_LIMIT: Duration = Duration::from_secs(300);
/// Upper bound on pulling one image.
const PULL_LIMIT: Duration = Duration::from_secs(600);

/// The runner UUID `exec` labels its containers and networks with.
const EXEC_RUNNER_UUID: &str = "act-runner-exec";
/// Spare job networks kept ready while `exec` runs.
const EXEC_NETWORK_POOL: usize = 2;

/// The Docker connection of one `exec` run.
pub struct DockerSession {
    client: bollard::Docker,
    host: String,
    /// `None` with `--network`, which names the network every job joins.
    network_pool: Option<NetworkPool>,
}

impl DockerSession {
    /// Connects and starts the network pool (its networks are created while the run plans).
    pub async fn connect(args: &ExecArgs) -> anyhow::Result<DockerSession> {
        let host = docker::connect::discover_docker_host_from_process(&args.docker_host)
            .context("cannot find the Docker daemon")?;
        let client = docker::connect::connect(&host)
            .await
            .with_context(|| format!("cannot connect to Docker at {host}"))?;
        let network_pool = args
            .network
            .is_none()
            .then(|| NetworkPool::start(client.clone(), EXEC_RUNNER_UUID, EXEC_NETWORK_POOL));
        Ok(DockerSession {
            client,
            host,
            network_pool,
        })
    }

    /// Removes the spare networks.
    pub async fn shutdown(&self) {
        if let Some(pool) = &self.network_pool {
            pool.shutdown().await;
        }
    }
}

/// A Docker backend for one job of this run, on the `-i` image.
pub fn docker_backend(session: &DockerSession, args: &ExecArgs, spec: &JobSpec) -> DockerBackend {
    let config = job_config(args, spec, &session.host, session.network_pool.clone());
    DockerBackend::new(session.client.clone(), config)
}

/// The backend configuration of one job, from the flags and the job.
fn job_config(
    args: &ExecArgs,
    spec: &JobSpec,
    host: &str,
    network_pool: Option<NetworkPool>,
) -> DockerJobConfig {
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
    DockerJobConfig {
        image: args.image.clone(),
        credentials: None,
        runner_options: runner_options(args),
        job_options: String::new(),
        env: std::collections::BTreeMap::new(),
        proxy_env: docker::proxy::runner_proxy_env(std::env::vars()),
        volumes: Vec::new(),
        ports: Vec::new(),
        services: Vec::new(),
        network: args.network.clone(),
        network_ip: Default::default(),
        network_pool,
        privileged: args.privileged,
        valid_volumes,
        force_pull: args.pull,
        docker_socket: docker::connect::socket_to_mount(&args.docker_host, host),
        container_name: format!(
            "GITEA-ACTIONS-TASK-{event}_WORKFLOW-{workflow_name}_JOB-{}-{suffix}",
            spec.job_id
        ),
        job_alias: spec.job_id.clone(),
        identity: JobIdentity {
            runner_uuid: String::from(EXEC_RUNNER_UUID),
            task_id: 0,
        },
        workspace: format!("/workspace/{repository}"),
        bind_workspace: false,
        shared_tool_cache: args.tool_cache_mode == "shared",
        allocate_pty: false,
        max_lifetime: EXEC_MAX_LIFETIME,
        service_ready_timeout: Some(SERVICE_READY_LIMIT),
        pull_timeout: PULL_LIMIT,
    }
}

/// `--container-opts`, then `--container-cap-add`, `--container-cap-drop`, `--userns` and
/// `--container-architecture` as the `docker run` options they stand for: runner options, so kept
/// even without `--privileged`.
fn runner_options(args: &ExecArgs) -> String {
    let mut options = args.container_opts.clone();
    let flags = (args.container_cap_add.iter().map(|cap| ("--cap-add", cap)))
        .chain(
            args.container_cap_drop
                .iter()
                .map(|cap| ("--cap-drop", cap)),
        )
        .chain(args.userns.iter().map(|mode| ("--userns", mode)))
        .chain((args.container_architecture.iter()).map(|platform| ("--platform", platform)));
    for (flag, value) in flags {
        if !options.is_empty() {
            options.push(' ');
        }
        options.push_str(&format!("{flag}={}", shell_words::quote(value)));
    }
    options
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        exec: ExecArgs,
    }

    fn config_for(flags: &[&str]) -> DockerJobConfig {
        let cli =
            Cli::try_parse_from(std::iter::once("exec").chain(flags.iter().copied())).unwrap();
        let spec = JobSpec::new(String::new(), String::from("ci.yml"), String::from("build"));
        job_config(&cli.exec, &spec, "unix:///var/run/docker.sock", None)
    }

    #[test]
    fn pull_flag_forces_the_pull_of_present_images() {
        assert!(!config_for(&[]).force_pull);
        assert!(config_for(&["-p"]).force_pull);
        assert!(config_for(&["--pull"]).force_pull);
    }

    #[test]
    fn capability_and_userns_flags_become_runner_options() {
        let config = config_for(&[
            "--container-opts=--cpus 1",
            "--container-cap-add",
            "SYS_PTRACE",
            "--container-cap-add=NET_ADMIN",
            "--container-cap-drop",
            "CHOWN",
            "--userns",
            "host",
            "--container-architecture",
            "linux/arm64",
        ]);
        assert_eq!(
            config.runner_options,
            "--cpus 1 --cap-add=SYS_PTRACE --cap-add=NET_ADMIN --cap-drop=CHOWN --userns=host \
             --platform=linux/arm64"
        );
        assert_eq!(
            config_for(&["--container-cap-drop", "ALL"]).runner_options,
            "--cap-drop=ALL"
        );
    }

    #[test]
    fn network_flag_names_the_network_and_container_opts_are_the_runner_options() {
        let config = config_for(&["--network", "shared", "--container-opts=--cpus 1"]);
        assert_eq!(config.network.as_deref(), Some("shared"));
        assert_eq!(config.runner_options, "--cpus 1");
        assert!(
            config
                .container_name
                .starts_with("GITEA-ACTIONS-TASK-push_WORKFLOW-ci_JOB-build-")
        );
    }
}
