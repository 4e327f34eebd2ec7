//! The actions cache's families, read from the cache server at each scrape:
//! `act_runner_cache_requests_total{op,result}`, `act_runner_cache_evictions_total{reason}`,
//! `act_runner_cache_bytes` and `act_runner_cache_entries`.
//!
//! The server keeps its own counters (it is the one that knows an answer's outcome); this
//! collector only copies them, so the metrics observe the cache and never steer it. Every label
//! value comes from [`super::labels`], and every combination is present from the first scrape.
//! May use: `prometheus`, `super::labels`.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGauge, Opts};

use super::labels::{CacheOp, CacheResult, EvictionReason, LabelValue};

/// The cache server's counters at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheSnapshot {
    /// Bytes of committed entries.
    pub bytes: u64,
    /// Committed entries.
    pub entries: u64,
    /// Requests so far, by what they asked and how they ended.
    pub requests: Vec<(CacheOp, CacheResult, u64)>,
    /// Entries dropped so far, by why.
    pub evictions: Vec<(EvictionReason, u64)>,
}

/// Where the collector reads the counters (the CLI adapts the cache server to it).
pub trait CacheSource: Send + Sync {
    fn snapshot(&self) -> CacheSnapshot;
}

/// The four families as one collector on the runner's registry.
pub(super) struct CacheCollector {
    source: Arc<dyn CacheSource>,
    descs: Vec<Desc>,
}

impl CacheCollector {
    pub fn new(source: Arc<dyn CacheSource>) -> Self {
        let empty = Families::new();
        let descs = empty.descs().into_iter().cloned().collect();
        Self { source, descs }
    }
}

impl Collector for CacheCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let families = Families::new();
        let snapshot = self.source.snapshot();
        families.bytes.set(clamp(snapshot.bytes));
        families.entries.set(clamp(snapshot.entries));
        for (op, result, count) in snapshot.requests {
            families
                .requests
                .with_label_values(&[op.as_label(), result.as_label()])
                .inc_by(count);
        }
        for (reason, count) in snapshot.evictions {
            families
                .evictions
                .with_label_values(&[reason.as_label()])
                .inc_by(count);
        }
        let mut out = families.requests.collect();
        out.extend(families.evictions.collect());
        out.extend(families.bytes.collect());
        out.extend(families.entries.collect());
        out
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Fresh metric objects for one scrape (counters cannot be set, only built up from zero).
struct Families {
    requests: IntCounterVec,
    evictions: IntCounterVec,
    bytes: IntGauge,
    entries: IntGauge,
}

impl Families {
    fn new() -> Self {
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace("act_runner");
        // Constant names and labels; the unit test below builds them, so these cannot fail.
        let requests = IntCounterVec::new(
            opts(
                "cache_requests_total",
                "Cache server requests by operation and result.",
            ),
            &[CacheOp::LABEL, CacheResult::LABEL],
        )
        .expect("static counter options are valid");
        for op in CacheOp::ALL {
            for result in CacheResult::ALL {
                requests.with_label_values(&[op.as_label(), result.as_label()]);
            }
        }
        let evictions = IntCounterVec::new(
            opts("cache_evictions_total", "Cache entries removed, by reason."),
            &[EvictionReason::LABEL],
        )
        .expect("static counter options are valid");
        for reason in EvictionReason::ALL {
            evictions.with_label_values(&[reason.as_label()]);
        }
        let bytes = IntGauge::with_opts(opts("cache_bytes", "Bytes of committed cache entries."))
            .expect("static gauge options are valid");
        let entries = IntGauge::with_opts(opts("cache_entries", "Committed cache entries."))
            .expect("static gauge options are valid");
        Self {
            requests,
            evictions,
            bytes,
            entries,
        }
    }

    fn descs(&self) -> Vec<&Desc> {
        let mut descs = self.requests.desc();
        descs.extend(self.evictions.desc());
        descs.extend(self.bytes.desc());
        descs.extend(self.entries.desc());
        descs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(CacheSnapshot);

    impl CacheSource for Fixed {
        fn snapshot(&self) -> CacheSnapshot {
            self.0.clone()
        }
    }

    #[test]
    fn a_scrape_copies_the_server_counters_with_every_label_present() {
        let source = Fixed(CacheSnapshot {
            bytes: 4096,
            entries: 3,
            requests: vec![(CacheOp::Lookup, CacheResult::Miss, 2)],
            evictions: vec![(EvictionReason::Retention, 1)],
        });
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(CacheCollector::new(Arc::new(source))))
            .unwrap();
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut text,
        )
        .unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("act_runner_cache_bytes 4096"), "{text}");
        assert!(text.contains("act_runner_cache_entries 3"), "{text}");
        assert!(
            text.contains(r#"act_runner_cache_requests_total{op="lookup",result="miss"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"act_runner_cache_requests_total{op="commit",result="rejected"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"act_runner_cache_evictions_total{reason="retention"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"act_runner_cache_evictions_total{reason="disk_floor"} 0"#),
            "{text}"
        );
    }
}
