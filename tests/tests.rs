//! The one integration test binary: each module is one room's tests.

mod expr;
mod metrics;
mod systemd;
