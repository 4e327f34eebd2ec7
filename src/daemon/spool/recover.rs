//! Taking up a spool an earlier run left: its rows counted and a torn tail cut off, the byte
//! offset of the first unacknowledged row found again, and a spool of the older framing (a `log`
//! file, see [`framing::legacy_frame`]) converted first.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use prost::Message;

use super::{
    ROWS_FILE, STATE_FILE, SpoolError, SpoolRecord, TaskSpool, create_private, framing, io_error,
};
use crate::client::proto::runner::LogRow;

/// The rows file of spools written before the request framing.
const LEGACY_LOG_FILE: &str = "log";
const CONVERTED_TEMP_FILE: &str = "rows.tmp";
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
    convert_legacy(dir)?;
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
    // The record's byte offset is found again from its row count: it is the one that counts,
    // and a converted spool has its rows at other offsets.
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
    while let Some(frame_len) =
        next_row(&mut reader, &mut row, Framing::Request).map_err(io_error("read", path))?
    {
        scan.rows += 1;
        scan.bytes += frame_len as u64;
        if scan.rows == acked_rows {
            scan.acked_bytes = Some(scan.bytes);
        }
    }
    Ok(scan)
}

/// Rewrites a `log` file of the older framing as a rows file (to a temporary file, synced, then
/// renamed), then removes it. A conversion a crash cut short is done again.
fn convert_legacy(dir: &Path) -> Result<(), SpoolError> {
    let legacy_path = dir.join(LEGACY_LOG_FILE);
    if !legacy_path.exists() {
        return Ok(());
    }
    let rows_path = dir.join(ROWS_FILE);
    if !rows_path.exists() {
        let temp_path = dir.join(CONVERTED_TEMP_FILE);
        let legacy = File::open(&legacy_path).map_err(io_error("open", &legacy_path))?;
        let temp = create_private(&temp_path)?;
        let mut reader = BufReader::with_capacity(256 * 1024, legacy);
        let mut writer = BufWriter::with_capacity(256 * 1024, temp);
        let mut row = Vec::new();
        let mut header = Vec::with_capacity(framing::MAX_HEADER_BYTES);
        while next_row(&mut reader, &mut row, Framing::Legacy)
            .map_err(io_error("read", &legacy_path))?
            .is_some()
        {
            header.clear();
            framing::push_header(row.len(), &mut header);
            writer
                .write_all(&header)
                .and_then(|()| writer.write_all(&row))
                .map_err(io_error("write", &temp_path))?;
        }
        let temp = writer
            .into_inner()
            .map_err(|error| io_error("write", &temp_path)(error.into_error()))?;
        temp.sync_all().map_err(io_error("sync", &temp_path))?;
        fs::rename(&temp_path, &rows_path).map_err(io_error("rename", &temp_path))?;
    }
    fs::remove_file(&legacy_path).map_err(io_error("remove", &legacy_path))?;
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error("sync", dir))
}

#[derive(Clone, Copy)]
enum Framing {
    Request,
    Legacy,
}

/// Reads the next whole row into `row` and returns its frame's length; `None` at the end or at a
/// torn or undecodable tail, which the caller cuts off.
fn next_row(
    reader: &mut impl Read,
    row: &mut Vec<u8>,
    framing: Framing,
) -> io::Result<Option<usize>> {
    let (row_len, header_len) = match framing {
        Framing::Legacy => {
            let mut length = [0u8; 4];
            if !read_whole(reader, &mut length)? {
                return Ok(None);
            }
            (u32::from_le_bytes(length) as usize, 4)
        }
        Framing::Request => {
            let mut header = [0u8; framing::MAX_HEADER_BYTES];
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
            match framing::header(&header[..n_read]) {
                Some(parsed) => parsed,
                None => return Ok(None),
            }
        }
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
