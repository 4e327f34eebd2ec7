//! The on-disk spool: every log row and the task state of each running or undelivered task, kept
//! under `<state dir>/spool/<task id>/` until Gitea has acknowledged all of it.
//!
//! - `rows`: the task's rows in order, append-only, each framed as an UpdateLog request frames it
//!   (see [`framing`]). Rows never change once written, so a row's byte offset is stable and the
//!   sender copies a run of rows straight from the file into the request, bytes as they are (no
//!   row is decoded or framed again to send it); memory holds one batch however much a step
//!   prints. A torn tail (a crash mid-write) is cut off on recovery.
//! - `state.json`: the [`SpoolRecord`] (job state, outputs, what Gitea acknowledged, the delivery
//!   deadline), replaced atomically (temp file, fsync, rename, fsync of the directory).
//!
//! Directories are 0700 and files 0600: rows are masked, but they are still the job's output.
//! Blocking file calls here are small appends to the page cache; callers run fsyncs and batch reads
//! on the blocking pool. Imports nothing of `client` but the `LogRow` message (and its framing
//! is the request's, which a test holds to).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::client::proto::runner::LogRow;
use crate::daemon::reporter::state::JobState;

pub mod framing;
mod recover;
mod window;
pub use window::{Fit, Window, seek_row};

/// The rows, framed (see [`framing`]).
pub const ROWS_FILE: &str = "rows";
const STATE_FILE: &str = "state.json";
const STATE_TEMP_FILE: &str = "state.json.tmp";
/// Appended rows are written out at the latest when this many bytes are buffered.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// What the spool can fail at.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot decode the spooled state {}", .path.display())]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The persisted part of a task's delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolRecord {
    pub job: JobState,
    /// Rows Gitea acknowledged (`ack_index`), and where the first unacknowledged row starts in `log`.
    pub acked_rows: u64,
    pub acked_bytes: u64,
    /// The final UpdateLog (`no_more`) was acknowledged in full.
    pub log_finished: bool,
    /// Give up delivering after this (the task's `runner.timeout` past its end).
    pub deliver_until: SystemTime,
}

/// `<state dir>/spool`: one subdirectory per task.
#[derive(Debug, Clone)]
pub struct SpoolRoot {
    dir: PathBuf,
}

/// One task's spool: the log appender and the state file.
#[derive(Debug)]
pub struct TaskSpool {
    dir: PathBuf,
    /// The log, opened for appending.
    file: File,
    /// Encoded rows not yet written: [`TaskSpool::flush`] hands them to the kernel in one write.
    unwritten: Vec<u8>,
    reader: Arc<File>,
    rows: u64,
    bytes: u64,
}

impl SpoolRoot {
    pub fn new(state_dir: &Path) -> SpoolRoot {
        SpoolRoot {
            dir: state_dir.join("spool"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Starts a fresh spool for a task (an old one with the same id is replaced).
    pub fn create(&self, record: &SpoolRecord) -> Result<TaskSpool, SpoolError> {
        let dir = self.dir.join(record.job.task_id.to_string());
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_error("remove", &dir))?;
        }
        make_private_dir(&dir)?;
        let spool = TaskSpool::open(dir, 0, 0)?;
        spool.persist(record)?;
        Ok(spool)
    }

    /// Every spool left by an earlier run, with its record; the log is scanned and a torn tail cut.
    /// A directory without a readable state is reported and skipped, never deleted.
    pub fn recover(&self) -> Result<Vec<(TaskSpool, SpoolRecord)>, SpoolError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error("list", &self.dir)(error)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("list", &self.dir))?;
            let dir = entry.path();
            if !dir.is_dir() || dir.join(STATE_FILE).metadata().is_err() {
                continue;
            }
            match recover::recover_one(&dir) {
                Ok(spooled) => found.push(spooled),
                Err(error) => {
                    tracing::error!(error = %error, spool = %dir.display(), "cannot recover a spooled task")
                }
            }
        }
        found.sort_by_key(|(_, record)| record.job.task_id);
        Ok(found)
    }
}

