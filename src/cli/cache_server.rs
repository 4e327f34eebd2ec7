//! `act_runner cache-server`: a standalone actions/cache server shared by several runners.
//! Validates its flags and configuration as upstream does; the cache engine itself is not
//! built yet, so it then says so and exits 1.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;

use super::CliError;

/// Flags of `cache-server`; each overrides its `cache.*` key.
#[derive(Debug, clap::Args)]
pub struct CacheServerArgs {
    /// Cache storage directory (`cache.dir`).
    #[arg(short = 'd', long = "dir")]
    pub dir: Option<PathBuf>,
    /// Address clients use to reach the server (`cache.host`).
    #[arg(short = 's', long = "host")]
    pub host: Option<String>,
    /// Listen port (`cache.port`); 0 picks a free one.
    #[arg(short = 'p', long = "port")]
    pub port: Option<u16>,
}

/// Runs the command.
pub fn run(config_path: Option<PathBuf>, args: CacheServerArgs) -> anyhow::Result<ExitCode> {
    let loaded = Config::load(config_path.as_deref())?;
    super::init_logging(loaded.config.log.level);
    super::log_config_warnings(&loaded.warnings);
    let mut cache = loaded.config.cache;
    if let Some(dir) = args.dir.filter(|dir| !dir.as_os_str().is_empty()) {
        cache.dir = dir;
    }
    if let Some(host) = args.host.filter(|host| !host.is_empty()) {
        cache.host = Some(host);
    }
    if let Some(port) = args.port {
        cache.port = port;
    }
    if cache.external_secret.is_none() {
        return Err(CliError::InvalidInput(
            "cache.external_secret (or cache.external_secret_file) must be set for cache-server; \
             runners reach it with the same secret in their cache.external_secret"
                .to_owned(),
        )
        .into());
    }
    anyhow::bail!(
        "`cache-server` is not implemented yet: no cache engine is built into this act_runner"
    )
}
