//! The label values the metrics may carry: one enum per label, each with its full constant set.
//!
//! Callers hand these enums to [`super::Metrics`]; no method takes a `&str` label value, so no task
//! id, repository, URL, token or secret can become a label. May use: `client::Method`,
//! `executor::event::Conclusion` (both only to map them to a constant).

use crate::client::Method;
use crate::executor::event::Conclusion;

/// A label value drawn from a fixed set of constants.
pub trait LabelValue: Copy + 'static {
    /// The label's name in the exposition (`result`, `status`, `method`).
    const LABEL: &'static str;
    /// Every value the label can take, in a stable order.
    const ALL: &'static [Self];
    /// The exact string exposed.
    fn as_label(self) -> &'static str;
}

/// The outcome of one FetchTask call (`act_runner_poll_fetch_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchOutcome {
    /// The server handed over a task.
    Task,
    /// No task: an empty answer, or the long-poll deadline expired.
    Empty,
    /// Any error except Unauthenticated (which stops the poller and is not counted).
    Error,
}

impl LabelValue for FetchOutcome {
    const LABEL: &'static str = "result";
    const ALL: &'static [Self] = &[Self::Task, Self::Empty, Self::Error];
    fn as_label(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Empty => "empty",
            Self::Error => "error",
        }
    }
}

/// The outcome of one UpdateLog or UpdateTask call (`act_runner_report_*_total{result}`), and of a
/// config reload (`act_runner_config_reloads_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportResult {
    Success,
    Error,
}

impl ReportResult {
    /// `Success` for `Ok`, `Error` for `Err`: the usual way to observe an RPC's answer.
    pub fn of<T, E>(result: &Result<T, E>) -> Self {
        match result {
            Ok(_) => Self::Success,
            Err(_) => Self::Error,
        }
    }
}

impl LabelValue for ReportResult {
    const LABEL: &'static str = "result";
    const ALL: &'static [Self] = &[Self::Success, Self::Error];
    fn as_label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
        }
    }
}

/// The outcome of a SIGHUP reload (`act_runner_config_reloads_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReloadResult {
    /// The new config was valid and applied.
    Success,
    /// The new config was refused; the running one stays.
    Failure,
}

impl LabelValue for ReloadResult {
    const LABEL: &'static str = "result";
    const ALL: &'static [Self] = &[Self::Success, Self::Failure];
    fn as_label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// A job's final status (`act_runner_job_total{status}`).
///
/// The same strings serve as `GITEA_JOB_RESULT` and the job log trailer, so the daemon should take
/// them from [`JobOutcome::as_label`] rather than spell them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobOutcome {
    Success,
    Failure,
    Cancelled,
    Skipped,
    /// `RESULT_UNSPECIFIED`, or a value out of range.
    Unknown,
}

impl JobOutcome {
    /// The one result-to-label mapping, from the numeric value of `runner.v1.Result`
    /// (0 unspecified, 1 success, 2 failure, 3 cancelled, 4 skipped). Anything else is `Unknown`.
    /// Takes the number rather than the generated enum because proto types stop at `daemon`.
    pub fn from_result_code(code: i32) -> Self {
        match code {
            1 => Self::Success,
            2 => Self::Failure,
            3 => Self::Cancelled,
            4 => Self::Skipped,
            _ => Self::Unknown,
        }
    }
}

impl From<Conclusion> for JobOutcome {
    fn from(conclusion: Conclusion) -> Self {
        match conclusion {
            Conclusion::Success => Self::Success,
            Conclusion::Failure => Self::Failure,
            Conclusion::Cancelled => Self::Cancelled,
            Conclusion::Skipped => Self::Skipped,
        }
    }
}

impl LabelValue for JobOutcome {
    const LABEL: &'static str = "status";
    const ALL: &'static [Self] = &[
        Self::Success,
        Self::Failure,
        Self::Cancelled,
        Self::Skipped,
        Self::Unknown,
    ];
    fn as_label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
            Self::Unknown => "unknown",
        }
    }
}

/// The RPC an error came from (`act_runner_client_errors_total{method}`): upstream's three
/// (`FetchTask`, `UpdateLog`, `UpdateTask`) plus the three calls made at start-up and reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodLabel(pub Method);

impl LabelValue for MethodLabel {
    const LABEL: &'static str = "method";
    const ALL: &'static [Self] = &[
        Self(Method::FetchTask),
        Self(Method::UpdateLog),
        Self(Method::UpdateTask),
        Self(Method::Declare),
        Self(Method::Ping),
        Self(Method::Register),
    ];
    fn as_label(self) -> &'static str {
        match self.0 {
            Method::FetchTask => "FetchTask",
            Method::UpdateLog => "UpdateLog",
            Method::UpdateTask => "UpdateTask",
            Method::Declare => "Declare",
            Method::Ping => "Ping",
            Method::Register => "Register",
        }
    }
}

/// What a request to the cache server asked (`act_runner_cache_requests_total{op}`): the v1 and
/// v2 protocols map to the same five steps, the shared server's grant endpoint to a sixth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheOp {
    /// Find an entry by key and prefixes (v1 `GET cache`, v2 `GetCacheEntryDownloadURL`).
    Lookup,
    /// Reserve a key for an upload (v1 `POST caches`, v2 `CreateCacheEntry`).
    Reserve,
    /// Write bytes of a reserved entry (v1 `PATCH caches/:id`, v2 blob `PUT`).
    Upload,
    /// Commit an upload (v1 `POST caches/:id`, v2 `FinalizeCacheEntryUpload`).
    Commit,
    /// Read an entry's bytes (the signed archive URL).
    Download,
    /// Grant or revoke a task's credential (a shared server's grant endpoint).
    Grant,
}

