//! `act_runner generate-config` and upstream's `config` group: `config generate` prints
//! `config.example.yaml` byte for byte (every key documented, with its default, commented out);
//! `config init` writes a minimal config file that sets nothing. `generate-config` is the older
//! name upstream keeps, and so do we. `config get|set|add|remove` live in `config_edit`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::CliError;
use crate::config::EditKind;

/// The file `config init` writes: options it does not name keep their default, and it names none.
pub const MINIMAL_CONFIG: &str = "# Minimal config file. Every option it does not set keeps its default.\n\
# \"act_runner config generate\" prints all options with their defaults.\n";

/// Where `config init` writes without `-c`; either name, when present, would shadow the new file.
/// The other `config` commands look for them when not given `-c`.
pub(super) const DEFAULT_NAMES: [&str; 2] = ["config.yaml", "config.yml"];

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
    /// Print the value of a config key.
    ///
    /// The key is dotted: `runner.capacity`, `runner.envs.NAME`, or a section such as `runner`.
    /// A list prints one item a line, a mapping `NAME=value` a line, a section as YAML. Without
    /// -c it reads config.yaml (or config.yml) from the working directory, else from beside the
    /// executable. Exits 1 when the file does not set the key, 78 for an unknown key.
    Get(super::config_edit::GetArgs),
    /// Set the value of a config key.
    ///
    /// One value for a key, one or more for a list (`runner.labels`, `container.valid_volumes`),
    /// which they replace; `runner.envs.NAME` sets one variable. Values are checked against the
    /// key's type (durations are written as Go prints them: 90m becomes 1h30m0s), and the result
    /// must load as the daemon loads it, else nothing is written (exit 78). Only the lines of
    /// the value change: comments and layout stay. The file is replaced in one step, keeping its
    /// mode and owner.
    Set(super::config_edit::EditArgs),
    /// Append values to a list config key.
    ///
    /// Refuses a value the list already holds, and keys that are not lists (exit 78). Writes
    /// as `set` does.
    Add(super::config_edit::EditArgs),
    /// Remove values from a list config key.
    ///
    /// Refuses a value the list does not hold (exit 78), and a key the file does not set (exit
    /// 1). Writes as `set` does.
    Remove(super::config_edit::EditArgs),
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
        ConfigCommand::Get(args) => super::config_edit::get(config, &args),
        ConfigCommand::Set(args) => super::config_edit::edit(config, EditKind::Set, &args),
        ConfigCommand::Add(args) => super::config_edit::edit(config, EditKind::Add, &args),
        ConfigCommand::Remove(args) => super::config_edit::edit(config, EditKind::Remove, &args),
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
    // Quoted as upstream's `%q` prints it, for scripts that read the line.
    println!("wrote config file {:?}", file.display().to_string());
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
