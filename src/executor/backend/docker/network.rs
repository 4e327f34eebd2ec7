//! The per-job network: a labelled bridge created before the containers and removed after them.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::NetworkCreateRequest;

use super::{API_TIMEOUT, bounded, describe, is_not_found};
use crate::executor::backend::BackendError;

/// `container.network_create_options`: the IP families of the networks the runner creates;
/// `None` keeps Docker's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpFamilies {
    pub enable_ipv4: Option<bool>,
    pub enable_ipv6: Option<bool>,
}

/// Creates a bridge network, replacing a leftover of the same name (removed first: daemons before
/// API 1.44 would silently create a second network of the same name).
pub async fn create(
    docker: &Docker,
    name: &str,
    labels: &HashMap<String, String>,
    ip: IpFamilies,
) -> Result<(), BackendError> {
    remove(docker, name).await?;
    let request = create_request(name, labels, ip);
    bounded(
        format!("create network {name}"),
        docker.create_network(request),
    )
    .await?;
    Ok(())
}

/// The create request of a job network.
fn create_request(
    name: &str,
    labels: &HashMap<String, String>,
    ip: IpFamilies,
) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: name.to_string(),
        driver: Some(String::from("bridge")),
        labels: Some(labels.clone()),
        enable_ipv4: ip.enable_ipv4,
        enable_ipv6: ip.enable_ipv6,
        ..Default::default()
    }
}

/// Removes a network; a missing one is fine.
pub async fn remove(docker: &Docker, name: &str) -> Result<(), BackendError> {
    match tokio::time::timeout(API_TIMEOUT, docker.remove_network(name)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) if is_not_found(&err) => Ok(()),
        Ok(Err(err)) => Err(BackendError::Docker(format!(
            "remove network {name}: {}",
            describe(&err)
        ))),
        Err(_) => Err(BackendError::Docker(format!(
            "remove network {name}: no answer"
        ))),
    }
}

/// Docker refuses network aliases on the predefined networks.
pub fn supports_aliases(network: &str) -> bool {
    !matches!(network, "host" | "bridge" | "none" | "default") && !network.starts_with("container:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_create_options_reach_the_request() {
        let ip = IpFamilies {
            enable_ipv4: Some(true),
            enable_ipv6: Some(false),
        };
        let request = create_request("n", &HashMap::new(), ip);
        assert_eq!(request.enable_ipv4, Some(true));
        assert_eq!(request.enable_ipv6, Some(false));
        let request = create_request("n", &HashMap::new(), IpFamilies::default());
        assert_eq!((request.enable_ipv4, request.enable_ipv6), (None, None));
    }

    #[test]
    fn aliases_only_on_user_defined_networks() {
        assert!(supports_aliases("GITEA-ACTIONS-TASK-1-network"));
        assert!(!supports_aliases("host"));
        assert!(!supports_aliases("bridge"));
        assert!(!supports_aliases("container:abc"));
    }
}
