//! The one integration test binary: each module is one room's tests.

mod exec_workflows;
mod expr;
mod metrics;
mod systemd;
