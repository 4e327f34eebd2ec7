//! `act_runner cache-server`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `cache-server`.
#[derive(Debug, clap::Args)]
pub struct CacheServerArgs {}

/// Runs the command.
pub fn run(_config: Option<PathBuf>, _args: CacheServerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cache-server` is not implemented yet")
}
