//! `act_runner generate-config`: prints `config.example.yaml` byte for byte (upstream's
//! `config generate`); every key is documented there, with its default, commented out.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

/// Flags of `generate-config` (none).
#[derive(Debug, clap::Args)]
pub struct GenerateConfigArgs {}

/// Runs the command.
pub fn run(_args: GenerateConfigArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(crate::config::EXAMPLE_CONFIG.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
