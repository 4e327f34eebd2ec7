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
/// `FileDescriptorName=` of `act-runner-cache.socket` (the listener of `act_runner cache-server`).
pub const CACHE_FD_NAME: &str = "cache";

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
    let [listener] = take_tcp_listeners([name]);
    listener
}

/// [`take_tcp_listener`] for several names at once: listenfd reads `LISTEN_FDS` only once (it
/// removes the variables), so every name a process wants is taken in one call.
pub fn take_tcp_listeners<const N: usize>(
    names: [&str; N],
) -> [Result<Option<TcpListener>, ActivationError>; N] {
    // Names first: sd-notify checks LISTEN_PID strictly and never touches the environment.
    let passed: Vec<(i32, String)> = match sd_notify::listen_fds_with_names() {
        Ok(passed) => passed.collect(),
        Err(error) => {
            let kind = error.kind();
            let message = error.to_string();
            return names.map(|_| {
                Err(ActivationError::Environment(io::Error::new(
                    kind,
                    message.clone(),
                )))
            });
        }
    };
    if !passed.is_empty()
        && !names
            .iter()
            .any(|name| passed.iter().any(|(_, n)| n == name))
    {
        let passed: Vec<&str> = passed.iter().map(|(_, n)| n.as_str()).collect();
        tracing::warn!(
            ?passed,
            wanted = ?names,
            "systemd passed sockets, none under a wanted name"
        );
    }
    let mut fds = listenfd::ListenFd::from_env();
    names.map(|name| match passed.iter().position(|(_, n)| n == name) {
        None => Ok(None),
        Some(index) => take_at(&mut fds, index, passed[index].0, name),
    })
}

fn take_at(
    fds: &mut listenfd::ListenFd,
    index: usize,
    fd: i32,
    name: &str,
) -> Result<Option<TcpListener>, ActivationError> {
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
