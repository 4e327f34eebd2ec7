//! The job container: its create body (a pure function, pinned by snapshot tests), create and start,
//! and the removal of everything a job created.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder,
};

use super::options::{ContainerOptions, parse_ports};
use super::volumes::{self, VolumeSpec};
use super::{
    API_TIMEOUT, DockerJobConfig, LABEL_JOB_INSTANCE, OS, SHARED_TOOL_CACHE_VOLUME, TOOL_CACHE,
    bounded, describe, is_not_found, network,
};
use crate::executor::backend::{BackendError, EnvironmentPaths, runner_variables};

/// Inputs of [`job_container_body`] beyond the job config: what `prepare` resolved.
pub struct JobContainerSpec<'a> {
    pub config: &'a DockerJobConfig,
    /// Runner options, then the workflow's.
    pub options: [&'a ContainerOptions; 2],
    /// Volumes that passed `container.valid_volumes`.
    pub volumes: &'a [VolumeSpec],
    pub network: &'a str,
    pub aliases_allowed: bool,
    pub labels: &'a HashMap<String, String>,
    /// Where `RUNNER_TEMP` and `RUNNER_TOOL_CACHE` point.
    pub paths: &'a EnvironmentPaths,
}

/// The create body of the job container: kept alive by `/bin/sleep <max lifetime>`, working in the
/// workspace, labelled, on the job network with the job's alias.
pub fn job_container_body(
    spec: &JobContainerSpec<'_>,
) -> Result<ContainerCreateBody, BackendError> {
    let config = spec.config;
    let service_ids: Vec<&str> = config
        .services
        .iter()
        .map(|service| service.id.as_str())
        .collect();
    // As act's job container: `RUNNER_OS` and kin, and GitHub's locale, under everything else.
    let mut env_map = runner_variables(spec.paths, OS);
    env_map.insert(String::from("LANG"), String::from("C.UTF-8"));
    env_map.extend(super::proxy::job_proxy_env(&config.proxy_env, &service_ids));
    env_map.extend(config.env.clone());
    let mut env: Vec<String> = env_map
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mut ports = config.ports.clone();
    for options in spec.options {
        env.extend(options.env.iter().cloned());
        ports.extend(options.publish.iter().cloned());
    }
    let (mut exposed, bindings) = parse_ports(&ports)?;
    for options in spec.options {
        for port in &options.expose {
            exposed.push(if port.contains('/') {
                port.clone()
            } else {
                format!("{port}/tcp")
            });
        }
    }

    let (mut binds, anonymous) = volumes::binds_and_anonymous(spec.volumes);
    if let Some(socket) = &config.docker_socket {
        binds.push(format!("{socket}:/var/run/docker.sock"));
    }
    if config.shared_tool_cache {
        binds.push(format!("{SHARED_TOOL_CACHE_VOLUME}:{TOOL_CACHE}"));
    }
    // Otherwise the workspace needs no volume: Docker creates the working directory at start,
    // and the container layer goes with the container. Each volume costs time on every start.
    // A bind makes Docker create its missing source directory on the engine's host.
    if config.bind_workspace {
        binds.push(format!("{0}:{0}", config.workspace));
    }

    let mut body = ContainerCreateBody {
        image: Some(config.image.clone()),
        entrypoint: Some(vec![
            String::from("/bin/sleep"),
            config.max_lifetime.as_secs().max(1).to_string(),
        ]),
        cmd: None,
        env: (!env.is_empty()).then_some(env),
        working_dir: Some(config.workspace.clone()),
        labels: Some(spec.labels.clone()),
        volumes: (!anonymous.is_empty()).then_some(anonymous),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        tty: Some(false),
        host_config: Some(HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: Some(spec.network.to_string()),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            ..Default::default()
        }),
        networking_config: endpoint(spec.network, spec.aliases_allowed, &config.job_alias),
        ..Default::default()
    };
    for options in spec.options {
        options.apply(&mut body)?;
    }
    Ok(body)
}

