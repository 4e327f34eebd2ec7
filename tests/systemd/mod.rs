//! Tests of the systemd room: the notify protocol against a datagram listener, the watchdog's
//! gating under paused time, socket activation through `systemd-socket-activate` (a probe, and
//! the real daemon in `daemon`: READY/STATUS/STOPPING/EXTEND_TIMEOUT order, watchdog period, job
//! environment), the real daemon's watchdog gate on a frozen Docker (`watchdog_docker`),
//! environment hygiene of job processes, and the unit files through `systemd-analyze`. The tests
//! under real systemd (nspawn) are `tests/steps.d/80-systemd-system.sh`.

mod activation;
mod daemon;
mod dbus;
mod notify;
mod units;
mod watchdog;
mod watchdog_docker;

use std::path::PathBuf;
use std::time::Duration;

/// Every await in these tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Whether `tool` is on PATH. Missing: the test fails under `CI`, and is skipped (with the reason
/// printed) elsewhere.
pub fn require_tool(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let reason = format!("{tool} is required (tests/setup.d/40-nspawn.sh installs it)");
    crate::support::require(found, &reason)
}

/// Builds the example `name` (debug profile, like the tests) and returns its path.
pub fn example_binary(name: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "cannot build example {name}");
    // target/debug/deps/tests-<hash> → target/debug/examples/<name>
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}
