//! systemd integration: notify, socket activation, journald, D-Bus, credentials. Observes the lifecycle, never drives it.
