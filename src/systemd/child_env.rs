//! Environment hygiene: the variables systemd gives the runner that no job process may see
//! (notify socket, watchdog, passed sockets, credentials, journal stream, invocation).
//!
//! Host-mode job steps and helper commands are spawned with these removed; upstream copies the
//! runner's whole environment into host jobs, so this filter is new behaviour.
//! May use: std only.

use std::ffi::{OsStr, OsString};
use std::process::Command;

/// Exact names the runner keeps to itself.
pub const RUNNER_PRIVATE_VARIABLES: &[&str] = &[
    "NOTIFY_SOCKET",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "CREDENTIALS_DIRECTORY",
    "MAINPID",
    "MANAGERPID",
    "SYSTEMD_EXEC_PID",
];

/// Prefixes of variable families the runner keeps to itself: `LISTEN_FDS`, `LISTEN_PID`,
/// `LISTEN_FDNAMES`; `WATCHDOG_USEC`, `WATCHDOG_PID`; `MONITOR_*` (ExecStopPost), `TRIGGER_*`.
pub const RUNNER_PRIVATE_PREFIXES: &[&str] = &["LISTEN_", "WATCHDOG_", "MONITOR_", "TRIGGER_"];

/// Whether `name` belongs to the runner's systemd interface and must not reach a job.
pub fn is_runner_private(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    RUNNER_PRIVATE_VARIABLES.contains(&name)
        || RUNNER_PRIVATE_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// The runner's own environment without its private variables: what a host-mode job may inherit.
pub fn job_environment() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| !is_runner_private(name))
        .collect()
}

/// Removes every private variable from what `command` passes to its child, whether inherited or
/// set on the command. Call it last, after the job's own variables are set. For a
/// `tokio::process::Command` pass `command.as_std_mut()`.
pub fn scrub(command: &mut Command) {
    let mut names: Vec<OsString> = std::env::vars_os().map(|(name, _)| name).collect();
    names.extend(command.get_envs().map(|(name, _)| name.to_owned()));
    for name in names.iter().filter(|name| is_runner_private(name)) {
        command.env_remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_interface_variables_are_private() {
        for name in [
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "INVOCATION_ID",
            "JOURNAL_STREAM",
            "CREDENTIALS_DIRECTORY",
        ] {
            assert!(is_runner_private(OsStr::new(name)), "{name}");
        }
        for name in ["PATH", "HOME", "GITHUB_TOKEN", "LISTEN", "NOTIFY_SOCKETS"] {
            assert!(!is_runner_private(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn scrub_removes_variables_set_on_the_command() {
        let mut command = Command::new("env");
        command
            .env("LISTEN_FDS", "1")
            .env("NOTIFY_SOCKET", "/x")
            .env("KEEP", "1");
        scrub(&mut command);
        let set: Vec<(String, Option<String>)> = command
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert!(set.contains(&("LISTEN_FDS".to_owned(), None)));
        assert!(set.contains(&("NOTIFY_SOCKET".to_owned(), None)));
        assert!(set.contains(&("KEEP".to_owned(), Some("1".to_owned()))));
    }
}