/// Whether the job container may run in a sandbox's network namespace: nothing in its
/// configuration sets up networking of its own (ports, host names, DNS, network sysctls).
pub fn may_share_namespace(config: &DockerJobConfig, options: [&ContainerOptions; 2]) -> bool {
    config.ports.is_empty()
        && options.iter().all(|options| {
            options.publish.is_empty()
                && options.expose.is_empty()
                && !options.publish_all
                && options.hostname.is_none()
                && options.add_hosts.is_empty()
                && options.dns.is_empty()
                && options.dns_search.is_empty()
                && options.dns_options.is_empty()
                && options.sysctls.is_empty()
        })
}

/// The endpoint config putting a container on `network` under `alias`.
pub fn endpoint(network: &str, aliases_allowed: bool, alias: &str) -> Option<NetworkingConfig> {
    if !aliases_allowed || alias.is_empty() {
        return None;
    }
    Some(NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network.to_string(),
            EndpointSettings {
                aliases: Some(vec![alias.to_string()]),
                ..Default::default()
            },
        )])),
    })
}

/// Creates and starts a container (for `platform`, when given), replacing a leftover of the same
/// name (upstream does the same).
pub async fn create_and_start(
    docker: &Docker,
    name: &str,
    platform: Option<&str>,
    body: ContainerCreateBody,
) -> Result<String, BackendError> {
    let mut options = CreateContainerOptionsBuilder::default().name(name);
    if let Some(platform) = platform {
        options = options.platform(platform);
    }
    let options = options.build();
    let what = format!("create container {name}");
    let create = docker.create_container(Some(options.clone()), body.clone());
    let id = match tokio::time::timeout(API_TIMEOUT, create).await {
        Ok(Ok(created)) => created.id,
        // A leftover of the same name (an earlier run that was not cleaned up): replace it.
        Ok(Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        })) => {
            remove_container(docker, name).await?;
            bounded(&what, docker.create_container(Some(options), body))
                .await?
                .id
        }
        Ok(Err(err)) => return Err(BackendError::Docker(format!("{what}: {}", describe(&err)))),
        Err(_) => return Err(BackendError::Docker(format!("{what}: no answer"))),
    };
    bounded(
        format!("start container {name}"),
        docker.start_container(name, None),
    )
    .await?;
    Ok(id)
}

/// Starts the job container in a sandbox's network namespace when given that body, else (or when
/// that fails: the sandbox died, e.g. with a Docker restart) on the job network itself.
pub async fn start_job_container(
    docker: &Docker,
    name: &str,
    platform: Option<&str>,
    in_sandbox: Option<ContainerCreateBody>,
    on_network: ContainerCreateBody,
) -> Result<String, BackendError> {
    if let Some(body) = in_sandbox {
        match create_and_start(docker, name, platform, body).await {
            Ok(id) => return Ok(id),
            Err(error) => {
                tracing::info!(container = name, error = %error, "cannot start in the spare network's sandbox; joining the network")
            }
        }
    }
    create_and_start(docker, name, platform, on_network).await
}

/// Force-removes a container with its anonymous volumes; a missing one is fine.
pub async fn remove_container(docker: &Docker, name: &str) -> Result<(), BackendError> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match tokio::time::timeout(
        super::API_TIMEOUT,
        docker.remove_container(name, Some(options)),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) if is_not_found(&err) => Ok(()),
        // Removal already under way (a concurrent cleanup): the container is going.
        Ok(Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        })) => Ok(()),
        Ok(Err(err)) => Err(BackendError::Docker(format!(
            "remove container {name}: {}",
            super::describe(&err)
        ))),
        Err(_) => Err(BackendError::Docker(format!(
            "remove container {name}: no answer"
        ))),
    }
}

