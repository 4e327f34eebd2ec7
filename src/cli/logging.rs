//! The process log: one level filter in front of one output, stderr (text) or the journal
//! (native fields, when stderr is the journal or `log.journald: true`). The filter sits behind a
//! reload handle, so SIGHUP can change `log.level` without a restart; `RUST_LOG`, when set, wins
//! over `log.level` at start and on every reload.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogLevel;

/// Changes the level of the installed log; see [`init`].
#[derive(Debug, Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set: it keeps deciding, `log.level` is ignored.
    env_override: bool,
}

/// What a reload did to the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelChange {
    Unchanged,
    Changed,
    /// `RUST_LOG` decides; `log.level` is not applied.
    OverriddenByEnv,
}

static CONTROL: OnceLock<LogControl> = OnceLock::new();

/// Installs the log at `level` (`RUST_LOG` overrides it), to the journal when
/// `crate::systemd::journald::wanted(journald)` and journald answers, else to stderr. Only the
/// first call installs anything; later calls return the same control.
pub fn init(level: LogLevel, journald: bool) -> LogControl {
    CONTROL
        .get_or_init(|| {
            let (filter, env_override) = match EnvFilter::try_from_default_env() {
                Ok(filter) => (filter, true),
                Err(_) => (level_filter(level), false),
            };
            let (filter, handle) = reload::Layer::new(filter);
            let journal = crate::systemd::journald::layer_if_wanted(journald);
            let stderr = journal.is_none().then(|| {
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_target(false)
            });
            // Another subscriber already installed (a test harness) is not an error.
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(journal)
                .with(stderr)
                .try_init();
            LogControl {
                handle,
                env_override,
            }
        })
        .clone()
}

impl LogControl {
    /// Applies `level` (a SIGHUP reload) unless `RUST_LOG` decides.
    pub fn set_level(&self, level: LogLevel) -> LevelChange {
        if self.env_override {
            return LevelChange::OverriddenByEnv;
        }
        let wanted = level_filter(level).to_string();
        let current = self
            .handle
            .with_current(|filter| filter.to_string())
            .unwrap_or_default();
        if current == wanted {
            return LevelChange::Unchanged;
        }
        match self.handle.reload(level_filter(level)) {
            Ok(()) => LevelChange::Changed,
            // Only possible once the subscriber is gone (process exit).
            Err(_) => LevelChange::Unchanged,
        }
    }
}

fn level_filter(level: LogLevel) -> EnvFilter {
    EnvFilter::new(level.as_tracing().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_filters_name_the_tracing_level() {
        assert_eq!(level_filter(LogLevel::Debug).to_string(), "debug");
        assert_eq!(level_filter(LogLevel::Fatal).to_string(), "error");
        assert_eq!(level_filter(LogLevel::Warn).to_string(), "warn");
    }
}