impl LabelValue for CacheOp {
    const LABEL: &'static str = "op";
    const ALL: &'static [Self] = &[
        Self::Lookup,
        Self::Reserve,
        Self::Upload,
        Self::Commit,
        Self::Download,
        Self::Grant,
    ];
    fn as_label(self) -> &'static str {
        match self {
            Self::Lookup => "lookup",
            Self::Reserve => "reserve",
            Self::Upload => "upload",
            Self::Commit => "commit",
            Self::Download => "download",
            Self::Grant => "grant",
        }
    }
}

/// How the cache server answered (`act_runner_cache_requests_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheResult {
    /// A lookup that found an entry.
    Hit,
    /// A lookup that found nothing.
    Miss,
    /// Any other request done.
    Ok,
    /// No live credential, a forged or expired signature, a wrong shared secret.
    Denied,
    /// Any other refusal (bad range, size or key; a conflict; over a limit).
    Rejected,
    /// The server failed (disk, index).
    Error,
}

impl LabelValue for CacheResult {
    const LABEL: &'static str = "result";
    const ALL: &'static [Self] = &[
        Self::Hit,
        Self::Miss,
        Self::Ok,
        Self::Denied,
        Self::Rejected,
        Self::Error,
    ];
    fn as_label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Rejected => "rejected",
            Self::Error => "error",
        }
    }
}

/// Why the cache dropped an entry (`act_runner_cache_evictions_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvictionReason {
    /// Not used within `cache.retention`.
    Retention,
    /// Its repository went over `cache.repo_size_limit`.
    RepoSizeLimit,
    /// The cache went over `cache.size_limit`.
    SizeLimit,
    /// The disk went below the free-space floor.
    DiskFloor,
    /// `act_runner cache delete`.
    Deleted,
}

impl LabelValue for EvictionReason {
    const LABEL: &'static str = "reason";
    const ALL: &'static [Self] = &[
        Self::Retention,
        Self::RepoSizeLimit,
        Self::SizeLimit,
        Self::DiskFloor,
        Self::Deleted,
    ];
    fn as_label(self) -> &'static str {
        match self {
            Self::Retention => "retention",
            Self::RepoSizeLimit => "repo_size_limit",
            Self::SizeLimit => "size_limit",
            Self::DiskFloor => "disk_floor",
            Self::Deleted => "deleted",
        }
    }
}

/// Every allowed value of `label` on the family `name`, or `None` when the family has no label of
/// that name (tests use this to check a whole scrape).
pub fn allowed_values(family: &str, label: &str) -> Option<Vec<&'static str>> {
    fn all<L: LabelValue>() -> Vec<&'static str> {
        L::ALL.iter().map(|value| value.as_label()).collect()
    }
    match (family, label) {
        ("act_runner_poll_fetch_total", FetchOutcome::LABEL) => Some(all::<FetchOutcome>()),
        ("act_runner_report_log_total" | "act_runner_report_state_total", ReportResult::LABEL) => {
            Some(all::<ReportResult>())
        }
        ("act_runner_config_reloads_total", ReloadResult::LABEL) => Some(all::<ReloadResult>()),
        ("act_runner_job_total", JobOutcome::LABEL) => Some(all::<JobOutcome>()),
        ("act_runner_client_errors_total", MethodLabel::LABEL) => Some(all::<MethodLabel>()),
        ("act_runner_cache_requests_total", CacheOp::LABEL) => Some(all::<CacheOp>()),
        ("act_runner_cache_requests_total", CacheResult::LABEL) => Some(all::<CacheResult>()),
        ("act_runner_cache_evictions_total", EvictionReason::LABEL) => {
            Some(all::<EvictionReason>())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::proto::runner::Result as ProtoResult;

    #[test]
    fn job_status_mapping_follows_the_proto_numbers_and_unknown_catches_the_rest() {
        let cases = [
            (ProtoResult::Unspecified as i32, JobOutcome::Unknown),
            (ProtoResult::Success as i32, JobOutcome::Success),
            (ProtoResult::Failure as i32, JobOutcome::Failure),
            (ProtoResult::Cancelled as i32, JobOutcome::Cancelled),
            (ProtoResult::Skipped as i32, JobOutcome::Skipped),
            (99, JobOutcome::Unknown),
            (-1, JobOutcome::Unknown),
        ];
        for (code, expected) in cases {
            assert_eq!(JobOutcome::from_result_code(code), expected, "code {code}");
        }
    }

    #[test]
    fn label_strings_are_the_upstream_ones() {
        let statuses: Vec<_> = JobOutcome::ALL.iter().map(|s| s.as_label()).collect();
        assert_eq!(
            statuses,
            ["success", "failure", "cancelled", "skipped", "unknown"]
        );
        let fetches: Vec<_> = FetchOutcome::ALL.iter().map(|s| s.as_label()).collect();
        assert_eq!(fetches, ["task", "empty", "error"]);
        let methods: Vec<_> = MethodLabel::ALL.iter().map(|s| s.as_label()).collect();
        assert_eq!(&methods[..3], ["FetchTask", "UpdateLog", "UpdateTask"]);
    }
}
