//! The on-disk spool: every log row and the task state of each running or undelivered task, kept
//! under `<state dir>/spool/<task id>/` until Gitea has acknowledged all of it.
//!
//! - `log`: the task's rows in order, append-only, each a little-endian `u32` length and a
//!   protobuf `LogRow`. Rows never change once written, so a row's byte offset is stable and the
//!   sender reads a batch straight from the file into the request, bytes as they are (no row is
//!   decoded to send it); memory holds one batch however much a step prints.
//!   A torn tail (a crash mid-write) is cut off on recovery.
//! - `state.json`: the [`SpoolRecord`] (job state, outputs, what Gitea acknowledged, the delivery
//!   deadline), replaced atomically (temp file, fsync, rename, fsync of the directory).
//!
//! Directories are 0700 and files 0600: rows are masked, but they are still the job's output.
//! Blocking file calls here are small appends to the page cache; callers run fsyncs and batch reads
//! on the blocking pool. Imports nothing of `client` but the `LogRow` message.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::client::proto::runner::LogRow;
use crate::daemon::reporter::state::JobState;

mod window;
pub use window::{Window, seek_row};

const LOG_FILE: &str = "log";
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
            match recover_one(&dir) {
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

fn recover_one(dir: &Path) -> Result<(TaskSpool, SpoolRecord), SpoolError> {
    let state_path = dir.join(STATE_FILE);
    let text = fs::read(&state_path).map_err(io_error("read", &state_path))?;
    let mut record: SpoolRecord =
        serde_json::from_slice(&text).map_err(|source| SpoolError::State {
            path: state_path.clone(),
            source,
        })?;
    let log_path = dir.join(LOG_FILE);
    let (rows, bytes) = scan_log(&log_path)?;
    let file = OpenOptions::new()
        .write(true)
        .open(&log_path)
        .map_err(io_error("open", &log_path))?;
    file.set_len(bytes)
        .map_err(io_error("truncate", &log_path))?;
    if record.acked_rows > rows || record.acked_bytes > bytes {
        // The acknowledged position is past what survived: start over, Gitea's ack decides.
        record.acked_rows = 0;
        record.acked_bytes = 0;
    }
    Ok((TaskSpool::open(dir.to_path_buf(), rows, bytes)?, record))
}

/// Counts the complete rows of a log file and the byte length they cover.
fn scan_log(path: &Path) -> Result<(u64, u64), SpoolError> {
    let file = File::open(path).map_err(io_error("open", path))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut body = Vec::new();
    loop {
        let mut length = [0u8; 4];
        match reader.read_exact(&mut length) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(io_error("read", path)(error)),
        }
        let length = u32::from_le_bytes(length) as usize;
        body.resize(length, 0);
        match reader.read_exact(&mut body) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(io_error("read", path)(error)),
        }
        if LogRow::decode(body.as_slice()).is_err() {
            break;
        }
        rows += 1;
        bytes += 4 + length as u64;
    }
    Ok((rows, bytes))
}

impl TaskSpool {
    fn open(dir: PathBuf, rows: u64, bytes: u64) -> Result<TaskSpool, SpoolError> {
        let log_path = dir.join(LOG_FILE);
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
        self.unwritten
            .extend_from_slice(&(length as u32).to_le_bytes());
        row.encode(&mut self.unwritten)
            .expect("a Vec grows to fit any message");
        self.appended(1, 4 + length as u64)
    }

