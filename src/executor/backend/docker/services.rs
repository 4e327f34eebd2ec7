//! Service containers: created and started in parallel on the job network under their id as alias,
//! then awaited until Docker reports them healthy (only those with a health check), under a bound.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HealthStatusEnum, HostConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::container::{create_and_start, endpoint};
use super::options::{ContainerOptions, parse_ports};
use super::volumes::{self, VolumeSpec};
use super::{ServiceConfig, bounded, send_log};
use crate::executor::backend::{BackendError, RunningContainer};

/// How often health is polled.
const HEALTH_POLL: Duration = Duration::from_millis(250);

/// One service, resolved by `prepare`.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// Container name.
    pub name: String,
    pub config: ServiceConfig,
    pub options: ContainerOptions,
    /// Volumes that passed `container.valid_volumes`.
    pub volumes: Vec<VolumeSpec>,
}

/// The create body of a service container.
pub fn service_body(
    plan: &ServicePlan,
    network: &str,
    aliases_allowed: bool,
    labels: &HashMap<String, String>,
) -> Result<ContainerCreateBody, BackendError> {
    let config = &plan.config;
    let mut env: Vec<String> = config
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    env.extend(plan.options.env.iter().cloned());
    let mut ports = config.ports.clone();
    ports.extend(plan.options.publish.iter().cloned());
    let (exposed, bindings) = parse_ports(&ports)?;
    let (binds, anonymous) = volumes::binds_and_anonymous(&plan.volumes);
    let mut body = ContainerCreateBody {
        image: Some(config.image.clone()),
        cmd: (!config.cmd.is_empty()).then(|| config.cmd.clone()),
        entrypoint: plan
            .options
            .entrypoint
            .as_ref()
            .map(|entrypoint| vec![entrypoint.clone()]),
        env: (!env.is_empty()).then_some(env),
        labels: Some(labels.clone()),
        volumes: (!anonymous.is_empty()).then_some(anonymous),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        working_dir: plan.options.workdir.clone(),
        host_config: Some(HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: Some(network.to_string()),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            ..Default::default()
        }),
        networking_config: endpoint(network, aliases_allowed, &config.id),
        ..Default::default()
    };
    plan.options.apply(&mut body)?;
    Ok(body)
}

/// Creates and starts one service container.
pub async fn start(
    docker: &Docker,
    plan: &ServicePlan,
    network: &str,
    aliases_allowed: bool,
    labels: &HashMap<String, String>,
) -> Result<RunningContainer, BackendError> {
    let body = service_body(plan, network, aliases_allowed, labels)?;
    let id = create_and_start(docker, &plan.name, plan.options.platform.as_deref(), body).await?;
    // Docker picks the host ports at start; only a service that publishes some needs a look.
    let mut ports = BTreeMap::new();
    if !plan.config.ports.is_empty() || !plan.options.publish.is_empty() {
        let inspect = bounded(
            format!("inspect service {}", plan.config.id),
            docker.inspect_container(&id, None),
        )
        .await?;
        let published = inspect
            .network_settings
            .and_then(|settings| settings.ports)
            .unwrap_or_default();
        for (port, bindings) in published {
            let Some(host_port) = bindings
                .into_iter()
                .flatten()
                .find_map(|binding| binding.host_port)
            else {
                continue;
            };
            let port = port.strip_suffix("/tcp").unwrap_or(&port).to_string();
            ports.insert(port, host_port);
        }
    }
    Ok(RunningContainer {
        id,
        network: network.to_string(),
        ports,
    })
}

/// Waits until every service with a health check is healthy; `None` does not wait.
pub async fn wait_healthy(
    docker: &Docker,
    plans: &[ServicePlan],
    ready_timeout: Option<Duration>,
    log: &mpsc::Sender<String>,
) -> Result<(), BackendError> {
    let Some(ready_timeout) = ready_timeout else {
        return Ok(());
    };
    let give_up = Instant::now() + ready_timeout;
    for plan in plans {
        let mut announced = false;
        loop {
            let inspect = bounded(
                format!("inspect service {}", plan.config.id),
                docker.inspect_container(&plan.name, None),
            )
            .await?;
            let state = inspect.state.unwrap_or_default();
            if state.running == Some(false) {
                return Err(BackendError::Docker(format!(
                    "service `{}` exited with code {} before becoming ready",
                    plan.config.id,
                    state.exit_code.unwrap_or_default()
                )));
            }
            match state.health.and_then(|health| health.status) {
                None
                | Some(HealthStatusEnum::NONE)
                | Some(HealthStatusEnum::EMPTY)
                | Some(HealthStatusEnum::HEALTHY) => {
                    break;
                }
                Some(HealthStatusEnum::UNHEALTHY) => {
                    return Err(BackendError::Docker(format!(
                        "service `{}` is unhealthy",
                        plan.config.id
                    )));
                }
                Some(HealthStatusEnum::STARTING) => {}
            }
            if Instant::now() >= give_up {
                return Err(BackendError::Docker(format!(
                    "service `{}` not healthy within {}s",
                    plan.config.id,
                    ready_timeout.as_secs()
                )));
            }
            if !announced {
                send_log(
                    log,
                    format!("waiting for service {} to become healthy", plan.config.id),
                )
                .await;
                announced = true;
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }
    Ok(())
}
