//! Docker backend: one job container per job (kept alive by a bounded sleep), steps by `docker exec`
//! with output streamed line by line, files moved as tar archives, service containers on a per-job
//! network, every container and network labelled with the runner and task so orphans can be found.
//!
//! Also the Docker pieces the daemon needs at start: socket discovery and a bounded readiness wait
//! ([`connect`]) and orphan removal ([`orphans`]).
//!
//! May use: `bollard`, the `Backend` contract in `executor::backend`. Never: workflows, expressions,
//! `client`, `daemon`, `systemd`, `metrics`. Every Docker call is bounded by a timeout.

mod calls;
pub mod connect;
mod container;
mod exec;
mod files;
mod hash;
mod image;
mod inline_files;
mod job_config;
pub(in crate::executor::backend) mod lines;
mod names;
mod network;
pub mod network_pool;
pub mod options;
pub mod orphans;
pub mod proxy;
mod services;
mod step_container;
pub mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use super::RegistryCredentials;
use super::{
    Backend, BackendError, BuildRequest, ContainerRun, ContainerSpec, EnvironmentPaths, ExecEnd,
    ExecRequest, ExitStatus, JobContainers, NewFile, OutputLines, RunningContainer,
    RunningContainers, WorkspaceHasher,
};
use calls::{Creations, bounded, describe, is_not_found};
use names::{container_name, resolve_path};
pub use network_pool::NetworkPool;
use options::{ContainerOptions, OptionsPolicy};
use volumes::{VolumePolicy, VolumeSpec};

pub use container::job_container_body;
pub use job_config::{DockerJobConfig, JobIdentity, SHARED_TOOL_CACHE_VOLUME, ServiceConfig};
pub use network::IpFamilies;

/// Label naming the runner (its UUID from `.runner`); upstream puts it on networks it creates.
pub const LABEL_RUNNER_UUID: &str = "com.gitea.runner.uuid";
/// Label naming the Gitea task a container or network belongs to.
pub const LABEL_TASK_ID: &str = "act-runner.task-id";
/// Label unique to one [`DockerBackend`]: cleanup removes everything carrying it, even what a
/// cancelled `prepare` created but never recorded.
pub const LABEL_JOB_INSTANCE: &str = "act-runner.job-instance";

/// `RUNNER_TOOL_CACHE` in a job container (upstream's path).
pub const TOOL_CACHE: &str = "/opt/hostedtoolcache";
/// `runner.os` of a job container.
const OS: &str = "Linux";

/// Upper bound on one Docker API call (until its response head, and in total for calls without a
/// streamed body).
pub const API_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound on the whole cleanup of one job (upstream: one minute).
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The resources one job created, recorded before each create call so cleanup finds them even when
/// `prepare` was interrupted.
#[derive(Debug, Default)]
struct JobResources {
    network: Option<String>,
    containers: Vec<String>,
    job_container: Option<String>,
}

/// The Docker backend for one job.
pub struct DockerBackend {
    docker: Docker,
    config: DockerJobConfig,
    /// The configuration as constructed: each `configure` starts from it, so a backend that runs
    /// the jobs of a called workflow one after another takes nothing from the job before.
    initial_config: DockerJobConfig,
    instance_id: String,
    paths: EnvironmentPaths,
    resources: JobResources,
    /// The creates `prepare` started, which cleanup waits for.
    creations: Creations,
    /// The image's `Env` overlaid with the container's, known after `prepare`.
    base_env: BTreeMap<String, String>,
    /// The network the job's containers join, chosen in `prepare`.
    network: Option<String>,
    /// What `prepare` started, for the `job.container` and `job.services` contexts.
    running: RunningContainers,
}

impl DockerBackend {
    /// A backend for one job on an already connected (and version-negotiated) client.
    pub fn new(docker: Docker, mut config: DockerJobConfig) -> DockerBackend {
        config.container_name = container_name(&config.container_name);
        let paths = EnvironmentPaths {
            workspace: PathBuf::from(&config.workspace),
            temp: PathBuf::from("/tmp"),
            tool_cache: PathBuf::from(TOOL_CACHE),
        };
        DockerBackend {
            docker,
            initial_config: config.clone(),
            config,
            instance_id: uuid::Uuid::new_v4().to_string(),
            paths,
            resources: JobResources::default(),
            creations: Creations::default(),
            base_env: BTreeMap::new(),
            network: None,
            running: RunningContainers::default(),
        }
    }

