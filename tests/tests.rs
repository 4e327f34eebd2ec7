//! The one integration test binary (ripgrep's layout): each module is one room's tests, in
//! `tests/<name>.rs`; shared test code lives in `tests/support/`.

mod artifacts;
mod cache;
mod cache_e2e;
mod cli;
mod client;
mod config;
mod config_keys;
mod daemon;
mod daemon_docker;
mod daemon_faults;
mod daemon_hostile;
mod daemon_job_values;
mod daemon_reload;
mod daemon_scripts;
mod daemon_step_keys;
mod docker_backend;
mod docker_network_pool;
mod docker_step_container;
mod exec_workflows;
mod executor;
mod executor_semantics;
mod expr;
mod instance_actions;
mod job_summaries;
mod metrics;
mod register;
mod remote_actions;
mod support;
mod systemd;
mod tidy;
mod wire;
