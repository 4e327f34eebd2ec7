//! Reading spooled rows back for UpdateLog calls: a reused window over the log file, and the walk
//! from a known row to another.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

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
            let first = match self.bytes[..want].first_chunk::<4>() {
                Some(length) => 4 + u64::from(u32::from_le_bytes(*length)),
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
        let mut rest = &self.bytes[..self.len];
        let mut offset = self.from;
        std::iter::from_fn(move || {
            let (length, after) = rest.split_first_chunk::<4>()?;
            let length = u32::from_le_bytes(*length) as usize;
            if length > after.len() {
                return None;
            }
            let (row, next) = after.split_at(length);
            rest = next;
            offset += 4 + length as u64;
            Some((row, offset))
        })
    }
}

/// Finds the byte offset of row `target_row`, counting from a known (`row`, `byte`) position.
pub fn seek_row(
    file: &File,
    mut row: u64,
    mut byte: u64,
    target_row: u64,
    end: u64,
) -> io::Result<u64> {
    let mut length = [0u8; 4];
    while row < target_row && byte < end {
        file.read_exact_at(&mut length, byte)?;
        byte += 4 + u64::from(u32::from_le_bytes(length));
        row += 1;
    }
    Ok(byte)
}