impl TaskSpool {
    fn open(dir: PathBuf, rows: u64, bytes: u64) -> Result<TaskSpool, SpoolError> {
        let log_path = dir.join(ROWS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(io_error("open", &log_path))?;
        let reader = File::open(&log_path).map_err(io_error("open", &log_path))?;
        Ok(TaskSpool {
            dir,
            file,
            unwritten: Vec::new(),
            reader: Arc::new(reader),
            rows,
            bytes,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rows written so far (buffered ones included).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes written so far (buffered ones included).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends a row; it becomes readable after [`TaskSpool::flush`].
    pub fn append(&mut self, row: &LogRow) -> Result<(), SpoolError> {
        let length = row.encoded_len();
        framing::push_header(length, &mut self.unwritten);
        row.encode(&mut self.unwritten)
            .expect("a Vec grows to fit any message");
        self.appended(1, framing::frame_len(length) as u64)
    }

    /// Appends one row per line, all stamped `at`: encoded straight from the lines, byte for byte
    /// what `LogRow { time: Some(at), content }` encodes to, without building a `LogRow` per line.
    pub fn append_lines<'a>(
        &mut self,
        at: SystemTime,
        lines: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), SpoolError> {
        // Every row starts alike: the frame's key and length, the time, the key of the content,
        // the content's length. The two lengths are filled in per row, so a row costs two copies
        // (this head and the content).
        let mut time = Vec::with_capacity(MAX_TIME_BYTES);
        prost::encoding::message::encode(1, &prost_types::Timestamp::from(at), &mut time);
        let mut head = RowHead::new(&time);
        let (mut n_rows, mut n_bytes) = (0, 0);
        for content in lines {
            let head = head.for_content(content.len());
            self.unwritten.extend_from_slice(head);
            self.unwritten.extend_from_slice(content.as_bytes());
            n_rows += 1;
            n_bytes += (head.len() + content.len()) as u64;
        }
        self.appended(n_rows, n_bytes)
    }

    fn appended(&mut self, n_rows: u64, n_bytes: u64) -> Result<(), SpoolError> {
        self.rows += n_rows;
        self.bytes += n_bytes;
        if self.unwritten.len() >= WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands appended rows to the kernel, in one write, so readers and a restarted daemon see them.
    /// After an error the rows not written stay buffered for the next flush.
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        while !self.unwritten.is_empty() {
            match self.file.write(&self.unwritten) {
                Ok(0) => {
                    let error = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(io_error("write", &self.dir.join(ROWS_FILE))(error));
                }
                Ok(n_written) => {
                    self.unwritten.drain(..n_written);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(io_error("write", &self.dir.join(ROWS_FILE))(error)),
            }
        }
        Ok(())
    }

    /// A handle for reading batches (see [`Window::read`]) and for fsync.
    pub fn reader(&self) -> Arc<File> {
        Arc::clone(&self.reader)
    }

    /// Writes the record atomically and durably.
    pub fn persist(&self, record: &SpoolRecord) -> Result<(), SpoolError> {
        persist_record(&self.dir, record)
    }

    /// Deletes the spool once everything was delivered (or abandoned for good).
    pub fn remove(self) -> Result<(), SpoolError> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir).map_err(io_error("remove", &dir))
    }
}

/// The longest encoded time field: its key, its length, and a `Timestamp` whose seconds take ten
/// bytes and nanos five, each with its key.
const MAX_TIME_BYTES: usize = 2 + (1 + 10) + (1 + 5);

/// Everything of a framed row before its content, for rows sharing one time: the frame key and
/// the row's length (varints), the time field, the content's key and length (varint).
struct RowHead {
    /// Laid out for a row shorter than 128 bytes (one-byte lengths): the usual log line. Only its
    /// two length bytes change from row to row.
    short: [u8; 4 + MAX_TIME_BYTES],
    /// Built whole for a longer row.
    long: [u8; 2 * framing::MAX_HEADER_BYTES + MAX_TIME_BYTES],
    time_len: usize,
}

/// The key of `LogRow.content`: field 2, length-delimited.
const CONTENT_KEY: u8 = 2 << 3 | 2;

impl RowHead {
    fn new(time: &[u8]) -> RowHead {
        let time_len = time.len();
        let mut short = [0; 4 + MAX_TIME_BYTES];
        short[0] = framing::ROW_KEY;
        short[2..2 + time_len].copy_from_slice(time);
        short[2 + time_len] = CONTENT_KEY;
        RowHead {
            short,
            long: [0; 2 * framing::MAX_HEADER_BYTES + MAX_TIME_BYTES],
            time_len,
        }
    }

    /// The head of a row whose content is `content_len` bytes. proto3 leaves an empty string
    /// out, as prost does: such a row is its time alone.
    fn for_content(&mut self, content_len: usize) -> &[u8] {
        let time_len = self.time_len;
        if content_len == 0 {
            // A time field is at most 19 bytes: its length fits in one.
            self.short[1] = time_len as u8;
            return &self.short[..2 + time_len];
        }
        let row_len = time_len + 1 + varint_len(content_len) + content_len;
        if row_len < 0x80 {
            self.short[1] = row_len as u8;
            self.short[3 + time_len] = content_len as u8;
            return &self.short[..4 + time_len];
        }
        let long = &mut self.long;
        long[0] = framing::ROW_KEY;
        let mut at = 1 + put_varint(row_len, &mut long[1..]);
        long[at..at + time_len].copy_from_slice(&self.short[2..2 + time_len]);
        at += time_len;
        long[at] = CONTENT_KEY;
        at += 1;
        at += put_varint(content_len, &mut long[at..]);
        &long[..at]
    }
}

/// How many bytes `value` takes as a varint.
fn varint_len(value: usize) -> usize {
    prost::encoding::encoded_len_varint(value as u64)
}

/// Writes `value` as a varint at the start of `out` (which has room: at most ten bytes) and
/// returns its length.
fn put_varint(mut value: usize, out: &mut [u8]) -> usize {
    let mut n = 0;
    while value >= 0x80 {
        out[n] = (value as u8) | 0x80;
        value >>= 7;
        n += 1;
    }
    out[n] = value as u8;
    n + 1
}

/// Writes `state.json` in `dir`: temp file, fsync, rename, fsync of the directory.
pub fn persist_record(dir: &Path, record: &SpoolRecord) -> Result<(), SpoolError> {
    let temp_path = dir.join(STATE_TEMP_FILE);
    let final_path = dir.join(STATE_FILE);
    let text = serde_json::to_vec(record).map_err(|source| SpoolError::State {
        path: final_path.clone(),
        source,
    })?;
    let mut file = create_private(&temp_path)?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &temp_path))?;
    fs::rename(&temp_path, &final_path).map_err(io_error("rename", &temp_path))?;
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error("sync", dir))
}

/// Creates (or empties) a file only its owner can read.
fn create_private(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error("create", path))
}

fn make_private_dir(dir: &Path) -> Result<(), SpoolError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("create", dir))
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |source| SpoolError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests;
