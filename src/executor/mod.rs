//! The workflow engine: runs one job of a GitHub Actions workflow on a backend and emits job events.
//! Imports nothing of `client`, `daemon`, `systemd` or `metrics`.

pub mod backend;
pub mod event;
pub mod expr;
