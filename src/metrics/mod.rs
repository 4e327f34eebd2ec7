//! Prometheus metrics (one registry) and the hardened `/metrics`, `/healthz`, `/readyz` server.
//!
//! Observes the lifecycle, never drives it: nothing here decides whether a job runs. The daemon
//! holds one [`Metrics`] (cheap to clone) and reports what happened through typed methods; every
//! label value comes from an enum in [`labels`], so no task id, repository, URL or secret can become
//! a label. The metrics are kept up to date even when `metrics.enabled` is false; they are then
//! simply not served. May use: `client::Method`, `executor::event::Conclusion` (label mapping only),
//! `daemon::observe` (the event vocabulary, in `observer`), `prometheus`, `axum`/`hyper`/`tower`
//! (server). Never: the rest of `daemon`, `systemd`, `config`.
//!
//! # Where the daemon calls what
//!
//! The daemon itself announces `daemon::observe::DaemonEvent`s; [`Metrics`] implements its
//! `Observer` trait (in `observer`), so `cli::daemon` hands it `Arc::new(metrics.clone())` and each
//! event lands on the method below. Code outside the daemon calls the methods directly.
//!
//! | When | Call | Families moved |
//! |---|---|---|
//! | start, after Declare | [`Metrics::new`], then [`ReadinessProbe::set_started`] via [`Metrics::readiness`] | `info`, `capacity` |
//! | each FetchTask answer | [`Metrics::fetch_observed`] | `poll_fetch_total`, `poll_fetch_duration_seconds`, `/readyz` |
//! | FetchTask said Unauthenticated | [`Metrics::unregistered`] (and no `fetch_observed`) | `/readyz` |
//! | backoff computed | [`Metrics::backoff_changed`] with the pre-jitter interval | `poll_backoff_seconds` |
//! | task accepted / job done (after the reporter closed) | [`Metrics::job_started`] / [`Metrics::job_finished`] | `job_running`, `job_total`, `job_duration_seconds` |
//! | each UpdateLog / UpdateTask that reached the RPC | [`Metrics::report_log`] / [`Metrics::report_state`] | `report_*_total`, `report_*_duration_seconds` |
//! | after a successful UpdateLog | [`Metrics::log_buffer_rows`] | `report_log_buffer_rows` |
//! | any RPC error (FetchTask except Unauthenticated and deadline; UpdateLog; UpdateTask; Declare; ...) | [`Metrics::client_error`] | `client_errors_total` |
//! | Docker ping, drain, SIGHUP, spool size | [`Metrics::docker_up`], [`Metrics::set_draining`], [`Metrics::config_reload`], [`Metrics::log_spool_bytes`] | the four extra gauges and counter |
//! | the cache server started (daemon or `cache-server`) | [`Metrics::watch_cache`]; each scrape then reads its counters | `cache_requests_total`, `cache_evictions_total`, `cache_bytes`, `cache_entries` |
//! | reload changed capacity | [`Metrics::set_capacity`] | `capacity`, `job_capacity_utilization_ratio` |
//!
//! ```
//! use std::time::Duration;
//! use act_runner::metrics::{FetchOutcome, JobOutcome, Metrics, RunnerInfo};
//!
//! let metrics = Metrics::new(RunnerInfo {
//!     name: "runner-1".into(),
//!     capacity: 2,
//!     readiness_grace: Duration::from_secs(30),
//! });
//! metrics.fetch_observed(FetchOutcome::Task, Some(Duration::from_millis(40)));
//! metrics.job_started();
//! metrics.job_finished(JobOutcome::from_result_code(1), Duration::from_secs(12));
//! assert!(metrics.render().unwrap().contains(r#"act_runner_job_total{status="success"} 1"#));
//! ```

pub mod cache;
mod coalesce;
mod idle;
pub mod labels;
mod observer;
pub mod readiness;
mod registry;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, TextEncoder};
use tokio::time::Instant;

use crate::client::Method;
pub use cache::{CacheSnapshot, CacheSource};
pub use labels::{
    CacheOp, CacheResult, EvictionReason, FetchOutcome, JobOutcome, LabelValue, MethodLabel,
    ReloadResult, ReportResult,
};
pub use readiness::{ReadinessProbe, ReadinessVerdict};
pub use registry::{FETCH_BUCKETS, JOB_BUCKETS, REPORT_BUCKETS};
pub use server::{MetricsServer, ServerLimits, bind, choose_listener};

