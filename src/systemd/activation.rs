//! Socket activation: the listener systemd passes under a name (`FileDescriptorName=`), taken
//! from `LISTEN_FDS`/`LISTEN_FDNAMES` and checked to be a listening TCP stream socket.
//!
//! Must run before any thread exists (listenfd removes `LISTEN_PID`/`LISTEN_FDS` from the process
//! environment); `main` does it through [`super::Inherited::capture`].
//! May use: sd-notify (names), listenfd (validated conversion), socket2. Never another room.

use std::io;
use std::net::TcpListener;

/// `FileDescriptorName=` of `act-runner-metrics.socket`.
pub const METRICS_FD_NAME: &str = "metrics";

/// Why an inherited listener cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_PID`/`LISTEN_FDS` are malformed.
    #[error("cannot read the sockets passed by systemd (LISTEN_FDS)")]
    Environment(#[source] io::Error),
    /// The fd named `name` is not a TCP stream socket.
    #[error("the socket named `{name}` (fd {fd}) is not a TCP stream socket")]
    NotTcp {
        name: String,
        fd: i32,
        #[source]
        source: io::Error,
    },
    /// The fd named `name` is a TCP socket nobody called listen(2) on.
    #[error("the socket named `{name}` (fd {fd}) is not listening")]
    NotListening { name: String, fd: i32 },
    /// Querying or preparing the socket failed.
    #[error("cannot prepare the socket named `{name}` (fd {fd})")]
    Prepare {
        name: String,
        fd: i32,
        #[source]
        source: io::Error,
    },
}

/// Takes the inherited listener named `name`, or `Ok(None)` when systemd passed none by that name
/// (then the caller binds its configured address). The listener is non-blocking, ready for
/// `tokio::net::TcpListener::from_std`. Every passed fd is already close-on-exec (sd-notify sets
/// it), so none leaks into a job process.
pub fn take_tcp_listener(name: &str) -> Result<Option<TcpListener>, ActivationError> {
    // Names first: sd-notify checks LISTEN_PID strictly and never touches the environment.
    let names: Vec<(i32, String)> = sd_notify::listen_fds_with_names()
        .map_err(ActivationError::Environment)?
        .collect();
    let Some(index) = names.iter().position(|(_, fd_name)| fd_name == name) else {
        if !names.is_empty() {
            let passed: Vec<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
            tracing::warn!(
                ?passed,
                wanted = name,
                "systemd passed sockets, none under the wanted name"
            );
        }
        return Ok(None);
    };
    let fd = names[index].0;
    let mut fds = listenfd::ListenFd::from_env();
    let listener = match fds.take_tcp_listener(index) {
        Ok(Some(listener)) => listener,
        // sd-notify saw the fd but listenfd did not (LISTEN_FDS_FIRST_FD, or taken twice).
        Ok(None) => return Ok(None),
        Err(source) => {
            return Err(ActivationError::NotTcp {
                name: name.to_owned(),
                fd,
                source,
            });
        }
    };
    let prepare = |source| ActivationError::Prepare {
        name: name.to_owned(),
        fd,
        source,
    };
    if !socket2::SockRef::from(&listener)
        .is_listener()
        .map_err(prepare)?
    {
        return Err(ActivationError::NotListening {
            name: name.to_owned(),
            fd,
        });
    }
    // systemd passes blocking sockets; tokio's from_std requires non-blocking ones.
    listener.set_nonblocking(true).map_err(prepare)?;
    Ok(Some(listener))
}
