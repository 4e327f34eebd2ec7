//! The local copy of a task's log (`log.job.*`): every row the reporter spools for Gitea is also
//! written to `<log.job.dir>/<UTC YYYYMMDD-HHMMSS of the task's start>-task-<id>.log` as
//! `<UTC time with milliseconds> <content>`, so it holds exactly what Gitea receives, masked as
//! the executor masked it. A trailer line `[runner] task <id> finished: ...` ends it; a file
//! without one was cut short by the runner's death.
//!
//! Bounded: one file per task, capped at `log.job.max_size` (one truncation line, then only the
//! trailer), files older than `log.job.retention` (by the time in their name, not the mtime a
//! backup tool may touch) removed when a task starts. The directory is made 0700 and each file
//! 0600: the log is repository output. A failure here never fails a job: it is warned about once
//! and the copy stops.
//! May use: `config`. Never: `client`, `executor`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::JobLogConfig;

/// What a task's reporter needs to keep a local copy (`log.job.*`, with `dir` set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLogSettings {
    pub dir: PathBuf,
    /// Remove copies whose start is older than this; `None` keeps them all.
    pub retention: Option<Duration>,
    /// Per-file cap in bytes; `None` means no limit.
    pub max_size: Option<u64>,
}

impl JobLogSettings {
    /// The settings of `log.job`, `None` when `log.job.dir` is unset (no copy).
    pub fn from_config(job: &JobLogConfig) -> Option<JobLogSettings> {
        Some(JobLogSettings {
            dir: job.dir.clone()?,
            retention: job.retention,
            max_size: job.max_size,
        })
    }
}

/// One task's open copy.
pub struct JobLog {
    task_id: i64,
    path: PathBuf,
    file: BufWriter<File>,
    written: u64,
    max_size: Option<u64>,
    /// The cap was reached: only the trailer is still written.
    capped: bool,
    /// A write failed (warned once): nothing more is written.
    failed: bool,
}

impl JobLog {
    /// Creates the directory (0700) if needed, removes expired copies and creates this task's
    /// file (0600, truncated). `None`, after a warning, when the file cannot be made.
    pub fn open(settings: &JobLogSettings, task_id: i64, started: SystemTime) -> Option<JobLog> {
        if let Err(error) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&settings.dir)
        {
            tracing::warn!(task_id, dir = %settings.dir.display(), error = %error, "cannot create log.job.dir; no local copy of this task's log");
            return None;
        }
        if let Some(retention) = settings.retention {
            sweep(&settings.dir, retention, started);
        }
        let path = settings.dir.join(file_name(task_id, started));
        let opened = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            // A link planted in the directory must not redirect the copy elsewhere.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        match opened {
            Ok(file) => {
                tracing::info!(task_id, path = %path.display(), "writing a local copy of the task's log");
                Some(JobLog {
                    task_id,
                    path,
                    file: BufWriter::new(file),
                    written: 0,
                    max_size: settings.max_size,
                    capped: false,
                    failed: false,
                })
            }
            Err(error) => {
                tracing::warn!(task_id, path = %path.display(), error = %error, "cannot create the local copy of the task's log");
                None
            }
        }
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies one row sent to Gitea.
    pub fn row(&mut self, at: SystemTime, content: &str) {
        if self.capped || self.failed {
            return;
        }
        let line = format!("{} {content}", timestamp(at));
        let cap_reached = self
            .max_size
            .is_some_and(|max_size| self.written + line.len() as u64 + 1 > max_size);
        if cap_reached {
            self.capped = true;
            let max_size = self.max_size.unwrap_or_default();
            self.runner_line(&format!(
                "truncated: log.job.max_size of {max_size} bytes reached"
            ));
            return;
        }
        self.line(&line);
    }

    /// Hands what was written to the kernel (once per batch of events, as the spool does), so a
    /// killed runner leaves every row it had copied.
    pub fn flush(&mut self) {
        if self.failed {
            return;
        }
        if let Err(error) = self.file.flush() {
            self.give_up(&error);
        }
    }

    /// Writes the trailer (past the cap on purpose: its absence means the runner died) and closes
    /// the file.
    pub fn finish(mut self, trailer: &str) {
        self.runner_line(trailer);
        self.flush();
    }

    fn runner_line(&mut self, content: &str) {
        let line = format!("{} [runner] {content}", timestamp(SystemTime::now()));
        self.line(&line);
    }

    /// Rows reaching Gitea are single lines; the runner's own lines might not be.
    fn line(&mut self, line: &str) {
        if self.failed {
            return;
        }
        let escaped = line.replace('\n', "\\n");
        let written = self
            .file
            .write_all(escaped.as_bytes())
            .and_then(|()| self.file.write_all(b"\n"));
        match written {
            Ok(()) => self.written += escaped.len() as u64 + 1,
            Err(error) => self.give_up(&error),
        }
    }

    /// One warning, then nothing more: a failing write is a full disk, retrying floods the log.
    fn give_up(&mut self, error: &io::Error) {
        tracing::warn!(task_id = self.task_id, path = %self.path.display(), error = %error, "cannot write the local copy of the task's log; it stops here");
        self.failed = true;
    }
}

