//! `act_runner generate-config` and upstream's `config` group: `config generate` prints
//! `config.example.yaml` byte for byte (every key documented, with its default, commented out);
//! `config init` writes a minimal config file that sets nothing. `generate-config` is the older
//! name upstream keeps, and so do we.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::CliError;

/// The file `config init` writes: options it does not name keep their default, and it names none.
pub const MINIMAL_CONFIG: &str = "# Minimal config file. Every option it does not set keeps its default.\n\
# \"act_runner config generate\" prints all options with their defaults.\n";

/// Where `config init` writes without `-c`; either name, when present, would shadow the new file.
const DEFAULT_NAMES: [&str; 2] = ["config.yaml", "config.yml"];

/// Flags of `generate-config` and `config generate` (none).
#[derive(Debug, clap::Args)]
pub struct GenerateConfigArgs {}

/// `act_runner config ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the example config, which documents every option.
    Generate(GenerateConfigArgs),
    /// Write a minimal config file (`-c`, else config.yaml here), leaving every option at its
    /// default.
    Init(InitArgs),
}

/// Flags of `config init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Overwrite an existing config file.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
}

/// Runs `generate-config`.
pub fn run(_args: GenerateConfigArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(crate::config::EXAMPLE_CONFIG.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a `config` subcommand; `config` is the global `-c`.
pub fn run_config(config: Option<PathBuf>, command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Generate(args) => run(args),
        ConfigCommand::Init(args) => init(config, &args),
    }
}

fn init(config: Option<PathBuf>, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let (file, taken) = match config {
        Some(file) => (file.clone(), vec![file]),
        None => (
            PathBuf::from(DEFAULT_NAMES[0]),
            DEFAULT_NAMES.iter().map(PathBuf::from).collect(),
        ),
    };
    if !args.force
        && let Some(existing) = taken.iter().find(|path| path.symlink_metadata().is_ok())
    {
        return Err(CliError::InvalidInput(format!(
            "config file {} already exists, pass --force to overwrite it",
            existing.display()
        ))
        .into());
    }
    write_new(&file)?;
    println!("wrote config file {}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes [`MINIMAL_CONFIG`] to `file`, readable by its owner only: a config may come to hold a
/// secret (`cache.external_secret`).
fn write_new(file: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    out.write_all(MINIMAL_CONFIG.as_bytes())
        .and_then(|()| out.sync_all())
        .with_context(|| format!("cannot write {}", file.display()))
}
