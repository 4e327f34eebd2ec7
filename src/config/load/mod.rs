//! Loading: file → spanned YAML tree (`yaml`) → [`Config`] (`model`), upstream's `LoadDefault`.
//! Every key is read here with its default; unknown keys become warnings with their line;
//! invalid values are all collected and returned together. Reads the files the configuration
//! names (`runner.env_file`, `cache.external_secret_file`) and nothing else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::GoDuration;
use super::error::{ConfigError, KeyMessage};
use super::model::Config;
use super::reader::{At, Reader};
use super::small_file;
use super::yaml;

mod runner;
mod services;

use runner::{read_log, read_runner};
use services::{read_cache, read_container, read_health_check, read_host, read_metrics};

/// A configuration and what the user should be warned about.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// Unknown keys, clamped values, deprecated keys. The caller logs them.
    pub warnings: Vec<KeyMessage>,
}

/// What loading needs from the process environment, injectable for tests.
#[derive(Debug, Clone)]
pub struct LoadEnv {
    /// `$HOME`, the base of the `host.workdir_parent` default and of `cache.dir`'s last resort.
    pub home: PathBuf,
    /// The first path of `$STATE_DIRECTORY` (systemd's `StateDirectory=`): `cache.dir` defaults
    /// to its `cache/` so a service keeps its cache with its other state.
    pub state_directory: Option<PathBuf>,
    /// `$XDG_CACHE_HOME`: a user's `cache.dir` defaults to its `actcache/`.
    pub xdg_cache_home: Option<PathBuf>,
}

impl LoadEnv {
    /// From the process environment; an unset `HOME` falls back to `/` as Go's `os.UserHomeDir`
    /// callers upstream effectively do.
    pub fn from_process() -> LoadEnv {
        let absolute = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|path| path.is_absolute())
        };
        LoadEnv {
            home: std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map_or_else(|| PathBuf::from("/"), PathBuf::from),
            state_directory: std::env::var_os("STATE_DIRECTORY").and_then(|dirs| {
                // systemd separates several `StateDirectory=` paths with `:`; the first is ours.
                std::env::split_paths(&dirs).find(|path| path.is_absolute())
            }),
            xdg_cache_home: absolute("XDG_CACHE_HOME"),
        }
    }

    /// Only `$HOME` set: what a user's shell without systemd or XDG variables gives.
    pub fn with_home(home: impl Into<PathBuf>) -> LoadEnv {
        LoadEnv {
            home: home.into(),
            state_directory: None,
            xdg_cache_home: None,
        }
    }

    /// The default `cache.dir`: `$STATE_DIRECTORY/cache` under systemd, else
    /// `$XDG_CACHE_HOME/actcache`, else `~/.cache/actcache`.
    pub fn default_cache_dir(&self) -> PathBuf {
        if let Some(state) = &self.state_directory {
            return state.join("cache");
        }
        self.xdg_cache_home
            .clone()
            .unwrap_or_else(|| self.home.join(".cache"))
            .join("actcache")
    }
}

impl Config {
    /// Loads `path`, or every default when `None` (upstream reads no file without `-c`).
    pub fn load(path: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
        Config::load_with(path, &LoadEnv::from_process())
    }

    /// [`Config::load`] with an explicit environment.
    pub fn load_with(path: Option<&Path>, env: &LoadEnv) -> Result<LoadedConfig, ConfigError> {
        match path {
            None => Config::from_yaml("", Path::new("(defaults)"), env),
            Some(path) => {
                let text =
                    small_file::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    })?;
                Config::from_yaml(&text, path, env)
            }
        }
    }

    /// The defaults, exactly what an empty file gives.
    pub fn defaults(env: &LoadEnv) -> Config {
        // An empty document reads no file and cannot fail; a failure here is a bug in `load.rs`.
        Config::from_yaml("", Path::new("(defaults)"), env)
            .expect("the empty configuration is valid")
            .config
    }

    /// Parses `text` as if read from `source` (used in messages).
    pub fn from_yaml(
        text: &str,
        source: &Path,
        env: &LoadEnv,
    ) -> Result<LoadedConfig, ConfigError> {
        let root = yaml::parse(text).map_err(|error| {
            let position = error.position.unwrap_or_default();
            ConfigError::Syntax {
                path: source.to_owned(),
                line: position.line,
                column: position.column,
                message: error.message,
            }
        })?;
        let mut reader = Reader::new(source);
        let mut top = reader.fields("", Some(&root));
        let log = read_log(&mut reader, &mut top);
        let runner = read_runner(&mut reader, &mut top);
        let cache = read_cache(&mut reader, &mut top, env);
        let container = read_container(&mut reader, &mut top);
        let host = read_host(&mut reader, &mut top, env);
        let metrics = read_metrics(&mut reader, &mut top);
        let health_check = read_health_check(&mut reader, &mut top);
        reader.finish(top);
        super::not_acted_on::warn_not_acted_on(&mut reader, &root);
        if !reader.problems.is_empty() {
            return Err(ConfigError::Invalid(reader.problems));
        }
        Ok(LoadedConfig {
            config: Config {
                log,
                runner,
                cache,
                container,
                host,
                metrics,
                health_check,
            },
            warnings: reader.warnings,
        })
    }
}

/// A positive duration, or `default` when absent, zero or negative.
pub(super) fn positive_or(value: Option<At<GoDuration>>, default: Duration) -> Duration {
    value
        .and_then(|value| value.value.to_std())
        .filter(|duration| !duration.is_zero())
        .unwrap_or(default)
}

/// `default` when absent; `None` when written as zero or negative ("off").
pub(super) fn off_when_non_positive(
    value: Option<At<GoDuration>>,
    default: Duration,
) -> Option<Duration> {
    match value {
        None => Some(default),
        Some(value) => value.value.to_std().filter(|duration| !duration.is_zero()),
    }
}