    /// The labels every container and network of this job carries.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (
                LABEL_RUNNER_UUID.to_string(),
                self.config.identity.runner_uuid.clone(),
            ),
            (
                LABEL_TASK_ID.to_string(),
                self.config.identity.task_id.to_string(),
            ),
            (LABEL_JOB_INSTANCE.to_string(), self.instance_id.clone()),
        ])
    }

    /// The job container's name (valid after construction).
    pub fn container_name(&self) -> &str {
        &self.config.container_name
    }

    /// The network the job's containers join: `container.network` when set, else the one `prepare`
    /// took from the pool or created (`<container name>-network` before `prepare`).
    pub fn network_name(&self) -> String {
        match (&self.network, &self.config.network) {
            (Some(network), _) | (None, Some(network)) => network.clone(),
            (None, None) => format!("{}-network", self.config.container_name),
        }
    }

    fn job_container(&self) -> Result<&str, BackendError> {
        self.resources.job_container.as_deref().ok_or_else(|| {
            BackendError::Docker(String::from(
                "the job container is not running (prepare first)",
            ))
        })
    }

    /// `trusted`: the runner's own options rather than a workflow's (see [`OptionsPolicy`]).
    fn parse_options(
        &self,
        options: &str,
        trusted: bool,
        log_warnings: &mut Vec<String>,
    ) -> Result<ContainerOptions, BackendError> {
        let policy = OptionsPolicy {
            privileged: self.config.privileged,
            trusted,
        };
        let parsed = ContainerOptions::parse(options, policy)?;
        log_warnings.extend(parsed.warnings.iter().cloned());
        Ok(parsed)
    }

    async fn prepare_inner(&mut self, log: &mpsc::Sender<String>) -> Result<(), BackendError> {
        let mut warnings = Vec::new();
        let runner_options =
            self.parse_options(&self.config.runner_options, true, &mut warnings)?;
        let job_options = self.parse_options(&self.config.job_options, false, &mut warnings)?;
        let volume_policy = VolumePolicy::new(&self.config.valid_volumes)?;

        let mut job_volumes = Vec::new();
        for spec in &self.config.volumes {
            job_volumes.push(VolumeSpec::parse(spec)?);
        }
        job_volumes.extend(runner_options.volumes.iter().cloned());
        job_volumes.extend(job_options.volumes.iter().cloned());
        let (job_volumes, volume_warnings) = volumes::filter_volumes(&volume_policy, &job_volumes);
        warnings.extend(volume_warnings);

        let mut service_plans = Vec::new();
        for service in &self.config.services {
            let options = self.parse_options(&service.options, false, &mut warnings)?;
            let mut service_volumes = Vec::new();
            for spec in &service.volumes {
                service_volumes.push(VolumeSpec::parse(spec)?);
            }
            service_volumes.extend(options.volumes.iter().cloned());
            let (service_volumes, volume_warnings) =
                volumes::filter_volumes(&volume_policy, &service_volumes);
            warnings.extend(volume_warnings);
            service_plans.push(services::ServicePlan {
                name: container_name(&format!("{}-{}", self.config.container_name, service.id)),
                config: service.clone(),
                options,
                volumes: service_volumes,
            });
        }
        for warning in warnings {
            send_log(log, format!("warning: {warning}")).await;
        }

        // Record every name before creating anything: cleanup must find what an interrupted
        // `prepare` left behind.
        let labels = self.labels();
        let pooled = match (&self.config.network, &self.config.network_pool) {
            (None, Some(pool)) => pool.take_or_wait().await,
            _ => None,
        };
        let from_pool = pooled.is_some();
        let (network, sandbox) = match pooled {
            Some(spare) => (spare.network, spare.sandbox),
            None => (self.network_name(), None),
        };
        // The sandbox goes with the job's containers, used or not.
        self.resources.containers.extend(sandbox.clone());
        if self.config.network.is_none() {
            self.resources.network = Some(network.clone());
        }
        self.network = Some(network.clone());
        for plan in &service_plans {
            self.resources.containers.push(plan.name.clone());
        }
        let job_name = self.config.container_name.clone();
        self.resources.containers.push(job_name.clone());

        let docker = &self.docker;
        let config = &self.config;
        let pull_policy =
            image::PullPolicy::from_options(config.force_pull, [&runner_options, &job_options]);
        let job_platform = options::platform([&runner_options, &job_options]);
        let job_pull = image::ensure_image(
            docker,
            &config.image,
            config.credentials.as_ref(),
            job_platform,
            pull_policy,
            config.pull_timeout,
            log,
        );
        let service_pulls = futures_util::future::join_all(service_plans.iter().map(|plan| {
            let policy = image::PullPolicy::from_options(config.force_pull, [&plan.options]);
            image::ensure_image(
                docker,
                &plan.config.image,
                plan.config.credentials.as_ref(),
                plan.options.platform.as_deref(),
                policy,
                config.pull_timeout,
                log,
            )
        }));
        let creations = &self.creations;
        let network_create = async {
            match (&config.network, from_pool) {
                (None, false) => {
                    let (docker, network, labels) =
                        (docker.clone(), network.clone(), labels.clone());
                    let ip = config.network_ip;
                    let create =
                        async move { network::create(&docker, &network, &labels, ip).await };
                    creations.run(create).await
                }
                _ => Ok(()),
            }
        };
        // `join`, not `try_join`: a create dropped mid-flight still completes inside dockerd, after
        // cleanup has looked for it. Every call runs to its end before the first error is returned.
        let (image_env, service_pulls, network_created) =
            tokio::join!(job_pull, service_pulls, network_create);
        let image_env = image_env?;
        service_pulls.into_iter().collect::<Result<Vec<_>, _>>()?;
        network_created?;

        let aliases_allowed = network::supports_aliases(&network);
        let service_starts = futures_util::future::join_all(service_plans.iter().map(|plan| {
            let (docker, plan, network, labels) = (
                docker.clone(),
                plan.clone(),
                network.clone(),
                labels.clone(),
            );
            creations.run(async move {
                services::start(&docker, &plan, &network, aliases_allowed, &labels).await
            })
        }));
        let options = [&runner_options, &job_options];
        let body = |network: &str| {
            job_container_body(&container::JobContainerSpec {
                config,
                options,
                volumes: &job_volumes,
                network,
                // Only other containers on the network resolve the alias: without services there
                // are none, and registering an alias slows the start measurably.
                aliases_allowed: aliases_allowed && !service_plans.is_empty(),
                labels: &labels,
                paths: &self.paths,
            })
        };
        let in_sandbox = sandbox
            .filter(|_| service_plans.is_empty() && container::may_share_namespace(config, options))
            .map(|sandbox| body(&format!("container:{sandbox}")))
            .transpose()?;
        let body = body(&network)?;
        let mut base_env = BTreeMap::new();
        for entry in image_env.iter().chain(body.env.iter().flatten()) {
            if let Some((key, value)) = entry.split_once('=') {
                base_env.insert(key.to_string(), value.to_string());
            }
        }
        let job_start = {
            let (docker, job_name) = (docker.clone(), job_name.clone());
            let job_platform = job_platform.map(str::to_string);
            creations.run(async move {
                let platform = job_platform.as_deref();
                container::start_job_container(&docker, &job_name, platform, in_sandbox, body).await
            })
        };
        let (service_starts, job_started) = tokio::join!(service_starts, job_start);
        let services = service_starts.into_iter().collect::<Result<Vec<_>, _>>()?;
        self.running = RunningContainers {
            job: Some(RunningContainer {
                id: job_started?,
                network: network.clone(),
                ports: BTreeMap::new(),
            }),
            services: service_plans
                .iter()
                .map(|plan| plan.config.id.clone())
                .zip(services)
                .collect(),
        };
        self.resources.job_container = Some(job_name);
        self.base_env = base_env;

        services::wait_healthy(
            &self.docker,
            &service_plans,
            self.config.service_ready_timeout,
            log,
        )
        .await
    }
}

