//! `act_runner cache list [--repo R]` and `act_runner cache delete KEY | --repo R`: the admin's
//! view of the actions cache in `cache.dir` (or `--dir`), opened directly, without a server.
//! A running server holds the directory's lock; the commands then say so and change nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cache::{CacheServer, DeleteSelector};
use crate::config::Config;

use super::CliError;

/// `cache` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CacheArgs {
    /// List the entries (repository, key, size, last use), newest first.
    List {
        /// Only this repository's entries (`owner/name`).
        #[arg(long)]
        repo: Option<String>,
        /// The cache directory (default: `cache.dir`).
        #[arg(short = 'd', long)]
        dir: Option<PathBuf>,
    },
    /// Delete the entries of KEY (in every repository, or in --repo's), or all of --repo's.
    Delete {
        /// The exact key to delete.
        key: Option<String>,
        /// Only this repository (`owner/name`); without KEY, all of its entries.
        #[arg(long)]
        repo: Option<String>,
        /// The cache directory (default: `cache.dir`).
        #[arg(short = 'd', long)]
        dir: Option<PathBuf>,
    },
}

/// Runs the command.
pub fn run(config_path: Option<PathBuf>, args: CacheArgs) -> anyhow::Result<ExitCode> {
    let loaded = Config::load(config_path.as_deref())?;
    super::init_logging(loaded.config.log.level);
    super::log_config_warnings(&loaded.warnings);
    let mut config = loaded.config;
    let dir = match &args {
        CacheArgs::List { dir, .. } | CacheArgs::Delete { dir, .. } => dir.clone(),
    };
    if let Some(dir) = dir {
        config.cache.dir = dir;
    }
    let action = match args {
        CacheArgs::List { repo, .. } => Action::List(repo),
        CacheArgs::Delete {
            key: Some(key),
            repo,
            ..
        } => Action::Delete(DeleteSelector::Key {
            repository: repo,
            key,
        }),
        CacheArgs::Delete {
            key: None,
            repo: Some(repository),
            ..
        } => Action::Delete(DeleteSelector::Repository(repository)),
        CacheArgs::Delete { .. } => {
            return Err(CliError::InvalidInput(
                "`cache delete` needs a KEY, --repo, or both".to_owned(),
            )
            .into());
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let dir = config.cache.dir.clone();
        let cache = CacheServer::open(super::cache_service::settings(&config))
            .await
            .with_context(|| {
                format!(
                    "cannot open the cache in {}; a daemon or cache-server using it holds its \
                     index locked: stop it first",
                    dir.display()
                )
            })?;
        match action {
            Action::List(repo) => print_entries(&cache.list(repo.as_deref()).await?),
            Action::Delete(selector) => {
                let removed = cache.delete(selector).await?;
                println!("deleted {removed} entries");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

enum Action {
    List(Option<String>),
    Delete(DeleteSelector),
}

fn print_entries(entries: &[crate::cache::EntryInfo]) {
    println!(
        "{:<30} {:<24} {:<40} {:>12}  LAST USED",
        "REPOSITORY", "REF", "KEY", "BYTES"
    );
    for entry in entries {
        println!(
            "{:<30} {:<24} {:<40} {:>12}  {}",
            entry.repository,
            entry.scope,
            entry.key,
            entry.size,
            humantime::format_rfc3339_seconds(entry.last_access)
        );
    }
}
