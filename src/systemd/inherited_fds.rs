//! Descriptors the launching process left open are closed at start, before anything of the
//! runner's own is open: whatever a shell (`exec 7<secret; act_runner daemon`), a supervisor or a
//! test harness leaked without close-on-exec would otherwise pass into every host job's processes.
//! The sockets systemd passes (`LISTEN_FDS`) stay: they are the runner's, and close-on-exec.
//!
//! May use: sd-notify (which fds are systemd's), nix (close by number, which is safe). Never
//! another room.

use std::os::fd::RawFd;

/// Where the fallback stops when `/proc` cannot be listed: the soft `RLIMIT_NOFILE` a process
/// starts with on Linux (systemd and shells both leave it at 1024).
const FALLBACK_FD_LIMIT: RawFd = 1024;

/// Closes every fd above stderr except systemd's passed sockets. Call it first thing in `main`,
/// single-threaded, before the process opens a descriptor of its own.
pub fn close_inherited() {
    // Sets close-on-exec on the passed sockets too; an unreadable LISTEN_FDS keeps nothing, and
    // activation reports it when it takes the listeners.
    let keep: Vec<RawFd> = sd_notify::listen_fds()
        .map(Iterator::collect)
        .unwrap_or_default();
    close_all_but(&keep);
}

fn close_all_but(keep: &[RawFd]) {
    let open = open_fds().unwrap_or_else(|| (3..FALLBACK_FD_LIMIT).collect());
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // EBADF is expected for the descriptor that listed /proc/self/fd (gone by now).
            let _ = nix::unistd::close(fd);
        }
    }
}

/// The open fds, from `/proc/self/fd` (the listing's own fd is among them, closed on return).
fn open_fds() -> Option<Vec<RawFd>> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect(),
    )
}