    /// Appends one row per line, all stamped `at`: encoded straight from the lines, byte for byte
    /// what `LogRow { time: Some(at), content }` encodes to, without building a `LogRow` per line.
    pub fn append_lines<'a>(
        &mut self,
        at: SystemTime,
        lines: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), SpoolError> {
        // Every row starts alike: a length to fill in, the time, the key of the content.
        let mut prefix = Vec::with_capacity(24);
        prefix.extend_from_slice(&[0; 4]);
        prost::encoding::message::encode(1, &prost_types::Timestamp::from(at), &mut prefix);
        let without_content = prefix.len();
        prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut prefix);
        let (mut n_rows, mut n_bytes) = (0, 0);
        for content in lines {
            let start = self.unwritten.len();
            // proto3 leaves an empty string out, as prost does.
            if content.is_empty() {
                self.unwritten.extend_from_slice(&prefix[..without_content]);
            } else {
                self.unwritten.extend_from_slice(&prefix);
                prost::encoding::encode_varint(content.len() as u64, &mut self.unwritten);
                self.unwritten.extend_from_slice(content.as_bytes());
            }
            let length = self.unwritten.len() - start - 4;
            self.unwritten[start..start + 4].copy_from_slice(&(length as u32).to_le_bytes());
            n_rows += 1;
            n_bytes += 4 + length as u64;
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
                    return Err(io_error("write", &self.dir.join(LOG_FILE))(error));
                }
                Ok(n_written) => {
                    self.unwritten.drain(..n_written);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(io_error("write", &self.dir.join(LOG_FILE))(error)),
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

/// Writes `state.json` in `dir`: temp file, fsync, rename, fsync of the directory.
pub fn persist_record(dir: &Path, record: &SpoolRecord) -> Result<(), SpoolError> {
    let temp_path = dir.join(STATE_TEMP_FILE);
    let final_path = dir.join(STATE_FILE);
    let text = serde_json::to_vec(record).map_err(|source| SpoolError::State {
        path: final_path.clone(),
        source,
    })?;
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp_path)
        .map_err(io_error("create", &temp_path))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &temp_path))?;
    fs::rename(&temp_path, &final_path).map_err(io_error("rename", &temp_path))?;
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error("sync", dir))
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
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn row(n: usize) -> LogRow {
        LogRow {
            time: Some((UNIX_EPOCH + Duration::from_secs(n as u64)).into()),
            content: format!("line {n}"),
        }
    }

    fn record(task_id: i64) -> SpoolRecord {
        SpoolRecord {
            job: JobState::new(task_id),
            acked_rows: 0,
            acked_bytes: 0,
            log_finished: false,
            deliver_until: UNIX_EPOCH,
        }
    }

    fn decoded(window: &Window) -> Vec<LogRow> {
        window
            .rows()
            .map(|(bytes, _)| LogRow::decode(bytes).unwrap())
            .collect()
    }

    #[test]
    fn rows_read_back_in_windows_of_whole_rows() {
        let temp = tempfile::tempdir().unwrap();
        let root = SpoolRoot::new(temp.path());
        let mut spool = root.create(&record(5)).unwrap();
        for n in 0..10_000 {
            spool.append(&row(n)).unwrap();
        }
        spool.flush().unwrap();
        let reader = spool.reader();
        let mut window = Window::default();
        let (mut from, mut n_read, mut n_windows) = (0u64, 0usize, 0);
        while from < spool.bytes() {
            window
                .read(&reader, from, spool.bytes(), 16 * 1024)
                .unwrap();
            let rows = decoded(&window);
            assert!(!rows.is_empty());
            for (offset, row_read) in rows.iter().enumerate() {
                assert_eq!(*row_read, row(n_read + offset));
            }
            let ends: Vec<u64> = window.rows().map(|(_, end)| end).collect();
            assert!(*ends.last().unwrap() - from <= 16 * 1024);
            assert_eq!(
                seek_row(
                    &reader,
                    n_read as u64,
                    from,
                    (n_read + 1) as u64,
                    spool.bytes()
                )
                .unwrap(),
                ends[0]
            );
            n_read += rows.len();
            from = *ends.last().unwrap();
            n_windows += 1;
        }
        assert_eq!(n_read, 10_000);
        assert!(n_windows < 30, "{n_windows} windows");
        assert_eq!(
            seek_row(&reader, 0, 0, 10_000, spool.bytes()).unwrap(),
            spool.bytes()
        );
    }

    #[test]
    fn a_row_longer_than_the_window_is_read_whole_and_a_cut_one_is_an_error() {
        let temp = tempfile::tempdir().unwrap();
        let root = SpoolRoot::new(temp.path());
        let mut spool = root.create(&record(9)).unwrap();
        let long = LogRow {
            time: None,
            content: "y".repeat(5000),
        };
        spool.append(&long).unwrap();
        spool.append(&row(1)).unwrap();
        spool.flush().unwrap();
        let mut window = Window::default();
        window.read(&spool.reader(), 0, spool.bytes(), 100).unwrap();
        assert_eq!(decoded(&window), vec![long]);
        // The log ends inside the row (as if `end` were wrong): no row, an error.
        let error = window.read(&spool.reader(), 0, 2000, 100).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn lines_are_spooled_exactly_as_prost_encodes_their_rows() {
        let temp = tempfile::tempdir().unwrap();
        let root = SpoolRoot::new(temp.path());
        let mut spool = root.create(&record(6)).unwrap();
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let long = "x".repeat(300);
        let lines = ["one", "", "é ü", long.as_str()];
        spool.append_lines(at, lines).unwrap();
        spool.append_lines(UNIX_EPOCH, ["epoch"]).unwrap();
        spool.flush().unwrap();
        let mut expected = Vec::new();
        let rows = lines
            .iter()
            .map(|line| (at, *line))
            .chain([(UNIX_EPOCH, "epoch")])
            .map(|(time, content)| LogRow {
                time: Some(time.into()),
                content: content.to_string(),
            });
        for row in rows {
            expected.extend_from_slice(&(row.encoded_len() as u32).to_le_bytes());
            expected.extend_from_slice(&row.encode_to_vec());
        }
        assert_eq!(fs::read(spool.dir().join("log")).unwrap(), expected);
        assert_eq!((spool.rows(), spool.bytes()), (5, expected.len() as u64));
    }

    #[test]
    fn recovery_cuts_a_torn_tail_and_keeps_the_record() {
        let temp = tempfile::tempdir().unwrap();
        let root = SpoolRoot::new(temp.path());
        let mut spool = root.create(&record(8)).unwrap();
        for n in 0..3 {
            spool.append(&row(n)).unwrap();
        }
        spool.flush().unwrap();
        let good_bytes = spool.bytes();
        let mut persisted = record(8);
        persisted.acked_rows = 1;
        persisted.acked_bytes = seek_row(&spool.reader(), 0, 0, 1, good_bytes).unwrap();
        spool.persist(&persisted).unwrap();
        drop(spool);
        // A crash in the middle of the next append.
        let mut log = OpenOptions::new()
            .append(true)
            .open(temp.path().join("spool/8/log"))
            .unwrap();
        log.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(log);

        let recovered = root.recover().unwrap();
        assert_eq!(recovered.len(), 1);
        let (mut spool, back) = recovered.into_iter().next().unwrap();
        assert_eq!(back, persisted);
        assert_eq!((spool.rows(), spool.bytes()), (3, good_bytes));
        spool.append(&row(3)).unwrap();
        spool.flush().unwrap();
        let mut window = Window::default();
        window
            .read(&spool.reader(), back.acked_bytes, spool.bytes(), 1 << 20)
            .unwrap();
        assert_eq!(decoded(&window), vec![row(1), row(2), row(3)]);
    }

    #[test]
    fn spool_files_are_private_and_removed_when_done() {
        let temp = tempfile::tempdir().unwrap();
        let root = SpoolRoot::new(temp.path());
        let spool = root.create(&record(1)).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(spool.dir()), 0o700);
        assert_eq!(mode(&spool.dir().join("log")), 0o600);
        assert_eq!(mode(&spool.dir().join("state.json")), 0o600);
        let dir = spool.dir().to_path_buf();
        spool.remove().unwrap();
        assert!(!dir.exists());
        assert!(root.recover().unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_state_is_skipped_not_deleted() {
        let temp = tempfile::tempdir().unwrap();
        let root = SpoolRoot::new(temp.path());
        let spool = root.create(&record(2)).unwrap();
        fs::write(spool.dir().join("state.json"), b"{not json").unwrap();
        assert!(root.recover().unwrap().is_empty());
        assert!(spool.dir().join("log").exists());
    }
}
