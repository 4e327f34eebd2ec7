//! Native journald logging: detection (`JOURNAL_STREAM` or `log.journald: true`) and the
//! configured `tracing-journald` layer. The daemon runs each task in a span
//! (`daemon::execution`) whose fields become journal fields, so that
//! `journalctl -u act-runner TASK_ID=42` finds a task.
//!
//! May use: tracing, tracing-journald, std. Never another room: the daemon passes plain values.

use std::io;
use std::os::fd::AsFd as _;
use std::os::unix::fs::MetadataExt as _;

use tracing_journald::{Priority, PriorityMappings};

/// `SYSLOG_IDENTIFIER=` of every entry (`journalctl -t act_runner`).
pub const SYSLOG_IDENTIFIER: &str = "act_runner";

/// Whether to log to the journal natively: forced by config, or because stderr already is the
/// journal (systemd set `JOURNAL_STREAM` to stderr's device and inode).
pub fn wanted(forced_by_config: bool) -> bool {
    forced_by_config || stderr_is_journal()
}

/// Whether stderr is connected to the journal, per `JOURNAL_STREAM=<dev>:<ino>` (systemd.exec(5)).
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(value) = value.to_str() else {
        return false;
    };
    let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(metadata) = std::fs::File::from(stderr).metadata() else {
        return false;
    };
    journal_stream_matches(value, metadata.dev(), metadata.ino())
}

/// Whether a `JOURNAL_STREAM` value names the file with this device and inode.
pub fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((value_dev, value_ino)) = value.split_once(':') else {
        return false;
    };
    value_dev.parse() == Ok(dev) && value_ino.parse() == Ok(ino)
}

/// The journald layer: identifier `act_runner`, fields without a prefix (`task_id` →
/// `TASK_ID`), and priorities ERROR→3, WARN→4, INFO→6, DEBUG→7, TRACE→7. Fails when journald's
/// socket is not there; the caller then falls back to stderr.
pub fn layer() -> io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::layer()?
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned())
        .with_field_prefix(None)
        .with_priority_mappings(PriorityMappings {
            error: Priority::Error,
            warn: Priority::Warning,
            info: Priority::Informational,
            debug: Priority::Debug,
            trace: Priority::Debug,
        }))
}

/// The layer when [`wanted`], else `None` (with the reason on stderr when journald is missing).
pub fn layer_if_wanted(forced_by_config: bool) -> Option<tracing_journald::Layer> {
    if !wanted(forced_by_config) {
        return None;
    }
    match layer() {
        Ok(layer) => Some(layer),
        Err(error) => {
            // Logging is not set up yet; stderr is the only channel.
            eprintln!(
                "act_runner: journald requested but not reachable ({error}); logging to stderr"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_matches_only_its_own_file() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(!journal_stream_matches("8:12346", 8, 12345));
        assert!(!journal_stream_matches("9:12345", 8, 12345));
        assert!(!journal_stream_matches("garbage", 8, 12345));
        assert!(!journal_stream_matches("8:", 8, 12345));
    }
}
