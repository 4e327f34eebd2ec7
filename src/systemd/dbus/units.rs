//! systemd1: wait for a unit (`docker.service`) to become active by watching its `ActiveState`
//! over D-Bus instead of polling the Docker socket.
//!
//! May use: `super`, zbus, tokio, tokio-util.

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

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

/// Waits up to `limit` for `docker.service` on the system bus, unless `cancel` fires first.
/// `None` when there is no bus, systemd does not know the unit, D-Bus failed or `cancel` fired:
/// the caller polls the socket instead. Logs what it saw.
pub async fn wait_for_docker_service(
    limit: Duration,
    cancel: &CancellationToken,
) -> Option<UnitWait> {
    const UNIT: &str = "docker.service";
    let bus = SystemBus::connect().await?;
    let wait = tokio::select! {
        _ = cancel.cancelled() => return None,
        wait = wait_for_unit_active(&bus, UNIT, limit) => wait,
    };
    match wait {
        Ok(UnitWait::Active) => tracing::info!(unit = UNIT, "the unit is active"),
        Ok(UnitWait::Unknown) => {
            tracing::debug!(
                unit = UNIT,
                "systemd does not know the unit; polling the socket"
            );
            return None;
        }
        Ok(UnitWait::Failed) => tracing::warn!(unit = UNIT, "the unit failed"),
        Ok(UnitWait::TimedOut(ref state)) => {
            tracing::warn!(unit = UNIT, state = %state, waited = ?limit, "the unit did not become active in time");
        }
        Err(error) => {
            tracing::debug!(%error, unit = UNIT, "cannot watch the unit over D-Bus; polling the socket");
            return None;
        }
    }
    wait.ok()
}