impl Backend for DockerBackend {
    fn paths(&self) -> &EnvironmentPaths {
        &self.paths
    }

    fn os(&self) -> &str {
        OS
    }

    fn image(&self) -> Option<&str> {
        Some(&self.config.image)
    }

    fn configure(&mut self, containers: JobContainers) -> Result<(), BackendError> {
        self.config = self.initial_config.clone();
        if let Some(job) = containers.job {
            let ContainerSpec {
                image,
                env,
                volumes,
                options,
                ports,
                credentials,
                cmd: _,
            } = job;
            if !image.is_empty() {
                self.config.image = image;
            }
            self.config.env = env;
            self.config.volumes = volumes;
            self.config.job_options = options;
            self.config.ports = ports;
            self.config.credentials = credentials;
        }
        self.config.services = containers
            .services
            .into_iter()
            .map(|(id, spec)| ServiceConfig {
                id,
                image: spec.image,
                credentials: spec.credentials,
                env: spec.env,
                ports: spec.ports,
                volumes: spec.volumes,
                options: spec.options,
                cmd: spec.cmd,
            })
            .collect();
        Ok(())
    }

    fn base_env(&self) -> BTreeMap<String, String> {
        self.base_env.clone()
    }

    fn running_containers(&self) -> RunningContainers {
        self.running.clone()
    }

