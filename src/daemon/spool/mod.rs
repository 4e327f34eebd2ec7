//! The on-disk spool: every log row and the task state of each running or undelivered task, kept
//! under `<state dir>/spool/<task id>/` until Gitea has acknowledged all of it.
//!
//! - `rows`: the task's rows in order, append-only, each framed as an UpdateLog request frames it
//!   (see [`frame`]). Rows never change once written, so a row's byte offset is stable and the
//!   sender copies a run of rows straight from the file into the request, bytes as they are (no
//!   row is decoded or framed again to send it); memory holds one batch however much a step
//!   prints, and at most 128 KiB of row marks (see `spool::marks`). A torn tail (a crash
//!   mid-write) is cut off on recovery.
//! - `state.json`: the [`SpoolRecord`] (job state, outputs, what Gitea acknowledged, the delivery
//!   deadline), replaced atomically (temp file, rename), and synced to disk with the rows where
//!   delivery depends on it ([`persist_record`]).
//!
//! Directories are 0700 and files 0600: rows are masked, but they are still the job's output.
//! Blocking file calls here are small appends to the page cache; callers run fsyncs and batch reads
//! on the blocking pool. The frames are `client`'s (`client::frame` owns the wire format and
//! `client::append_rows` encodes lines into frames); the spool stores them and finds their
//! boundaries, and interprets nothing else of them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::client::proto::runner::LogRow;
use crate::client::{RowBuffer, frame};
use crate::daemon::reporter::state::TaskReport;

mod marks;
mod recover;
mod window;
pub use marks::RowMark;
pub use window::{Fit, Known, Window, seek_row};

use marks::RowMarks;

/// The rows, framed (see [`frame`]).
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
    pub job: TaskReport,
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
    unwritten: RowBuffer,
    reader: Arc<File>,
    rows: u64,
    bytes: u64,
    /// Where appended batches ended, for building requests without walking every row.
    marks: RowMarks,
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
            unwritten: RowBuffer::default(),
            reader: Arc::new(reader),
            rows,
            bytes,
            marks: RowMarks::default(),
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
        let mut framed = Vec::with_capacity(frame::frame_len(length));
        frame::push_header(length, &mut framed);
        row.encode(&mut framed)
            .expect("a Vec grows to fit any message");
        self.unwritten.extend(&framed);
        self.appended(1, framed.len() as u64)
    }

    /// Appends one row per line, all stamped `at`, each line given as its `(start, end)` in
    /// `text`: encoded straight from the text, byte for byte what
    /// `LogRow { time: Some(at), content }` encodes to, without building a `LogRow` per line.
    pub fn append_lines(
        &mut self,
        at: SystemTime,
        text: &str,
        spans: impl IntoIterator<Item = (usize, usize)>,
    ) -> Result<(), SpoolError> {
        let (n_rows, n_bytes) = crate::client::append_rows(&mut self.unwritten, at, text, spans);
        self.appended(n_rows, n_bytes)
    }

    fn appended(&mut self, n_rows: u64, n_bytes: u64) -> Result<(), SpoolError> {
        self.rows += n_rows;
        self.bytes += n_bytes;
        self.marks.record(RowMark {
            rows: self.rows,
            bytes: self.bytes,
        });
        if self.unwritten.filled().len() >= WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// The last row boundary an append left after byte `after` and at most at byte `limit`, if one
    /// is still known (see `spool::marks`). Boundaries at or before `after` are forgotten.
    pub fn row_mark(&mut self, after: u64, limit: u64) -> Option<RowMark> {
        self.marks.last_between(after, limit)
    }

    /// Hands appended rows to the kernel, in one write, so readers and a restarted daemon see them.
    /// After an error the rows not written stay buffered for the next flush.
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        while !self.unwritten.filled().is_empty() {
            match self.file.write(self.unwritten.filled()) {
                Ok(0) => {
                    let error = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(io_error("write", &self.dir.join(ROWS_FILE))(error));
                }
                Ok(n_written) => {
                    self.unwritten.consume(n_written);
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

/// Writes `state.json` in `dir` durably: temp file, fsync, rename, fsync of the directory.
pub fn persist_record(dir: &Path, record: &SpoolRecord) -> Result<(), SpoolError> {
    write_record(dir, record, true)?;
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error("sync", dir))
}

/// Replaces `state.json` in `dir` atomically (temp file, rename) without any fsync: a crash of
/// the daemon finds either record whole, a crash of the machine may find the older one. For the
/// record's updates while rows stream, which an fsync would stall (see `reporter::persist`).
pub fn replace_record(dir: &Path, record: &SpoolRecord) -> Result<(), SpoolError> {
    write_record(dir, record, false)
}

fn write_record(dir: &Path, record: &SpoolRecord, sync: bool) -> Result<(), SpoolError> {
    let temp_path = dir.join(STATE_TEMP_FILE);
    let final_path = dir.join(STATE_FILE);
    let text = serde_json::to_vec(record).map_err(|source| SpoolError::State {
        path: final_path.clone(),
        source,
    })?;
    let mut file = create_private(&temp_path)?;
    file.write_all(&text)
        .and_then(|()| if sync { file.sync_all() } else { Ok(()) })
        .map_err(io_error("write", &temp_path))?;
    fs::rename(&temp_path, &final_path).map_err(io_error("rename", &temp_path))
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
