//! `act_runner register`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {}

/// Runs the command.
pub fn run(_config: Option<PathBuf>, _args: RegisterArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`register` is not implemented yet")
}
