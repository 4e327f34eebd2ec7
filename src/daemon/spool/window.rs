//! Reading spooled rows back for UpdateLog calls: a reused window over the log file, and the walk
//! from a known row to another.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::client::frame;

/// Spooled rows read for one UpdateLog call, still encoded as in the log; see [`Window::read`].
#[derive(Debug, Default)]
pub struct Window {
    /// Holds the rows read in `bytes[..len]`; never shrinks.
    bytes: Vec<u8>,
    len: usize,
    /// The log offset of `bytes[0]`.
    from: u64,
}

impl Window {
    /// Reads whole rows from byte `from` (a row boundary) up to byte `end`: at most `max_bytes`
    /// of the log, but always the first row. The buffer is kept, so reading again allocates
    /// nothing new (no fresh pages for the kernel to fault in on every call).
    pub fn read(&mut self, file: &File, from: u64, end: u64, max_bytes: usize) -> io::Result<()> {
        self.from = from;
        self.len = 0;
        if from >= end {
            return Ok(());
        }
        let mut want = (end - from).min(max_bytes as u64) as usize;
        loop {
            if self.bytes.len() < want {
                self.bytes.resize(want, 0);
            }
            file.read_exact_at(&mut self.bytes[..want], from)?;
            self.len = want;
            if self.rows().next().is_some() {
                return Ok(());
            }
            // The first row is longer than `max_bytes`: read it whole.
            let first = match frame::header(&self.bytes[..want]) {
                Some((row_len, header_len)) => (header_len + row_len) as u64,
                None => end - from,
            };
            if first > end - from || first as usize <= want {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the spooled row at byte {from} runs past the end of the log"),
                ));
            }
            want = first as usize;
        }
    }

    /// Each whole row read: its `LogRow` encoding and the log offset just past it.
    pub fn rows(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        self.rows_from(self.from)
    }

    /// [`Window::rows`] from the row that starts at log offset `at`.
    fn rows_from(&self, at: u64) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        let skip = usize::try_from(at - self.from).map_or(self.len, |skip| skip.min(self.len));
        let mut rest = &self.bytes[skip..self.len];
        let mut offset = at;
        std::iter::from_fn(move || {
            let (row, frame_len) = frame::frame(rest)?;
            rest = &rest[frame_len..];
            offset += frame_len as u64;
            Some((row, offset))
        })
    }

    /// The rows read, from the first, that fit in `space` bytes (the first always does, so every
    /// request makes progress), and whether a row was left out for want of space. A row the window
    /// holds only the start of ends past the window, so past any space the window was read for.
    ///
    /// With `known`, a row boundary inside the space (`rows` rows from the first end at log offset
    /// `bytes`), the count starts there instead of at the first row; one outside the space or the
    /// window is ignored.
    pub fn fitting(&self, space: usize, known: Option<Known>) -> Fit {
        let window_end = self.from + self.len as u64;
        let mut fit = Fit {
            end: self.from,
            n_rows: 0,
            full: false,
        };
        if let Some(known) = known
            && known.bytes > self.from
            && known.bytes - self.from <= space as u64
            && known.bytes <= window_end
        {
            fit.end = known.bytes;
            fit.n_rows = known.rows;
        }
        for (_, end) in self.rows_from(fit.end) {
            if fit.n_rows > 0 && end - self.from > space as u64 {
                fit.full = true;
                return fit;
            }
            fit.end = end;
            fit.n_rows += 1;
        }
        fit.full = window_end > fit.end;
        fit
    }

    /// The rows read from the first up to the log offset `end` (one returned by
    /// [`Window::rows`]), framed as in the spool, which is how a request carries them.
    pub fn framed_until(&self, end: u64) -> &[u8] {
        let len = usize::try_from(end.saturating_sub(self.from)).unwrap_or(usize::MAX);
        &self.bytes[..len.min(self.len)]
    }
}

/// A row boundary the caller knows inside a window: `rows` whole rows from the window's first
/// end at log offset `bytes`. See [`Window::fitting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub rows: usize,
    pub bytes: u64,
}

/// See [`Window::fitting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// The log offset just past the last row that fits.
    pub end: u64,
    pub n_rows: usize,
    pub full: bool,
}

/// Finds the byte offset of row `target_row`, counting from a known (`row`, `byte`) position.
pub fn seek_row(
    file: &File,
    mut row: u64,
    mut byte: u64,
    target_row: u64,
    end: u64,
) -> io::Result<u64> {
    let mut header = [0u8; frame::MAX_HEADER_BYTES];
    while row < target_row && byte < end {
        let available = (end - byte).min(header.len() as u64) as usize;
        file.read_exact_at(&mut header[..available], byte)?;
        let Some((row_len, header_len)) = frame::header(&header[..available]) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no spooled row starts at byte {byte}"),
            ));
        };
        byte += (header_len + row_len) as u64;
        row += 1;
    }
    Ok(byte)
}