/// The `Content-Type` of `/metrics`: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the metrics room can fail at.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// `metrics.addr` could not be bound (in use, no permission, not a local address).
    #[error("cannot bind the metrics listener on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The listener handed over (socket activation) could not be used.
    #[error("cannot serve metrics on the given listener")]
    Listener {
        #[source]
        source: std::io::Error,
    },
    /// Encoding the exposition failed.
    #[error("cannot encode the metrics")]
    Encode(#[source] prometheus::Error),
}

/// What the metrics need to know at start-up.
#[derive(Debug, Clone)]
pub struct RunnerInfo {
    /// The declared runner name (`act_runner_info{name}`).
    pub name: String,
    /// `runner.capacity`.
    pub capacity: usize,
    /// `metrics.readiness_grace`: how long poll failures leave `/readyz` at 200.
    pub readiness_grace: Duration,
}

/// The runner's metrics: one registry and the typed methods that update it. Clones share state.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    defs: registry::Definitions,
    started_at: Instant,
    readiness: ReadinessProbe,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Builds the registry, sets `info` and `capacity`, and starts the uptime clock.
    pub fn new(info: RunnerInfo) -> Self {
        let defs = registry::Definitions::new();
        defs.info
            .with_label_values(&[crate::VERSION, info.name.as_str()])
            .set(1);
        let metrics = Self {
            inner: Arc::new(Inner {
                defs,
                started_at: Instant::now(),
                readiness: ReadinessProbe::new(info.readiness_grace),
            }),
        };
        metrics.set_capacity(info.capacity);
        metrics
    }

    /// Exposes the cache server's families (`act_runner_cache_*`), read from `source` at each
    /// scrape. Called once, by whoever started the server (the daemon or `cache-server`).
    pub fn watch_cache(&self, source: Arc<dyn CacheSource>) {
        let collector = cache::CacheCollector::new(source);
        if let Err(error) = self.inner.defs.registry.register(Box::new(collector)) {
            tracing::warn!(error = %error, "the cache metrics are already registered");
        }
    }

    /// The `/readyz` state. The daemon calls [`ReadinessProbe::set_started`] once it polls, and
    /// [`ReadinessProbe::set_unavailable`] for local availability checks; polling, draining and
    /// unregistration reach it through [`Metrics::fetch_observed`], [`Metrics::set_draining`] and
    /// [`Metrics::unregistered`].
    pub fn readiness(&self) -> &ReadinessProbe {
        &self.inner.readiness
    }

    /// One FetchTask call ended. `latency` is `None` when the long-poll deadline expired: that call
    /// counts as `empty`, stays out of the latency histogram and leaves readiness alone. An `Error`
    /// is also reported with [`Metrics::client_error`]`(Method::FetchTask)`. An Unauthenticated
    /// answer is not a fetch outcome: call [`Metrics::unregistered`] instead.
    pub fn fetch_observed(&self, outcome: FetchOutcome, latency: Option<Duration>) {
        let defs = &self.inner.defs;
        defs.poll_fetch_total
            .with_label_values(&[outcome.as_label()])
            .inc();
        let Some(latency) = latency else { return };
        defs.poll_fetch_duration_seconds
            .observe(latency.as_secs_f64());
        match outcome {
            FetchOutcome::Task | FetchOutcome::Empty => self.inner.readiness.poll_succeeded(),
            FetchOutcome::Error => self.inner.readiness.poll_failed(),
        }
    }

    /// Gitea rejected the runner as unregistered: `/readyz` answers 503 from now on.
    pub fn unregistered(&self) {
        self.inner.readiness.set_unregistered();
    }

    /// The poll backoff interval before jitter; the gauge is written only when the value changes.
    pub fn backoff_changed(&self, interval: Duration) {
        let gauge = &self.inner.defs.poll_backoff_seconds;
        let seconds = interval.as_secs_f64();
        if gauge.get() != seconds {
            gauge.set(seconds);
        }
    }

    /// An RPC failed: every FetchTask error except Unauthenticated and a long-poll deadline, every
    /// UpdateLog and UpdateTask error, and Declare, Ping or Register errors. The outcome methods
    /// ([`Metrics::fetch_observed`], [`Metrics::report_log`], ...) do not count this themselves.
    pub fn client_error(&self, method: Method) {
        self.inner
            .defs
            .client_errors_total
            .with_label_values(&[MethodLabel(method).as_label()])
            .inc();
    }

    /// A job began executing (`job_running` goes up).
    pub fn job_started(&self) {
        self.inner.defs.job_running.inc();
    }

    /// A job ended and its reporter closed: counts it by status, observes its duration (from the
    /// start of the run to after the close) and lowers `job_running`.
    pub fn job_finished(&self, status: JobOutcome, duration: Duration) {
        let defs = &self.inner.defs;
        defs.job_total.with_label_values(&[status.as_label()]).inc();
        defs.job_duration_seconds.observe(duration.as_secs_f64());
        defs.job_running.dec();
    }

    /// One UpdateLog call that reached the RPC, with its latency.
    pub fn report_log(&self, result: ReportResult, latency: Duration) {
        let defs = &self.inner.defs;
        defs.report_log_total
            .with_label_values(&[result.as_label()])
            .inc();
        defs.report_log_duration_seconds
            .observe(latency.as_secs_f64());
    }

    /// One UpdateTask call that reached the RPC, with its latency.
    pub fn report_state(&self, result: ReportResult, latency: Duration) {
        let defs = &self.inner.defs;
        defs.report_state_total
            .with_label_values(&[result.as_label()])
            .inc();
        defs.report_state_duration_seconds
            .observe(latency.as_secs_f64());
    }

    /// Log rows buffered awaiting UpdateLog; written only when the value changes.
    pub fn log_buffer_rows(&self, n_rows: usize) {
        let gauge = &self.inner.defs.report_log_buffer_rows;
        let n_rows = saturating_i64(n_rows as u64);
        if gauge.get() != n_rows {
            gauge.set(n_rows);
        }
    }

    /// `runner.capacity`, at start and after a reload.
    pub fn set_capacity(&self, capacity: usize) {
        self.inner
            .defs
            .capacity
            .set(saturating_i64(capacity as u64));
    }

    /// Whether the Docker daemon answered its last ping.
    pub fn docker_up(&self, up: bool) {
        self.inner.defs.docker_up.set(i64::from(up));
    }

    /// The drain began (or, after an aborted stop, ended). Also turns `/readyz` to 503.
    pub fn set_draining(&self, draining: bool) {
        self.inner.defs.draining.set(i64::from(draining));
        self.inner.readiness.set_draining(draining);
    }

    /// A SIGHUP reload finished.
    pub fn config_reload(&self, result: ReloadResult) {
        self.inner
            .defs
            .config_reloads_total
            .with_label_values(&[result.as_label()])
            .inc();
    }

    /// Bytes spooled on disk awaiting delivery.
    pub fn log_spool_bytes(&self, n_bytes: u64) {
        self.inner.defs.log_spool_bytes.set(saturating_i64(n_bytes));
    }

    /// The exposition in the text format 0.0.4, with the scrape-time values (uptime, utilisation)
    /// brought up to date first.
    pub fn render(&self) -> Result<String, MetricsError> {
        let defs = &self.inner.defs;
        defs.uptime_seconds
            .set(self.inner.started_at.elapsed().as_secs_f64());
        let capacity = defs.capacity.get();
        let utilisation = if capacity <= 0 {
            0.0
        } else {
            defs.job_running.get() as f64 / capacity as f64
        };
        defs.job_capacity_utilization_ratio.set(utilisation);
        let families = defs.registry.gather();
        let mut buffer = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&families, &mut buffer)
            .map_err(MetricsError::Encode)?;
        // The text encoder writes only UTF-8 (names and label values are Rust strings).
        String::from_utf8(buffer)
            .map_err(|err| MetricsError::Encode(prometheus::Error::Msg(err.to_string())))
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(RunnerInfo {
            name: "runner-1".into(),
            capacity: 4,
            readiness_grace: Duration::from_secs(30),
        })
    }

    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn deadline_fetch_is_empty_and_kept_out_of_the_histogram() {
        let metrics = metrics();
        metrics.fetch_observed(FetchOutcome::Empty, None);
        metrics.fetch_observed(FetchOutcome::Empty, Some(Duration::from_millis(30)));
        let text = metrics.render().unwrap();
        assert_eq!(
            sample(&text, r#"act_runner_poll_fetch_total{result="empty"}"#),
            2.0
        );
        assert_eq!(
            sample(&text, "act_runner_poll_fetch_duration_seconds_count"),
            1.0
        );
    }

    #[test]
    fn fetch_error_and_its_client_error_are_counted_once_each() {
        let metrics = metrics();
        metrics.fetch_observed(FetchOutcome::Error, Some(Duration::from_millis(5)));
        metrics.client_error(Method::FetchTask);
        let text = metrics.render().unwrap();
        assert_eq!(
            sample(
                &text,
                r#"act_runner_client_errors_total{method="FetchTask"}"#
            ),
            1.0
        );
        assert_eq!(
            sample(&text, r#"act_runner_poll_fetch_total{result="error"}"#),
            1.0
        );
    }

    #[test]
    fn utilisation_is_running_over_capacity_and_zero_without_capacity() {
        let metrics = metrics();
        metrics.job_started();
        let text = metrics.render().unwrap();
        assert_eq!(
            sample(&text, "act_runner_job_capacity_utilization_ratio"),
            0.25
        );
        metrics.set_capacity(0);
        let text = metrics.render().unwrap();
        assert_eq!(
            sample(&text, "act_runner_job_capacity_utilization_ratio"),
            0.0
        );
        metrics.job_finished(JobOutcome::Unknown, Duration::from_secs(3));
        let text = metrics.render().unwrap();
        assert_eq!(sample(&text, "act_runner_job_running"), 0.0);
        assert_eq!(
            sample(&text, r#"act_runner_job_total{status="unknown"}"#),
            1.0
        );
    }

    #[test]
    fn every_family_of_the_table_is_exposed_with_its_type() {
        let text = metrics().render().unwrap();
        let expected = [
            ("act_runner_info", "gauge"),
            ("act_runner_capacity", "gauge"),
            ("act_runner_uptime_seconds", "gauge"),
            ("act_runner_poll_fetch_total", "counter"),
            ("act_runner_poll_fetch_duration_seconds", "histogram"),
            ("act_runner_poll_backoff_seconds", "gauge"),
            ("act_runner_client_errors_total", "counter"),
            ("act_runner_job_total", "counter"),
            ("act_runner_job_duration_seconds", "histogram"),
            ("act_runner_job_running", "gauge"),
            ("act_runner_job_capacity_utilization_ratio", "gauge"),
            ("act_runner_report_log_total", "counter"),
            ("act_runner_report_state_total", "counter"),
            ("act_runner_report_log_duration_seconds", "histogram"),
            ("act_runner_report_state_duration_seconds", "histogram"),
            ("act_runner_report_log_buffer_rows", "gauge"),
            ("act_runner_docker_up", "gauge"),
            ("act_runner_draining", "gauge"),
            ("act_runner_config_reloads_total", "counter"),
            ("act_runner_log_spool_bytes", "gauge"),
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
        ];
        for (name, kind) in expected {
            let line = format!("# TYPE {name} {kind}");
            assert!(text.lines().any(|l| l == line), "missing `{line}`");
        }
        let n_ours = text
            .lines()
            .filter(|l| l.starts_with("# TYPE act_runner_"))
            .count();
        assert_eq!(n_ours, 20, "exactly the specified act_runner_ families");
    }

    #[test]
    fn buckets_are_the_specified_ones() {
        let metrics = metrics();
        metrics.job_finished(JobOutcome::Success, Duration::from_secs(5000));
        let text = metrics.render().unwrap();
        let les = |family: &str| -> Vec<String> {
            let prefix = format!("{family}_bucket{{le=\"");
            text.lines()
                .filter_map(|l| l.strip_prefix(prefix.as_str()))
                .map(|rest| rest.split('"').next().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            les("act_runner_poll_fetch_duration_seconds"),
            [
                "0.01", "0.05", "0.1", "0.25", "0.5", "1", "2", "5", "10", "+Inf"
            ]
        );
        assert_eq!(
            les("act_runner_report_log_duration_seconds"),
            ["0.01", "0.05", "0.1", "0.25", "0.5", "1", "2", "5", "+Inf"]
        );
        assert_eq!(les("act_runner_job_duration_seconds").len(), 15);
        assert_eq!(
            sample(
                &text,
                r#"act_runner_job_duration_seconds_bucket{le="4096"}"#
            ),
            0.0
        );
        assert_eq!(
            sample(
                &text,
                r#"act_runner_job_duration_seconds_bucket{le="8192"}"#
            ),
            1.0
        );
    }

    #[test]
    fn draining_sets_the_gauge_and_readiness() {
        let metrics = metrics();
        metrics.readiness().set_started();
        metrics.set_draining(true);
        assert!(!metrics.readiness().verdict().ready);
        assert_eq!(
            sample(&metrics.render().unwrap(), "act_runner_draining"),
            1.0
        );
    }
}
