//! Orphan removal: containers and networks labelled with this runner's UUID whose task is not live
//! (left behind by a crash or a `kill -9`) are removed, containers with their anonymous volumes.
//! Called by the daemon at start, when no task is live yet, and at exit, after the drain. Other
//! runners' resources and unlabelled ones are never touched.

use std::collections::{HashMap, HashSet};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListNetworksOptionsBuilder};

use super::container::remove_container;
use super::{LABEL_RUNNER_UUID, LABEL_TASK_ID, bounded, network};
use crate::executor::backend::BackendError;

/// What was removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrphanReport {
    /// Names of removed containers.
    pub containers: Vec<String>,
    /// Names of removed networks.
    pub networks: Vec<String>,
}

/// Removes this runner's containers and networks that belong to none of `live_task_ids`.
pub async fn remove_orphans(
    docker: &Docker,
    runner_uuid: &str,
    live_task_ids: &HashSet<i64>,
) -> Result<OrphanReport, BackendError> {
    if runner_uuid.is_empty() {
        return Err(BackendError::Docker(String::from(
            "orphan removal needs the runner's UUID",
        )));
    }
    let filters = HashMap::from([(
        String::from("label"),
        vec![format!("{LABEL_RUNNER_UUID}={runner_uuid}")],
    )]);
    let is_orphan = |labels: Option<&HashMap<String, String>>| {
        let task_id = labels
            .and_then(|labels| labels.get(LABEL_TASK_ID))
            .and_then(|task_id| task_id.parse::<i64>().ok());
        task_id.is_none_or(|task_id| !live_task_ids.contains(&task_id))
    };

    let mut report = OrphanReport::default();
    let list = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = bounded("list runner containers", docker.list_containers(Some(list))).await?;
    for summary in containers {
        if !is_orphan(summary.labels.as_ref()) {
            continue;
        }
        let Some(id) = summary.id else { continue };
        let name = summary
            .names
            .and_then(|names| names.into_iter().next())
            .map(|name| name.trim_start_matches('/').to_string())
            .unwrap_or_else(|| id.clone());
        remove_container(docker, &id).await?;
        tracing::info!(container = %name, "removed orphaned container");
        report.containers.push(name);
    }

    let list = ListNetworksOptionsBuilder::default()
        .filters(&filters)
        .build();
    let networks = bounded("list runner networks", docker.list_networks(Some(list))).await?;
    for summary in networks {
        if !is_orphan(summary.labels.as_ref()) {
            continue;
        }
        let Some(name) = summary.name else { continue };
        network::remove(docker, &name).await?;
        tracing::info!(network = %name, "removed orphaned network");
        report.networks.push(name);
    }
    Ok(report)
}
