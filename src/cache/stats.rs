//! Counters and gauges of the cache, read by the metrics room at scrape time through
//! [`super::CacheServer::stats`]. Every label is an enum, so label sets stay bounded.
//!
//! May use: std.

use std::sync::atomic::{AtomicU64, Ordering};

/// A cache operation, as the `op` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lookup,
    Reserve,
    Upload,
    Commit,
    Download,
    Grant,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Lookup,
        Op::Reserve,
        Op::Upload,
        Op::Commit,
        Op::Download,
        Op::Grant,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lookup => "lookup",
            Op::Reserve => "reserve",
            Op::Upload => "upload",
            Op::Commit => "commit",
            Op::Download => "download",
            Op::Grant => "grant",
        }
    }
}

/// How a request ended, as the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A lookup found an entry.
    Hit,
    /// A lookup found none.
    Miss,
    /// Any other success.
    Ok,
    /// No live credential or a bad signature.
    Denied,
    /// Bad input, a conflict, a limit or an unknown id (a 4xx).
    Rejected,
    /// The server failed (a 5xx).
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Hit,
        Outcome::Miss,
        Outcome::Ok,
        Outcome::Denied,
        Outcome::Rejected,
        Outcome::Error,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }
}

/// Why an entry was removed, as the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictReason {
    /// Not accessed within `cache.retention`.
    Retention,
    /// Its repository passed `cache.repo_size_limit`.
    RepoSizeLimit,
    /// The cache passed `cache.size_limit`.
    SizeLimit,
    /// Free disk space fell below the floor.
    DiskFloor,
    /// An admin deleted it (`act_runner cache delete`).
    Deleted,
}

impl EvictReason {
    pub const ALL: [EvictReason; 5] = [
        EvictReason::Retention,
        EvictReason::RepoSizeLimit,
        EvictReason::SizeLimit,
        EvictReason::DiskFloor,
        EvictReason::Deleted,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::Retention => "retention",
            EvictReason::RepoSizeLimit => "repo_size_limit",
            EvictReason::SizeLimit => "size_limit",
            EvictReason::DiskFloor => "disk_floor",
            EvictReason::Deleted => "deleted",
        }
    }
}

/// A snapshot of the cache's counters and gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStats {
    /// Committed entries.
    pub entries: u64,
    /// Bytes of committed entries.
    pub bytes: u64,
    /// Requests so far by operation and outcome (every pair, zeros included).
    pub requests: Vec<(Op, Outcome, u64)>,
    /// Entries removed so far by reason (every reason, zeros included).
    pub evictions: Vec<(EvictReason, u64)>,
}

/// The live counters behind [`CacheStats`].
#[derive(Default)]
pub(crate) struct Counters {
    requests: [[AtomicU64; Outcome::ALL.len()]; Op::ALL.len()],
    evictions: [AtomicU64; EvictReason::ALL.len()],
}

impl Counters {
    pub(crate) fn request(&self, op: Op, outcome: Outcome) {
        self.requests[op as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn evicted(&self, reason: EvictReason, n: u64) {
        self.evictions[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, entries: u64, bytes: u64) -> CacheStats {
        let mut requests = Vec::with_capacity(Op::ALL.len() * Outcome::ALL.len());
        for op in Op::ALL {
            for outcome in Outcome::ALL {
                let count = self.requests[op as usize][outcome as usize].load(Ordering::Relaxed);
                requests.push((op, outcome, count));
            }
        }
        let evictions = EvictReason::ALL
            .iter()
            .map(|reason| {
                (
                    *reason,
                    self.evictions[*reason as usize].load(Ordering::Relaxed),
                )
            })
            .collect();
        CacheStats {
            entries,
            bytes,
            requests,
            evictions,
        }
    }
}
