//! `act_runner config get|set|add|remove`: upstream's commands for reading and editing one key
//! of the config file from a script. Keys are dotted paths (`runner.capacity`,
//! `runner.envs.NAME`); the work is `config::get_value` / `config::edit_value`, this file finds
//! the file and replaces it in one step, keeping its mode and owner.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::CliError;
use super::generate_config::DEFAULT_NAMES;
use crate::config::{ConfigError, EditKind, LoadEnv, small_file};

/// Flags of `config get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The dotted key, e.g. `runner.capacity` or `runner.envs.NAME`.
    pub key: String,
}

/// Flags of `config set`, `add` and `remove`.
#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The dotted key, e.g. `runner.labels`.
    pub key: String,
    /// The values; a value starting with `-` (`--cpus 2`) is taken as a value, not a flag.
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
    pub values: Vec<String>,
}

/// Runs `config get`: prints the value as the file holds it (a list one item a line, a mapping
/// `NAME=value` a line, a section as YAML).
pub fn get(config: Option<PathBuf>, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let file = resolve_file(config)?;
    let text = read(&file)?;
    let value = crate::config::get_value(&text, &file, &args.key)
        .with_context(|| file.display().to_string())?;
    // Written, not printed: a reader that closed the pipe is an error, not a panic.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{value}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `config set|add|remove`: edits the key and replaces the file, or changes nothing.
pub fn edit(config: Option<PathBuf>, kind: EditKind, args: &EditArgs) -> anyhow::Result<ExitCode> {
    let file = resolve_file(config)?;
    let text = read(&file)?;
    let edited = crate::config::edit_value(
        &text,
        &file,
        &LoadEnv::from_process(),
        kind,
        &args.key,
        &args.values,
    )
    .with_context(|| format!("{} was left unchanged", file.display()))?;
    replace_file(&file, edited.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `-c`, else the first of `config.yaml` and `config.yml` in the working directory or beside the executable
/// (said on stderr, as upstream does).
fn resolve_file(config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(file) = config {
        return Ok(file);
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
        && !dirs.contains(&dir)
    {
        dirs.push(dir);
    }
    for dir in &dirs {
        for name in DEFAULT_NAMES {
            let candidate = dir.join(name);
            if candidate.is_file() {
                eprintln!("using config file {:?}", candidate.display().to_string());
                return Ok(candidate);
            }
        }
    }
    let dirs: Vec<String> = dirs.iter().map(|dir| dir.display().to_string()).collect();
    Err(CliError::InvalidInput(format!(
        "no {} found in {}, pass one with --config",
        DEFAULT_NAMES.join(" or "),
        dirs.join(" or ")
    ))
    .into())
}

fn read(file: &Path) -> anyhow::Result<String> {
    small_file::read_to_string(file).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CliError::InvalidInput(format!(
                "config file {} does not exist, create one with `act_runner config init`",
                file.display()
            ))
            .into()
        } else {
            ConfigError::Read {
                path: file.to_owned(),
                source,
            }
            .into()
        }
    })
}

/// Replaces `file` atomically with its mode and owner (the owner only where the caller may
/// give it, i.e. as root): a config may hold a secret, so its permissions never change. A
/// symbolic link is followed, so a config linked in from elsewhere stays linked.
fn replace_file(file: &Path, content: &[u8]) -> anyhow::Result<()> {
    let target = if file.symlink_metadata()?.file_type().is_symlink() {
        fs::canonicalize(file)?
    } else {
        file.to_owned()
    };
    let metadata = fs::metadata(&target)?;
    crate::config::write_atomically_as(
        &target,
        content,
        metadata.mode() & 0o7777,
        Some((metadata.uid(), metadata.gid())),
    )?;
    Ok(())
}
