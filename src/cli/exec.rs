//! `act_runner exec`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {}

/// Runs the command.
pub fn run(_config: Option<PathBuf>, _args: ExecArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`exec` is not implemented yet")
}
