//! `act_runner daemon`: the start checks (configuration, then the registration file), then the
//! polling engine. The checks are [`start_checks`]; the engine arrives with the daemon room.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, Registration, RegistrationError};

use super::CliError;

/// Flags of `daemon`.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Run one job, then exit.
    #[arg(long)]
    pub once: bool,
    /// Comma-separated labels; they override the config's and the registration's.
    #[arg(long, env = "GITEA_RUNNER_LABELS")]
    pub labels: Option<String>,
}

/// What the daemon starts from once the checks pass.
#[derive(Debug)]
pub struct Started {
    pub config: Config,
    pub registration: Registration,
}

/// Loads the configuration (invalid: exit 78) and the registration file (missing or corrupt:
/// exit 77, saying how to register), installs logging at `log.level` and logs the config
/// warnings.
pub fn start_checks(config_path: Option<&Path>) -> anyhow::Result<Started> {
    let loaded = Config::load(config_path)?;
    super::init_logging(loaded.config.log.level);
    super::log_config_warnings(&loaded.warnings);
    tracing::info!("Starting runner daemon");
    let registration = match Registration::load(&loaded.config.runner.file) {
        Ok(registration) => registration,
        Err(RegistrationError::NotFound { path }) => {
            return Err(CliError::NotRegistered { path }.into());
        }
        Err(error @ RegistrationError::Corrupt { .. }) => {
            return Err(
                anyhow::Error::from(error).context("run `act_runner register` again to replace it")
            );
        }
        Err(error) => return Err(error.into()),
    };
    Ok(Started {
        config: loaded.config,
        registration,
    })
}

/// Runs the command.
pub fn run(
    config: Option<PathBuf>,
    _args: DaemonArgs,
    _inherited: crate::systemd::Inherited,
) -> anyhow::Result<ExitCode> {
    let _started = start_checks(config.as_deref())?;
    anyhow::bail!(
        "the configuration and the registration are valid, but the polling engine of `daemon` \
         is not built yet"
    )
}
