//! `act_runner daemon`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `daemon`.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {}

/// Runs the command.
pub fn run(
    _config: Option<PathBuf>,
    _args: DaemonArgs,
    _inherited: crate::systemd::Inherited,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`daemon` is not implemented yet")
}
