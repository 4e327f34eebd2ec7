//! Where a host step process writes, and the reading of it into line batches.
//!
//! Without a terminal, stdout and stderr share one pipe (as `2>&1` does): the lines arrive in the
//! order the process wrote them, whichever stream each went to, so an `add-mask` printed on one
//! stream covers a line printed right after it on the other. Two pipes read apart give no such
//! order.
//!
//! With `runner.allocate_pty` the process gets a pseudo-terminal as stdin, stdout and stderr, as
//! upstream's act does: `test -t 1` holds, and tools print colours and progress as for a person.
//! For the log this is the pipe again: one stream, in the order written. The terminal stays in
//! its default (cooked) mode, as a Docker exec's does, so both backends give a step the same
//! terminal: it turns `\n` into `\r\n`, and the reader drops a `\r` before `\n`, so the log and
//! the masker see the same lines as without one. Reading stdin waits for input that never comes,
//! as upstream. The terminal is not the process's controlling terminal (`/dev/tty` is absent):
//! making it one needs code between `fork` and `exec`, which `unsafe` alone allows.
//!
//! Every descriptor is opened close-on-exec, so a process spawned at the same time by another job
//! cannot inherit one and hold the output open. Once every process holding the terminal has gone,
//! reading it fails (`EIO`), which ends the output as end of file ends a pipe's.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Stdio;

use rustix::pty::OpenptFlags;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use crate::executor::backend::docker::lines::{MAX_LINE_BYTES, utf8_cut};
use crate::executor::backend::{OutputLines, Stream};
use crate::executor::line_batch::LineBatch;

/// What a step process is given to write to, and the runner's end to read from.
pub(super) struct StepOutput {
    pub reader: pipe::Receiver,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl StepOutput {
    /// A terminal with `terminal`, else one pipe for stdout and stderr and no stdin.
    pub fn new(terminal: bool) -> std::io::Result<StepOutput> {
        if terminal {
            Self::terminal()
        } else {
            Self::pipe()
        }
    }

    fn pipe() -> std::io::Result<StepOutput> {
        let (reader, writer) = std::io::pipe()?;
        let stderr = writer.try_clone()?;
        Ok(StepOutput {
            reader: pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?,
            stdin: Stdio::null(),
            stdout: Stdio::from(writer),
            stderr: Stdio::from(stderr),
        })
    }

    fn terminal() -> std::io::Result<StepOutput> {
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let controller = rustix::pty::openpt(flags)?;
        rustix::pty::grantpt(&controller)?;
        rustix::pty::unlockpt(&controller)?;
        let user = open_user_side(&controller, flags)?;
        let stdout = user.try_clone()?;
        let stderr = user.try_clone()?;
        // Not a pipe, but the same readiness and reads; the unchecked registration leaves setting
        // non-blocking mode to the caller.
        rustix::io::ioctl_fionbio(&controller, true)?;
        let reader = pipe::Receiver::from_owned_fd_unchecked(controller)?;
        Ok(StepOutput {
            reader,
            stdin: Stdio::from(user),
            stdout: Stdio::from(stdout),
            stderr: Stdio::from(stderr),
        })
    }
}

/// The terminal's user side: straight from the controller where the kernel can (Linux 4.13+),
/// which no other process can race for, else by its name.
fn open_user_side(controller: &OwnedFd, flags: OpenptFlags) -> std::io::Result<File> {
    if let Ok(user) = rustix::pty::ioctl_tiocgptpeer(controller, flags) {
        return Ok(File::from(user));
    }
    let name = rustix::pty::ptsname(controller, Vec::<u8>::new())?;
    let path = PathBuf::from(OsString::from_vec(name.into_bytes()));
    // std opens close-on-exec; `O_NOCTTY` keeps the runner from taking it as its own terminal.
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
}

/// Forwards the complete lines of each read as one batch; `\n` ends a line and a `\r` before it is
/// dropped; the unterminated rest is sent when the stream ends, or in pieces of
/// [`MAX_LINE_BYTES`] while it passes that. A read error (a terminal whose every user has gone)
/// ends the stream as end of file does.
pub(super) async fn forward_lines(
    reader: Option<impl AsyncRead + Unpin>,
    stream: Stream,
    output: &mpsc::Sender<OutputLines>,
) {
    let Some(reader) = reader else { return };
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let available = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(available) => available,
        };
        let n_read = available.len();
        let mut lines = LineBatch::new();
        let mut rest = available;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            if partial.is_empty() {
                push_line(&mut lines, &rest[..pos]);
            } else {
                partial.extend_from_slice(&rest[..pos]);
                push_line(&mut lines, &partial);
                partial.clear();
            }
            rest = &rest[pos + 1..];
        }
        partial.extend_from_slice(rest);
        // An unterminated line past the limit leaves in pieces, as on the Docker side, so output
        // without a newline cannot grow the buffer without end.
        while partial.len() > MAX_LINE_BYTES {
            let cut = utf8_cut(&partial, MAX_LINE_BYTES);
            push_line(&mut lines, &partial[..cut]);
            partial.drain(..cut);
        }
        reader.consume(n_read);
        if !lines.is_empty() && output.send(OutputLines { stream, lines }).await.is_err() {
            return;
        }
    }
    if !partial.is_empty() {
        let mut lines = LineBatch::new();
        push_line(&mut lines, &partial);
        let _ = output.send(OutputLines { stream, lines }).await;
    }
}

fn push_line(lines: &mut LineBatch, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    lines.push(&String::from_utf8_lossy(line));
}
