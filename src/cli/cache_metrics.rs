//! The cache server's counters as the metrics room reads them: a 1:1 mapping of the engine's
//! operation, outcome and eviction enums onto the metrics' label enums (the CLI adapts, so
//! neither room imports the other).

use std::sync::Arc;

use crate::cache::{CacheServer, EvictReason, Op, Outcome};
use crate::metrics::{CacheOp, CacheResult, CacheSnapshot, CacheSource, EvictionReason};

/// A running cache server, read at each scrape.
pub struct ServerStats(pub Arc<CacheServer>);

impl CacheSource for ServerStats {
    fn snapshot(&self) -> CacheSnapshot {
        let stats = self.0.stats();
        CacheSnapshot {
            bytes: stats.bytes,
            entries: stats.entries,
            requests: stats
                .requests
                .into_iter()
                .map(|(op, outcome, count)| (op_label(op), result_label(outcome), count))
                .collect(),
            evictions: stats
                .evictions
                .into_iter()
                .map(|(reason, count)| (reason_label(reason), count))
                .collect(),
        }
    }
}

fn op_label(op: Op) -> CacheOp {
    match op {
        Op::Lookup => CacheOp::Lookup,
        Op::Reserve => CacheOp::Reserve,
        Op::Upload => CacheOp::Upload,
        Op::Commit => CacheOp::Commit,
        Op::Download => CacheOp::Download,
        Op::Grant => CacheOp::Grant,
    }
}

fn result_label(outcome: Outcome) -> CacheResult {
    match outcome {
        Outcome::Hit => CacheResult::Hit,
        Outcome::Miss => CacheResult::Miss,
        Outcome::Ok => CacheResult::Ok,
        Outcome::Denied => CacheResult::Denied,
        Outcome::Rejected => CacheResult::Rejected,
        Outcome::Error => CacheResult::Error,
    }
}

fn reason_label(reason: EvictReason) -> EvictionReason {
    match reason {
        EvictReason::Retention => EvictionReason::Retention,
        EvictReason::RepoSizeLimit => EvictionReason::RepoSizeLimit,
        EvictReason::SizeLimit => EvictionReason::SizeLimit,
        EvictReason::DiskFloor => EvictionReason::DiskFloor,
        EvictReason::Deleted => EvictionReason::Deleted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::LabelValue;

    #[test]
    fn every_engine_label_keeps_its_name() {
        for op in Op::ALL {
            assert_eq!(op_label(op).as_label(), op.as_str());
        }
        for outcome in Outcome::ALL {
            assert_eq!(result_label(outcome).as_label(), outcome.as_str());
        }
        for reason in EvictReason::ALL {
            assert_eq!(reason_label(reason).as_label(), reason.as_str());
        }
    }
}