/// Removes the job's containers and then its networks: those recorded by name and anything else
/// carrying its instance label. Keeps going after an error and reports the first.
pub async fn remove_job_resources(
    docker: &Docker,
    containers: &[String],
    network_name: Option<&str>,
    instance_id: &str,
) -> Result<(), BackendError> {
    let mut names: Vec<String> = containers.to_vec();
    let filters = HashMap::from([(
        String::from("label"),
        vec![format!("{LABEL_JOB_INSTANCE}={instance_id}")],
    )]);
    let list = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let mut first_error = None;
    match bounded("list job containers", docker.list_containers(Some(list))).await {
        Ok(found) => {
            for summary in found {
                if let Some(id) = summary.id
                    && !names.contains(&id)
                {
                    names.push(id);
                }
            }
        }
        Err(err) => first_error = Some(err),
    }
    let removals =
        futures_util::future::join_all(names.iter().map(|name| remove_container(docker, name)))
            .await;
    for result in removals {
        if let Err(err) = result {
            first_error.get_or_insert(err);
        }
    }
    let mut networks: Vec<String> = network_name.into_iter().map(str::to_string).collect();
    let list = ListNetworksOptionsBuilder::default()
        .filters(&filters)
        .build();
    match bounded("list job networks", docker.list_networks(Some(list))).await {
        Ok(found) => networks.extend(found.into_iter().filter_map(|summary| summary.name)),
        Err(err) => {
            first_error.get_or_insert(err);
        }
    }
    networks.sort();
    networks.dedup();
    for network_name in networks {
        if let Err(err) = network::remove(docker, &network_name).await {
            first_error.get_or_insert(err);
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::executor::backend::docker::options::OptionsPolicy;
    use crate::executor::backend::docker::{JobIdentity, LABEL_RUNNER_UUID, LABEL_TASK_ID};

    fn config() -> DockerJobConfig {
        DockerJobConfig {
            image: String::from("act-runner-test/debian:12"),
            credentials: None,
            runner_options: String::new(),
            job_options: String::new(),
            env: BTreeMap::from([(String::from("NODE_ENV"), String::from("test"))]),
            proxy_env: BTreeMap::new(),
            volumes: Vec::new(),
            ports: vec![String::from("8080:80")],
            services: Vec::new(),
            network: None,
            network_ip: Default::default(),
            network_pool: None,
            privileged: false,
            valid_volumes: Vec::new(),
            force_pull: false,
            docker_socket: Some(String::from("/var/run/docker.sock")),
            container_name: String::from("GITEA-ACTIONS-TASK-7_WORKFLOW-ci_JOB-build"),
            job_alias: String::from("build"),
            identity: JobIdentity {
                runner_uuid: String::from("runner-uuid"),
                task_id: 7,
            },
            workspace: String::from("/workspace/owner/repo"),
            bind_workspace: false,
            shared_tool_cache: false,
            allocate_pty: false,
            max_lifetime: Duration::from_secs(3 * 3600),
            service_ready_timeout: None,
            pull_timeout: Duration::from_secs(600),
        }
    }

    #[test]
    fn job_container_create_body() {
        let config = config();
        let policy = OptionsPolicy {
            privileged: false,
            trusted: false,
        };
        let runner = ContainerOptions::parse("--add-host gitea.local:10.0.0.1", policy).unwrap();
        let job =
            ContainerOptions::parse("-e FROM_OPTIONS=1 --cpus 1.5 --health-cmd 'true'", policy)
                .unwrap();
        let volumes = [
            VolumeSpec::parse("/srv/cache:/cache:ro").unwrap(),
            VolumeSpec::parse("/scratch").unwrap(),
        ];
        let labels = HashMap::from([
            (LABEL_RUNNER_UUID.to_string(), String::from("runner-uuid")),
            (LABEL_TASK_ID.to_string(), String::from("7")),
            (
                LABEL_JOB_INSTANCE.to_string(),
                uuid::Uuid::new_v4().to_string(),
            ),
        ]);
        // The real name derives from the container name; a fixed one keeps the snapshot stable.
        let network = String::from("[job-network]");
        let body = job_container_body(&JobContainerSpec {
            config: &config,
            options: [&runner, &job],
            volumes: &volumes,
            network: &network,
            aliases_allowed: true,
            labels: &labels,
            paths: &paths(&config),
        })
        .unwrap();
        insta::with_settings!({ sort_maps => true }, {
            insta::assert_json_snapshot!(body, {
                ".Labels[\"act-runner.job-instance\"]" => "[instance]",
                // The machine's architecture.
                ".Env[2]" => "RUNNER_ARCH=[arch]",
            });
        });
    }

    #[test]
    fn privileged_reaches_the_host_config() {
        let config = config();
        let options = ContainerOptions::parse(
            "--privileged",
            OptionsPolicy {
                privileged: true,
                trusted: false,
            },
        )
        .unwrap();
        let labels = HashMap::new();
        let body = job_container_body(&JobContainerSpec {
            config: &config,
            options: [&ContainerOptions::default(), &options],
            volumes: &[],
            network: "host",
            aliases_allowed: false,
            labels: &labels,
            paths: &paths(&config),
        })
        .unwrap();
        assert_eq!(body.host_config.unwrap().privileged, Some(true));
        assert!(body.networking_config.is_none());
    }

    #[test]
    fn a_privileged_runner_makes_the_job_and_its_services_privileged() {
        use crate::executor::backend::docker::ServiceConfig;
        use crate::executor::backend::docker::services::{ServicePlan, service_body};
        let policy = OptionsPolicy {
            privileged: true,
            trusted: false,
        };
        let options = ContainerOptions::parse("", policy).unwrap();
        let labels = HashMap::new();
        let job = job_container_body(&JobContainerSpec {
            config: &config(),
            options: [&options, &options],
            volumes: &[],
            network: "net",
            aliases_allowed: false,
            labels: &labels,
            paths: &paths(&config()),
        })
        .unwrap();
        assert_eq!(job.host_config.unwrap().privileged, Some(true));
        let plan = ServicePlan {
            name: String::from("svc"),
            config: ServiceConfig {
                id: String::from("dind"),
                image: String::from("docker:dind"),
                credentials: None,
                env: BTreeMap::new(),
                ports: Vec::new(),
                volumes: Vec::new(),
                options: String::new(),
                cmd: Vec::new(),
            },
            options: ContainerOptions::parse("", policy).unwrap(),
            volumes: Vec::new(),
        };
        let service = service_body(&plan, "net", true, &labels).unwrap();
        assert_eq!(service.host_config.unwrap().privileged, Some(true));
    }

    fn paths(config: &DockerJobConfig) -> EnvironmentPaths {
        EnvironmentPaths {
            workspace: std::path::PathBuf::from(&config.workspace),
            temp: std::path::PathBuf::from("/tmp"),
            tool_cache: std::path::PathBuf::from(TOOL_CACHE),
        }
    }

    /// The body for `config` with no options, volumes, aliases or labels, on the network `net`.
    fn plain_body(config: &DockerJobConfig) -> ContainerCreateBody {
        job_container_body(&JobContainerSpec {
            config,
            options: [&ContainerOptions::default(), &ContainerOptions::default()],
            volumes: &[],
            network: "net",
            aliases_allowed: false,
            labels: &HashMap::new(),
            paths: &paths(config),
        })
        .unwrap()
    }

    #[test]
    fn a_shared_tool_cache_and_a_bound_workspace_are_mounted_where_the_job_sees_them() {
        let mut config = config();
        config.shared_tool_cache = true;
        config.bind_workspace = true;
        config.workspace = String::from("/srv/work/7/owner/repo");
        let body = plain_body(&config);
        let binds = body.host_config.unwrap().binds.unwrap();
        assert!(
            binds.contains(&String::from("act-toolcache:/opt/hostedtoolcache")),
            "{binds:?}"
        );
        assert!(
            binds.contains(&String::from(
                "/srv/work/7/owner/repo:/srv/work/7/owner/repo"
            )),
            "{binds:?}"
        );
        assert_eq!(body.working_dir.as_deref(), Some("/srv/work/7/owner/repo"));
    }

    #[test]
    fn proxy_variables_reach_the_job_container_under_its_env() {
        let mut config = config();
        config.proxy_env = BTreeMap::from([
            (String::from("HTTP_PROXY"), String::from("http://p:3128")),
            (String::from("NODE_ENV"), String::from("from-runner")),
        ]);
        let body = plain_body(&config);
        let env = body.env.unwrap();
        assert!(
            env.contains(&String::from("HTTP_PROXY=http://p:3128")),
            "{env:?}"
        );
        assert!(env.contains(&String::from("NODE_ENV=test")), "{env:?}");
    }
}
