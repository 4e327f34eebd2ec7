//! D-Bus (zbus) with systemd's two services: login1 (a delay inhibitor while jobs run, and
//! PrepareForShutdown as a drain signal) and systemd1 (waiting for `docker.service` to be
//! active). Without a system bus every piece falls back to the plain behaviour after one debug line.
//!
//! May use: zbus, tokio, tokio-util, tracing. Never another room: the daemon hands in job names
//! and a cancellation token, and decides what a drain means.

pub mod logind;
pub mod units;

use std::time::Duration;

pub use logind::ShutdownInhibitor;
pub use units::{UnitWait, wait_for_docker_service, wait_for_unit_active};

/// How long connecting to the bus may take before the runner carries on without it.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// A connection to the system bus (or, in tests, a private bus at a known address).
#[derive(Clone, Debug)]
pub struct SystemBus {
    connection: zbus::Connection,
}

impl SystemBus {
    /// The system bus, or `None` (with one debug line) when there is none.
    pub async fn connect() -> Option<Self> {
        Self::finish(zbus::connection::Builder::system(), "system bus").await
    }

    /// The bus at `address` (a D-Bus address such as `unix:path=/run/dbus/test`).
    pub async fn connect_to(address: &str) -> Option<Self> {
        // Builder errors (a malformed address) surface from `build()`.
        Self::finish(zbus::connection::Builder::address(address), address).await
    }

    /// The underlying connection.
    pub fn connection(&self) -> &zbus::Connection {
        &self.connection
    }

    async fn finish(builder: zbus::connection::Builder<'_>, what: &str) -> Option<Self> {
        match tokio::time::timeout(CONNECT_LIMIT, builder.build()).await {
            Ok(Ok(connection)) => Some(Self { connection }),
            Ok(Err(error)) => {
                tracing::debug!(%error, bus = what, "no D-Bus; logind and unit features are off");
                None
            }
            Err(_) => {
                tracing::debug!(
                    bus = what,
                    "no D-Bus: connecting timed out; logind and unit features are off"
                );
                None
            }
        }
    }
}
