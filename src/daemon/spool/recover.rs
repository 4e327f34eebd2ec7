//! Taking up a spool an earlier run left: its rows counted and a torn tail cut off, and the byte
//! offset of the first unacknowledged row found again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::Path;

use prost::Message;

use super::{ROWS_FILE, STATE_FILE, SpoolError, SpoolRecord, TaskSpool, io_error};
use crate::client::frame;
use crate::client::proto::runner::LogRow;

/// No row the spool writes comes near this (a line is cut at 64 KiB); a longer length read back
/// is a torn or damaged tail, not a row to allocate for.
const MAX_ROW_BYTES: usize = 16 * 1024 * 1024;

pub(super) fn recover_one(dir: &Path) -> Result<(TaskSpool, SpoolRecord), SpoolError> {
    let state_path = dir.join(STATE_FILE);
    let text = fs::read(&state_path).map_err(io_error("read", &state_path))?;
    let mut record: SpoolRecord =
        serde_json::from_slice(&text).map_err(|source| SpoolError::State {
            path: state_path.clone(),
            source,
        })?;
    let rows_path = dir.join(ROWS_FILE);
    let scan = scan(&rows_path, record.acked_rows)?;
    if rows_path.exists() {
        let file = OpenOptions::new()
            .write(true)
            .open(&rows_path)
            .map_err(io_error("open", &rows_path))?;
        file.set_len(scan.bytes)
            .map_err(io_error("truncate", &rows_path))?;
    }
    // The record's byte offset is found again from its row count, which is what Gitea
    // acknowledged; a torn tail may have cut the rows short of it.
    match scan.acked_bytes {
        Some(acked_bytes) => record.acked_bytes = acked_bytes,
        None => {
            // The acknowledged position is past what survived: start over, Gitea's ack decides.
            record.acked_rows = 0;
            record.acked_bytes = 0;
        }
    }
    Ok((
        TaskSpool::open(dir.to_path_buf(), scan.rows, scan.bytes)?,
        record,
    ))
}

/// What a rows file holds.
struct Scan {
    /// Complete rows, and the bytes they take.
    rows: u64,
    bytes: u64,
    /// Where row `acked_rows` starts, if the file holds that many rows.
    acked_bytes: Option<u64>,
}

/// Counts the complete rows of a rows file (a missing one holds none).
fn scan(path: &Path, acked_rows: u64) -> Result<Scan, SpoolError> {
    let mut scan = Scan {
        rows: 0,
        bytes: 0,
        acked_bytes: (acked_rows == 0).then_some(0),
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(scan),
        Err(error) => return Err(io_error("open", path)(error)),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut row = Vec::new();
    while let Some(frame_len) = next_row(&mut reader, &mut row).map_err(io_error("read", path))? {
        scan.rows += 1;
        scan.bytes += frame_len as u64;
        if scan.rows == acked_rows {
            scan.acked_bytes = Some(scan.bytes);
        }
    }
    Ok(scan)
}

/// Reads the next whole row into `row` and returns its frame's length; `None` at the end or at a
/// torn or undecodable tail, which the caller cuts off.
fn next_row(reader: &mut impl Read, row: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut header = [0u8; frame::MAX_HEADER_BYTES];
    let mut n_read = 0;
    loop {
        if n_read == header.len() || !read_whole(reader, &mut header[n_read..=n_read])? {
            return Ok(None);
        }
        n_read += 1;
        if n_read >= 2 && header[n_read - 1] & 0x80 == 0 {
            break;
        }
    }
    let Some((row_len, header_len)) = frame::header(&header[..n_read]) else {
        return Ok(None);
    };
    if row_len > MAX_ROW_BYTES {
        return Ok(None);
    }
    row.resize(row_len, 0);
    if !read_whole(reader, row)? || LogRow::decode(row.as_slice()).is_err() {
        return Ok(None);
    }
    Ok(Some(header_len + row_len))
}

/// Fills `buffer`; `false` when the input ends first.
fn read_whole(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buffer) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(error),
    }
}
