//! act-runner: a systemd-native Gitea Actions runner.
//!
//! # Layout
//! - [`cli`]: one file per command; the only room that uses `anyhow` and maps errors to exit codes.
//! - [`config`]: `config.yaml` model, defaults, loading and validation; the `.runner` file; labels.
//! - [`client`]: the runner API trait and its Connect and gRPC transports; the only room that speaks the wire.
//! - [`daemon`]: poller, task conversion, reporter, shutdown and drain.
//! - [`executor`]: the workflow engine; knows nothing of Gitea, HTTP or systemd.
//! - [`cache`]: the actions/cache server.
//! - [`systemd`]: sd_notify, socket activation, journald, D-Bus, credentials. Observes, never drives.
//! - [`metrics`]: the Prometheus registry and the hardened `/metrics` server. Observes, never drives.
//! - [`sync`]: taking std locks without a panic path.
#![forbid(unsafe_code)]

pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod executor;
pub mod metrics;
pub mod sync;
pub mod systemd;

/// The version reported to Gitea and printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
