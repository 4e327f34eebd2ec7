//! `act_runner generate-config`.

use std::process::ExitCode;

/// Flags of `generate-config`.
#[derive(Debug, clap::Args)]
pub struct GenerateConfigArgs {}

/// Runs the command.
pub fn run(_args: GenerateConfigArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`generate-config` is not implemented yet")
}
