//! The metric definitions: every family's name, type, help, labels and buckets, registered on one
//! registry of our own (never the global default).
//!
//! Names are those of upstream PR #820 (namespace `act_runner_`); the four after the seed
//! (`docker_up`, `draining`, `config_reloads_total`, `log_spool_bytes`) follow the same discipline.
//! The namespace is set per metric rather than as a registry prefix, because a prefix would also
//! rename the process collector's families (`act_runner_process_cpu_seconds_total`), and one
//! unprefixed registry then holds both. May use: `prometheus`, `super::labels`.

use prometheus::core::Collector;
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::labels::{
    FetchOutcome, JobOutcome, LabelValue, MethodLabel, ReloadResult, ReportResult,
};

const NAMESPACE: &str = "act_runner";

/// FetchTask latency buckets, seconds.
pub const FETCH_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0];
/// UpdateLog and UpdateTask latency buckets, seconds.
pub const REPORT_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0];
/// Job duration buckets, seconds: `ExponentialBuckets(1, 2, 14)`, 1 s to 8192 s.
pub const JOB_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

/// Every metric object, registered on `registry`.
pub(super) struct Definitions {
    pub registry: Registry,
    pub info: IntGaugeVec,
    pub capacity: IntGauge,
    pub uptime_seconds: Gauge,
    pub poll_fetch_total: IntCounterVec,
    pub poll_fetch_duration_seconds: Histogram,
    pub poll_backoff_seconds: Gauge,
    pub client_errors_total: IntCounterVec,
    pub job_total: IntCounterVec,
    pub job_duration_seconds: Histogram,
    pub job_running: IntGauge,
    pub job_capacity_utilization_ratio: Gauge,
    pub report_log_total: IntCounterVec,
    pub report_state_total: IntCounterVec,
    pub report_log_duration_seconds: Histogram,
    pub report_state_duration_seconds: Histogram,
    pub report_log_buffer_rows: IntGauge,
    pub docker_up: IntGauge,
    pub draining: IntGauge,
    pub config_reloads_total: IntCounterVec,
    pub log_spool_bytes: IntGauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

fn histogram_opts(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace(NAMESPACE)
        .buckets(buckets.to_vec())
}

/// A counter family labelled by `L`, with every constant value present at zero from the start, so
/// `rate()` and `increase()` see the first increment.
fn labelled_counter<L: LabelValue>(name: &str, help: &str) -> IntCounterVec {
    let counter = IntCounterVec::new(opts(name, help), &[L::LABEL])
        .expect("static counter options are valid");
    for value in L::ALL {
        counter.with_label_values(&[value.as_label()]);
    }
    counter
}

impl Definitions {
    pub fn new() -> Self {
        // Every name, help and bucket list below is a constant; the unit test constructing
        // `Definitions` proves they are valid, so the `expect`s only guard edits to this file.
        let defs = Self {
            registry: Registry::new(),
            info: IntGaugeVec::new(
                opts("info", "Runner metadata; always 1."),
                &["version", "name"],
            )
            .expect("static gauge options are valid"),
            capacity: IntGauge::with_opts(opts(
                "capacity",
                "Configured maximum of concurrent jobs.",
            ))
            .expect("static gauge options are valid"),
            uptime_seconds: Gauge::with_opts(opts(
                "uptime_seconds",
                "Seconds since the daemon started.",
            ))
            .expect("static gauge options are valid"),
            poll_fetch_total: labelled_counter::<FetchOutcome>(
                "poll_fetch_total",
                "FetchTask RPCs by result.",
            ),
            poll_fetch_duration_seconds: Histogram::with_opts(histogram_opts(
                "poll_fetch_duration_seconds",
                "FetchTask latency in seconds, excluding long-poll deadline expiries.",
                FETCH_BUCKETS,
            ))
            .expect("static histogram options are valid"),
            poll_backoff_seconds: Gauge::with_opts(opts(
                "poll_backoff_seconds",
                "Last poll backoff interval in seconds, before jitter.",
            ))
            .expect("static gauge options are valid"),
            client_errors_total: labelled_counter::<MethodLabel>(
                "client_errors_total",
                "Runner API RPC errors by method.",
            ),
            job_total: labelled_counter::<JobOutcome>("job_total", "Jobs by final status."),
            job_duration_seconds: Histogram::with_opts(histogram_opts(
                "job_duration_seconds",
                "Job duration in seconds.",
                JOB_BUCKETS,
            ))
            .expect("static histogram options are valid"),
            job_running: IntGauge::with_opts(opts("job_running", "Jobs currently executing."))
                .expect("static gauge options are valid"),
            job_capacity_utilization_ratio: Gauge::with_opts(opts(
                "job_capacity_utilization_ratio",
                "Running jobs divided by capacity; 0 when capacity is 0.",
            ))
            .expect("static gauge options are valid"),
            report_log_total: labelled_counter::<ReportResult>(
                "report_log_total",
                "UpdateLog RPCs by result.",
            ),
            report_state_total: labelled_counter::<ReportResult>(
                "report_state_total",
                "UpdateTask RPCs by result.",
            ),
            report_log_duration_seconds: Histogram::with_opts(histogram_opts(
                "report_log_duration_seconds",
                "UpdateLog latency in seconds.",
                REPORT_BUCKETS,
            ))
            .expect("static histogram options are valid"),
            report_state_duration_seconds: Histogram::with_opts(histogram_opts(
                "report_state_duration_seconds",
                "UpdateTask latency in seconds.",
                REPORT_BUCKETS,
            ))
            .expect("static histogram options are valid"),
            report_log_buffer_rows: IntGauge::with_opts(opts(
                "report_log_buffer_rows",
                "Log rows buffered awaiting UpdateLog; with capacity > 1 the last writer wins.",
            ))
            .expect("static gauge options are valid"),
            docker_up: IntGauge::with_opts(opts(
                "docker_up",
                "1 when the Docker daemon answered its last ping, else 0.",
            ))
            .expect("static gauge options are valid"),
            draining: IntGauge::with_opts(opts(
                "draining",
                "1 while the daemon admits no new task and waits for running jobs, else 0.",
            ))
            .expect("static gauge options are valid"),
            config_reloads_total: labelled_counter::<ReloadResult>(
                "config_reloads_total",
                "Configuration reloads (SIGHUP) by result.",
            ),
            log_spool_bytes: IntGauge::with_opts(opts(
                "log_spool_bytes",
                "Bytes of log rows and final states spooled on disk awaiting delivery.",
            ))
            .expect("static gauge options are valid"),
        };
        let collectors: [Box<dyn Collector>; 20] = [
            Box::new(defs.info.clone()),
            Box::new(defs.capacity.clone()),
            Box::new(defs.uptime_seconds.clone()),
            Box::new(defs.poll_fetch_total.clone()),
            Box::new(defs.poll_fetch_duration_seconds.clone()),
            Box::new(defs.poll_backoff_seconds.clone()),
            Box::new(defs.client_errors_total.clone()),
            Box::new(defs.job_total.clone()),
            Box::new(defs.job_duration_seconds.clone()),
            Box::new(defs.job_running.clone()),
            Box::new(defs.job_capacity_utilization_ratio.clone()),
            Box::new(defs.report_log_total.clone()),
            Box::new(defs.report_state_total.clone()),
            Box::new(defs.report_log_duration_seconds.clone()),
            Box::new(defs.report_state_duration_seconds.clone()),
            Box::new(defs.report_log_buffer_rows.clone()),
            Box::new(defs.docker_up.clone()),
            Box::new(defs.draining.clone()),
            Box::new(defs.config_reloads_total.clone()),
            Box::new(defs.log_spool_bytes.clone()),
        ];
        for collector in collectors {
            defs.registry
                .register(collector)
                .expect("each family is registered once under a distinct name");
        }
        defs.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process collector's names are distinct from ours");
        defs
    }
}
