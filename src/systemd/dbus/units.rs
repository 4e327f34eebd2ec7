//! systemd1: wait for a unit (`docker.service`) to become active by watching its `ActiveState`
//! over D-Bus instead of polling the Docker socket.
//!
//! May use: `super`, zbus, tokio.

use std::time::Duration;

use futures_util::StreamExt as _;

use super::SystemBus;

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait SystemdManager {
    /// Asks systemd to emit unit signals to this client.
    fn subscribe(&self) -> zbus::Result<()>;
    /// The unit's object path, loading the unit when it is not loaded (works for inactive units).
    fn load_unit(&self, name: &str) -> zbus::Result<zbus::OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait SystemdUnit {
    /// `active`, `reloading`, `inactive`, `failed`, `activating`, `deactivating`.
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    /// `loaded`, or `not-found` when no such unit file exists.
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
}

/// How waiting for a unit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitWait {
    /// The unit is active.
    Active,
    /// systemd does not know the unit (Docker not installed as a unit): fall back to polling.
    Unknown,
    /// The unit failed.
    Failed,
    /// It was not active within the limit; carries the last state seen.
    TimedOut(String),
}

/// Waits up to `limit` for `unit` to be active. `Err` means D-Bus itself failed (the caller falls
/// back to polling).
pub async fn wait_for_unit_active(
    bus: &SystemBus,
    unit: &str,
    limit: Duration,
) -> zbus::Result<UnitWait> {
    let manager = SystemdManagerProxy::new(bus.connection()).await?;
    // systemd emits most signals only once some client subscribed.
    if let Err(error) = manager.subscribe().await {
        tracing::debug!(%error, "systemd Subscribe() failed; property changes may arrive late");
    }
    let path = manager.load_unit(unit).await?;
    let proxy = SystemdUnitProxy::builder(bus.connection())
        .path(path)
        .build()
        .await?;
    if proxy.load_state().await? == "not-found" {
        return Ok(UnitWait::Unknown);
    }
    // Subscribe to changes before reading the state, so a change in between is not lost.
    let mut changes = proxy.receive_active_state_changed().await;
    let mut state = proxy.active_state().await?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match state.as_str() {
            "active" | "reloading" => return Ok(UnitWait::Active),
            "failed" => return Ok(UnitWait::Failed),
            _ => {}
        }
        tracing::debug!(unit, state = %state, "waiting for the unit to become active");
        match tokio::time::timeout_at(deadline, changes.next()).await {
            Ok(Some(change)) => state = change.get().await?,
            Ok(None) => {
                return Err(zbus::Error::Failure(
                    "unit property stream ended".to_owned(),
                ));
            }
            Err(_) => return Ok(UnitWait::TimedOut(state)),
        }
    }
}
