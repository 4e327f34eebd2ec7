//! The one integration test binary: each module is one room's tests.

mod docker_backend;
mod exec_workflows;
mod expr;
mod metrics;
mod support;
mod systemd;
