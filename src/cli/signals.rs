//! The signals a long-running command answers: SIGINT and SIGTERM stop it, SIGHUP reloads.
//!
//! The handlers are installed by [`Signals::install`] before a command starts serving, because
//! until they are, SIGTERM's default action kills the process outright: a stop that arrives
//! between the first request served and a handler installed later would skip the drain.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a received signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGINT (a user's ^C) or SIGTERM (`systemctl stop`).
    Stop,
    /// SIGHUP (`systemctl reload`).
    Reload,
}

/// Installed handlers for SIGINT, SIGTERM and SIGHUP.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers; from then on the three signals are queued for [`Signals::next`].
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal received.
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.interrupt.recv() => Request::Stop,
            _ = self.terminate.recv() => Request::Stop,
            _ = self.hangup.recv() => Request::Reload,
        }
    }
}
