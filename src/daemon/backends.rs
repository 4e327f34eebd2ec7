//! The backend of one task, from the runner's configuration: the host backend's options, the
//! Docker job's configuration, and the bound workspaces of `container.bind_workdir` (their path,
//! their removal after the task).
//! May use: `config`, `executor::backend`, the other `daemon` rooms.

use std::path::{Path, PathBuf};

use crate::config::{Config, ToolCacheMode};
use crate::daemon::execution::{DockerAccess, ExecutionConfig};
use crate::daemon::task::{self, TaskSummary};
use crate::executor::backend::docker::{self, DockerJobConfig, IpFamilies, JobIdentity};
use crate::executor::backend::host::{HostBackend, HostOptions};
use crate::executor::backend::job_processes::ProcessScope;

/// `RUNNER_TOOL_CACHE` of host jobs under `host.workdir_parent` with `runner.tool_cache_mode:
/// shared` (upstream's: `tool_cache` in the action cache directory, which is the same place).
const SHARED_HOST_TOOL_CACHE: &str = "tool_cache";

/// The host backend of a job, in a fresh directory under `host.workdir_parent`.
pub fn host_backend(config: &Config, scope: &ProcessScope) -> HostBackend {
    let workdir_parent = &config.host.workdir_parent;
    let runner = &config.runner;
    let options = HostOptions {
        allocate_pty: runner.allocate_pty,
        shared_tool_cache: (runner.tool_cache_mode == ToolCacheMode::Shared)
            .then(|| workdir_parent.join(SHARED_HOST_TOOL_CACHE)),
        scope: scope.clone(),
    };
    HostBackend::with_options(workdir_parent, options)
}

pub fn docker_job_config(
    snapshot: &ExecutionConfig,
    summary: &TaskSummary,
    image: &str,
    docker: &DockerAccess,
) -> DockerJobConfig {
    let container = &snapshot.config.container;
    let runner = &snapshot.config.runner;
    let workspace = match bound_workdir_parent(&snapshot.config) {
        Some(parent) => format!(
            "{}/{}/{}",
            parent.display(),
            summary.task_id,
            summary.repository
        ),
        None => format!(
            "/{}/{}",
            container.workdir_parent.trim_start_matches('/'),
            summary.repository
        ),
    };
    DockerJobConfig {
        image: image.to_string(),
        credentials: None,
        runner_options: container.options.clone(),
        job_options: String::new(),
        env: Default::default(),
        proxy_env: docker::proxy::runner_proxy_env(std::env::vars()),
        volumes: Vec::new(),
        ports: Vec::new(),
        services: Vec::new(),
        network: container.network.clone(),
        network_ip: ip_families(&container.network_create_options),
        network_pool: docker.network_pool.clone(),
        privileged: container.privileged,
        valid_volumes: container.valid_volumes.clone(),
        force_pull: container.force_pull,
        docker_socket: docker.socket_to_mount.clone(),
        container_name: task::container_name(summary),
        job_alias: summary.job_id.clone(),
        identity: JobIdentity {
            runner_uuid: snapshot.runner.uuid.clone(),
            task_id: summary.task_id,
        },
        bind_workspace: container.bind_workdir,
        shared_tool_cache: runner.tool_cache_mode == ToolCacheMode::Shared,
        allocate_pty: runner.allocate_pty,
        workspace,
        max_lifetime: snapshot.runner.timeout,
        service_ready_timeout: container.service_ready_timeout,
        pull_timeout: snapshot.runner.timeout,
    }
}

/// With `container.bind_workdir`, the host directory holding each task's workspace,
/// `/<container.workdir_parent>` (upstream's path: the runner and the engine share it).
pub fn bound_workdir_parent(config: &Config) -> Option<PathBuf> {
    let container = &config.container;
    container.bind_workdir.then(|| {
        PathBuf::from(format!(
            "/{}",
            container.workdir_parent.trim_start_matches('/')
        ))
    })
}

/// Removes a task's bound workspaces, `<parent>/<task id>`, once its containers are gone. A
/// failure leaves the directory to the idle sweep and says so in the runner's log.
pub async fn remove_bound_workdir(parent: &Path, task_id: i64) {
    let dir = parent.join(task_id.to_string());
    let removal = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || std::fs::remove_dir_all(dir)
    })
    .await;
    match removal {
        Ok(Ok(())) => {}
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {}
        Ok(Err(error)) => {
            tracing::warn!(dir = %dir.display(), error = %error, "cannot remove the task's bound workspace")
        }
        Err(error) => {
            tracing::warn!(dir = %dir.display(), error = %error, "cannot remove the task's bound workspace")
        }
    }
}

/// `container.network_create_options` for the networks the runner creates.
pub fn ip_families(network_create_options: &crate::config::NetworkCreateOptions) -> IpFamilies {
    IpFamilies {
        enable_ipv4: network_create_options.enable_ipv4,
        enable_ipv6: network_create_options.enable_ipv6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_workspaces_live_under_the_absolute_container_workdir_parent() {
        let env = crate::config::LoadEnv::with_home("/home/runner");
        let mut config = Config::defaults(&env);
        assert_eq!(bound_workdir_parent(&config), None);
        config.container.bind_workdir = true;
        assert_eq!(
            bound_workdir_parent(&config),
            Some(PathBuf::from("/workspace"))
        );
        config.container.workdir_parent = String::from("/srv/act");
        assert_eq!(
            bound_workdir_parent(&config),
            Some(PathBuf::from("/srv/act"))
        );
    }

    #[tokio::test]
    async fn removing_a_tasks_bound_workspace_takes_that_task_only() {
        let parent = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(parent.path().join("7/owner/repo")).unwrap();
        std::fs::create_dir_all(parent.path().join("8/owner/repo")).unwrap();
        remove_bound_workdir(parent.path(), 7).await;
        assert!(!parent.path().join("7").exists());
        assert!(parent.path().join("8/owner/repo").is_dir());
        // Nothing there (the job never started) is no error either.
        remove_bound_workdir(parent.path(), 9).await;
    }
}