/// `2006-01-02T15:04:05.000Z`, as upstream stamps each line.
fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// `<UTC YYYYMMDD-HHMMSS>-task-<id>.log`.
fn file_name(task_id: i64, started: SystemTime) -> String {
    let digits: String = humantime::format_rfc3339_seconds(started)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    format!("{date}-{time}-task-{task_id}.log")
}

/// The start time in a copy's name, `None` for any other file.
fn started_from_name(name: &str) -> Option<SystemTime> {
    let (stamp, rest) = name.split_once("-task-")?;
    let id = rest.strip_suffix(".log")?;
    if id.is_empty() || !id.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let bytes = stamp.as_bytes();
    let well_formed = bytes.len() == 15
        && bytes[8] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(at, byte)| at == 8 || byte.is_ascii_digit());
    if !well_formed {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// Removes the copies that started more than `retention` before `now`; other files are left.
fn sweep(dir: &Path, retention: Duration, now: SystemTime) {
    let Some(cutoff) = now.checked_sub(retention) else {
        return;
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), error = %error, "cannot list log.job.dir");
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(started) = name.to_str().and_then(started_from_name) else {
            continue;
        };
        if started >= cutoff || !entry.file_type().is_ok_and(|kind| kind.is_file()) {
            continue;
        }
        let path = entry.path();
        if let Err(error) = fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %error, "cannot remove an expired task log");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn settings(dir: &Path, max_size: Option<u64>) -> JobLogSettings {
        JobLogSettings {
            dir: dir.join("logs"),
            retention: Some(Duration::from_secs(3600)),
            max_size,
        }
    }

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn rows_are_stamped_and_the_trailer_ends_the_file_with_tight_modes() {
        let scratch = tempfile::tempdir().unwrap();
        let settings = settings(scratch.path(), None);
        let started = at("2026-12-07T10:20:30Z");
        let mut log = JobLog::open(&settings, 42, started).unwrap();
        assert_eq!(log.path(), settings.dir.join("20261207-102030-task-42.log"));
        log.row(at("2026-12-07T10:20:31.250Z"), "hello");
        log.row(at("2026-12-07T10:20:32Z"), "two\nlines");
        let path = log.path().to_path_buf();
        log.finish("task 42 finished: success");
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "2026-12-07T10:20:31.250Z hello");
        assert_eq!(lines[1], "2026-12-07T10:20:32.000Z two\\nlines");
        assert!(
            lines[2].ends_with(" [runner] task 42 finished: success"),
            "{text}"
        );
        assert_eq!(lines.len(), 3);
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&settings.dir), 0o700);
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn the_cap_writes_one_truncation_line_and_still_the_trailer() {
        let scratch = tempfile::tempdir().unwrap();
        let settings = settings(scratch.path(), Some(100));
        let mut log = JobLog::open(&settings, 7, SystemTime::now()).unwrap();
        for idx in 0..50 {
            log.row(SystemTime::now(), &format!("row {idx}"));
        }
        let path = log.path().to_path_buf();
        log.finish("task 7 finished: failure");
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // 100 bytes hold three 31-byte rows (timestamp, space, `row n`, newline).
        assert!(lines.len() <= 5, "{text}");
        assert_eq!(
            text.matches("[runner] truncated: log.job.max_size of 100 bytes reached")
                .count(),
            1,
            "{text}"
        );
        assert!(
            lines
                .last()
                .unwrap()
                .ends_with("[runner] task 7 finished: failure")
        );
        assert!(!text.contains("row 49"), "{text}");
    }

    #[test]
    fn opening_removes_expired_copies_by_the_time_in_their_name_only() {
        let scratch = tempfile::tempdir().unwrap();
        let settings = settings(scratch.path(), None);
        fs::create_dir_all(&settings.dir).unwrap();
        let old = settings.dir.join("20261207-080000-task-1.log");
        let fresh = settings.dir.join("20261207-093000-task-2.log");
        let other = settings.dir.join("20200101-000000-notes.log");
        for path in [&old, &fresh, &other] {
            fs::write(path, "x").unwrap();
        }
        let log = JobLog::open(&settings, 3, at("2026-12-07T10:00:00Z")).unwrap();
        assert!(!old.exists(), "older than the retention of 1h");
        assert!(fresh.exists());
        assert!(other.exists(), "not a task log");
        assert!(log.path().exists());
    }

    #[test]
    fn names_parse_back_to_their_start() {
        let started = at("2026-01-02T03:04:05Z");
        assert_eq!(started_from_name(&file_name(9, started)), Some(started));
        for other in [
            "20260102-030405-task-.log",
            "20260102-030405-task-9.txt",
            "2026010-0304055-task-9.log",
            "x0260102-030405-task-9.log",
        ] {
            assert_eq!(started_from_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_directory_that_cannot_be_made_gives_no_copy() {
        let scratch = tempfile::tempdir().unwrap();
        let blocker = scratch.path().join("file");
        fs::write(&blocker, "x").unwrap();
        let settings = JobLogSettings {
            dir: blocker.join("logs"),
            retention: None,
            max_size: None,
        };
        assert!(JobLog::open(&settings, 1, SystemTime::now()).is_none());
    }
}