    fn workspace_hasher(&self) -> Option<WorkspaceHasher> {
        let container = self.resources.job_container.clone()?;
        Some(hash::workspace_hasher(
            self.docker.clone(),
            container,
            self.config.workspace.clone(),
        ))
    }

    async fn prepare(&mut self, log: &mpsc::Sender<String>) -> Result<(), BackendError> {
        tracing::debug!(task_id = self.config.identity.task_id, image = %self.config.image, "preparing job container");
        let prepared = self.prepare_inner(log).await;
        if let Some(pool) = &self.config.network_pool {
            pool.replenish(prepared.is_ok().then_some(self.config.image.as_str()));
        }
        prepared
    }

    async fn exec(
        &self,
        request: ExecRequest,
        output: mpsc::Sender<OutputLines>,
        cancel: CancellationToken,
    ) -> Result<ExecEnd, BackendError> {
        let container = self.job_container()?;
        exec::run(
            &self.docker,
            container,
            &self.config.workspace,
            self.config.allocate_pty,
            request,
            output,
            cancel,
        )
        .await
    }

    async fn write_files(&self, mut new_files: Vec<NewFile>) -> Result<(), BackendError> {
        let container = self.job_container()?;
        for file in &mut new_files {
            file.path = resolve_path(&self.config.workspace, &file.path);
        }
        files::write_all(&self.docker, container, &new_files).await
    }

    async fn read_dir_files(&self, dir: &str) -> Result<BTreeMap<String, Vec<u8>>, BackendError> {
        let container = self.job_container()?;
        let dir = resolve_path(&self.config.workspace, dir);
        files::read_dir_files(&self.docker, container, &dir).await
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let container = self.job_container()?;
        let path = resolve_path(&self.config.workspace, path);
        files::read(&self.docker, container, &path).await
    }

    async fn import_dir(&self, host_dir: &Path, path: &str) -> Result<String, BackendError> {
        let container = self.job_container()?;
        files::upload_dir(&self.docker, container, host_dir, path).await?;
        Ok(path.to_string())
    }

    async fn import_files(
        &self,
        root: &Path,
        relative: Vec<PathBuf>,
        path: &str,
    ) -> Result<(), BackendError> {
        let container = self.job_container()?;
        let path = resolve_path(&self.config.workspace, path);
        let archive = files::pack_entries(root, relative, path.trim_matches('/')).await?;
        files::upload_archive(&self.docker, container, "/", archive).await
    }

    async fn build_image(
        &self,
        request: BuildRequest,
        log: mpsc::Sender<String>,
    ) -> Result<(), BackendError> {
        let job_container = self.resources.job_container.as_deref();
        step_container::build(&self.docker, job_container, request, log).await
    }

    async fn run_container(
        &self,
        request: ContainerRun,
        output: mpsc::Sender<OutputLines>,
        cancel: CancellationToken,
    ) -> Result<ExitStatus, BackendError> {
        let temp = self.paths.temp.to_string_lossy().into_owned();
        let job = step_container::JobSide {
            docker: &self.docker,
            job_container: self.job_container()?,
            workspace: &self.config.workspace,
            temp: &temp,
            labels: self.labels(),
            pull_timeout: self.config.pull_timeout,
            privileged: self.config.privileged,
        };
        step_container::run(job, request, output, cancel).await
    }

    async fn cleanup(&mut self) -> Result<(), BackendError> {
        self.creations.settled().await;
        let resources = std::mem::take(&mut self.resources);
        self.network = None;
        self.running = RunningContainers::default();
        let cleanup = container::remove_job_resources(
            &self.docker,
            &resources.containers,
            resources.network.as_deref(),
            &self.instance_id,
        );
        match tokio::time::timeout(CLEANUP_TIMEOUT, cleanup).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::Docker(format!(
                "cleanup did not finish within {}s",
                CLEANUP_TIMEOUT.as_secs()
            ))),
        }
    }
}

async fn send_log(log: &mpsc::Sender<String>, line: String) {
    // A closed log channel means nobody listens any more; the job goes on regardless.
    let _ = log.send(line).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_hides_the_password() {
        let credentials = RegistryCredentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
