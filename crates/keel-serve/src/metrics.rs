//! Prometheus metrics, hand-written: a fixed set of counters, gauges and two
//! histograms on atomics (no lock, no allocation on the hot path), rendered in
//! the text exposition format at scrape time. Label values are closed
//! enumerations, except the model-info gauge, which is rendered from the live
//! deployment.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which prediction protocol a request used.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// MLflow's `/invocations`.
    Mlflow = 0,
    /// Open Inference Protocol `/v2/.../infer`.
    V2 = 1,
}

const PROTOCOLS: [&str; 2] = ["mlflow", "v2"];

/// Kinds of failed requests.
#[derive(Debug, Clone, Copy)]
pub enum ErrorKind {
    /// Unparseable body or unsupported content type.
    BadRequest = 0,
    /// Input contract violated under a reject policy.
    Contract = 1,
    /// Too many requests in flight, or the prediction log is full.
    Overloaded = 2,
    /// Request took longer than the timeout.
    Timeout = 3,
    /// The model failed to predict.
    Model = 4,
    /// Non-finite output under the reject policy.
    NanOutput = 5,
    /// Unknown model name or version.
    NotFound = 6,
    /// Body over the size limit.
    TooLarge = 7,
}

const ERROR_KINDS: [&str; 8] = [
    "bad_request",
    "contract",
    "overloaded",
    "timeout",
    "model",
    "nan_output",
    "not_found",
    "too_large",
];

/// Input-contract and output checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A signature input absent from the request.
    MissingColumn = 0,
    /// A request column the signature does not have.
    ExtraColumn = 1,
    /// A value of the wrong type (text for a number, ...).
    WrongType = 2,
    /// A null / missing value.
    Null = 3,
    /// A number outside the training range.
    OutOfRange = 4,
    /// A category not seen in training.
    UnknownCategory = 5,
    /// A NaN or infinite prediction.
    NanOutput = 6,
}

impl Check {
    /// Every check, in flag-name order.
    pub const ALL: [Check; 7] = [
        Check::MissingColumn,
        Check::ExtraColumn,
        Check::WrongType,
        Check::Null,
        Check::OutOfRange,
        Check::UnknownCategory,
        Check::NanOutput,
    ];

    /// Name in flags, metrics and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::MissingColumn => "missing_column",
            Check::ExtraColumn => "extra_column",
            Check::WrongType => "wrong_type",
            Check::Null => "null",
            Check::OutOfRange => "out_of_range",
            Check::UnknownCategory => "unknown_category",
            Check::NanOutput => "nan_output",
        }
    }
}

/// Roles a model can serve in.
pub const ROLES: [&str; 3] = ["primary", "canary", "shadow"];

/// Upper bounds of the latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Upper bounds of the batch-size histogram, in rows.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 500.0, 1000.0, 10000.0, 100000.0,
];

struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    /// Per-bucket (not cumulative) counts; the last slot is +Inf.
    counts: Vec<AtomicU64>,
    /// Sum in micro-units (µs or rows × 1e6) to stay integral.
    sum_micro: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: &'static [f64; N]) -> Self {
        Histogram {
            bounds,
            counts: (0..=N).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let slot = self.bounds.iter().position(|b| value <= *b).unwrap_or(N);
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micro
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[N].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// All of the server's metrics.
pub struct Metrics {
    requests: Vec<AtomicU64>,
    rows: Vec<AtomicU64>,
    errors: Vec<AtomicU64>,
    flagged: Vec<AtomicU64>,
    latency: Histogram<14>,
    batch_rows: Histogram<11>,
    /// Rows whose prediction was NaN or infinite.
    pub nan_outputs: AtomicU64,
    /// Successful hot swaps.
    pub swaps: AtomicU64,
    /// Failed loads of a new version (the old one kept serving).
    pub load_failures: AtomicU64,
    /// Shadow requests skipped because the shadow was saturated.
    pub shadow_skipped: AtomicU64,
    /// Shadow predictions that failed.
    pub shadow_errors: AtomicU64,
    /// The prediction log's counters (kept by keel-predlog).
    pub log: Arc<keel_predlog::Stats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: counters(PROTOCOLS.len() * ROLES.len()),
            rows: counters(ROLES.len()),
            errors: counters(ERROR_KINDS.len()),
            flagged: counters(Check::ALL.len()),
            latency: Histogram::new(&LATENCY_BUCKETS),
            batch_rows: Histogram::new(&BATCH_BUCKETS),
            nan_outputs: AtomicU64::new(0),
            swaps: AtomicU64::new(0),
            load_failures: AtomicU64::new(0),
            shadow_skipped: AtomicU64::new(0),
            shadow_errors: AtomicU64::new(0),
            log: Arc::default(),
        }
    }
}

/// One line of the model-info gauge.
pub struct ModelInfo<'a> {
    /// primary, canary or shadow.
    pub role: &'a str,
    /// Registered name.
    pub name: &'a str,
    /// Version ("local" for a path).
    pub version: &'a str,
    /// Engine name.
    pub engine: &'a str,
}

impl Metrics {
    /// Counts a predicted request (`role` indexes [`ROLES`]).
    pub fn request(&self, protocol: Protocol, role: usize, rows: usize, seconds: f64) {
        self.requests[protocol as usize * ROLES.len() + role].fetch_add(1, Ordering::Relaxed);
        self.rows[role].fetch_add(rows as u64, Ordering::Relaxed);
        self.latency.observe(seconds);
        self.batch_rows.observe(rows as f64);
    }

    /// Counts a failed request.
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts rows flagged by `check`.
    pub fn flagged(&self, check: Check, rows: u64) {
        self.flagged[check as usize].fetch_add(rows, Ordering::Relaxed);
    }

    /// Number of failed requests of `kind`.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Ordering::Relaxed)
    }

    /// The text exposition.
    pub fn render(&self, models: &[ModelInfo<'_>], now_ms: u64) -> String {
        let mut out = String::with_capacity(8192);
        let counter = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        counter(
            &mut out,
            "keel_serve_requests_total",
            "Prediction requests answered, by protocol and the role of the model that answered.",
        );
        for (p, protocol) in PROTOCOLS.iter().enumerate() {
            for (r, role) in ROLES.iter().enumerate() {
                let value = self.requests[p * ROLES.len() + r].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "keel_serve_requests_total{{protocol=\"{protocol}\",role=\"{role}\"}} {value}"
                );
            }
        }
        counter(
            &mut out,
            "keel_serve_rows_total",
            "Rows predicted, by role.",
        );
        for (r, role) in ROLES.iter().enumerate() {
            let value = self.rows[r].load(Ordering::Relaxed);
            let _ = writeln!(out, "keel_serve_rows_total{{role=\"{role}\"}} {value}");
        }
        counter(
            &mut out,
            "keel_serve_request_errors_total",
            "Failed requests, by kind.",
        );
        for (k, kind) in ERROR_KINDS.iter().enumerate() {
            let value = self.errors[k].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "keel_serve_request_errors_total{{kind=\"{kind}\"}} {value}"
            );
        }
        counter(
            &mut out,
            "keel_serve_flagged_rows_total",
            "Rows accepted with a quality flag, by check.",
        );
        for check in Check::ALL {
            let value = self.flagged[check as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "keel_serve_flagged_rows_total{{check=\"{}\"}} {value}",
                check.as_str()
            );
        }
        self.latency.render(
            &mut out,
            "keel_serve_request_duration_seconds",
            "Prediction request latency (parse, check, predict, log hand-off).",
        );
        self.batch_rows.render(
            &mut out,
            "keel_serve_batch_rows",
            "Rows per prediction request.",
        );
        let _ = writeln!(
            out,
            "# HELP keel_serve_model_info The models being served (value 1).\n# TYPE keel_serve_model_info gauge"
        );
        for model in models {
            let _ = writeln!(
                out,
                "keel_serve_model_info{{role=\"{}\",name=\"{}\",version=\"{}\",engine=\"{}\"}} 1",
                model.role,
                escape(model.name),
                escape(model.version),
                model.engine
            );
        }
        let simple: [(&str, &str, &str, u64); 13] = [
            (
                "keel_serve_nan_outputs_total",
                "counter",
                "Rows whose prediction was NaN or infinite.",
                self.nan_outputs.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_model_swaps_total",
                "counter",
                "Hot swaps to a new model version.",
                self.swaps.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_model_load_failures_total",
                "counter",
                "New versions that failed to download or load (the old one kept serving).",
                self.load_failures.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_shadow_skipped_total",
                "counter",
                "Requests not mirrored because the shadow was saturated.",
                self.shadow_skipped.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_shadow_errors_total",
                "counter",
                "Mirrored requests the shadow model failed on.",
                self.shadow_errors.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_prediction_log_queue_rows",
                "gauge",
                "Prediction-log rows accepted (in the spool) but not yet in a Parquet file.",
                self.log.queue_rows.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_prediction_log_rows_written_total",
                "counter",
                "Rows written to prediction-log Parquet files.",
                self.log.rows_written.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_feedback_rows_written_total",
                "counter",
                "Feedback rows written to feedback-log Parquet files.",
                self.log.feedback_rows_written.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_prediction_log_files_written_total",
                "counter",
                "Prediction- and feedback-log Parquet files written.",
                self.log.files_written.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_prediction_log_rows_failed_total",
                "counter",
                "Rows not logged because the spool write failed (their requests got 503).",
                self.log.rows_failed.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_prediction_log_rows_refused_total",
                "counter",
                "Rows refused because the log was at capacity (their requests got 503).",
                self.log.rows_refused.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_prediction_log_spool_writes_total",
                "counter",
                "Group-committed writes to the spool (each carries one or more requests).",
                self.log.spool_writes.load(Ordering::Relaxed),
            ),
            (
                "keel_serve_prediction_log_compaction_failures_total",
                "counter",
                "Spool segments whose compaction into Parquet failed and is retried.",
                self.log.compaction_failures.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let oldest = self.log.oldest_pending_ms.load(Ordering::Relaxed);
        let lag = if oldest == 0 {
            0.0
        } else {
            now_ms.saturating_sub(oldest) as f64 / 1000.0
        };
        let _ = writeln!(
            out,
            "# HELP keel_serve_prediction_log_lag_seconds Age of the oldest prediction-log row not yet in a Parquet file.\n\
             # TYPE keel_serve_prediction_log_lag_seconds gauge\nkeel_serve_prediction_log_lag_seconds {lag}"
        );
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_labelled() {
        let metrics = Metrics::default();
        metrics.request(Protocol::Mlflow, 0, 1, 0.0003);
        metrics.request(Protocol::V2, 1, 100, 3.0);
        metrics.error(ErrorKind::Contract);
        metrics.flagged(Check::OutOfRange, 2);
        let text = metrics.render(
            &[ModelInfo {
                role: "primary",
                name: "risk\"x",
                version: "3",
                engine: "keel-native",
            }],
            0,
        );
        assert!(text.contains("keel_serve_requests_total{protocol=\"mlflow\",role=\"primary\"} 1"));
        assert!(text.contains("keel_serve_requests_total{protocol=\"v2\",role=\"canary\"} 1"));
        assert!(text.contains("keel_serve_request_duration_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("keel_serve_request_duration_seconds_bucket{le=\"2.5\"} 1"));
        assert!(text.contains("keel_serve_request_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("keel_serve_batch_rows_bucket{le=\"100\"} 2"));
        assert!(text.contains("keel_serve_request_errors_total{kind=\"contract\"} 1"));
        assert!(text.contains("keel_serve_flagged_rows_total{check=\"out_of_range\"} 2"));
        assert!(text.contains("name=\"risk\\\"x\",version=\"3\""));
    }
}
