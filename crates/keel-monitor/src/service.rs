//! `keel monitor watch` as a service: the loop that, every interval,
//! evaluates the recent windows of a prediction log against the training
//! profile, publishes Prometheus gauges on an axum endpoint, delivers
//! deduplicated alerts (with recovery notices) to their sinks, and decides
//! when the `on_drift` action is due (drift, and the cool-down has passed).
//! What the action does (the binary retrains through `keel run`) and where
//! the reference comes from (a model folder or the registry) are given by
//! the caller, so this crate stays free of pipelines and the registry.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_learn::metrics::Metrics;
use keel_learn::model::Signature;

use crate::config::AlertSink;
use crate::drift::{DriftConfig, DriftReport};
use crate::joint::JointVerdict;
use crate::profile::Profile;
use crate::watch::{AlertEvent, AlertState, conditions, gauges};
use crate::window::{LogOptions, WindowedReport, windowed_report};
use crate::{MonitorError, Result};

/// What the windows are compared with: the training profile, and the
/// model's signature and evaluation metrics when known.
#[derive(Debug, Clone)]
pub struct Reference {
    pub profile: Profile,
    pub signature: Option<Signature>,
    pub evaluation: Option<Metrics>,
}

/// How the service watches one model's log.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The prediction log (`keel serve --log-dir`): a folder or s3://….
    pub log_dir: String,
    /// The served model's name (the log's `model=` partition).
    pub model: String,
    pub window: Duration,
    /// Windows of history read at each evaluation.
    pub history: i64,
    pub interval: Duration,
    pub drift: DriftConfig,
    pub sinks: Vec<AlertSink>,
    /// The cool-down between `on_drift` actions; None: no action.
    pub action_cooldown: Option<Duration>,
    /// Evaluations in a row a condition must hold before its alert fires,
    /// and be gone before it resolves (1: at once).
    pub confirm: u32,
    /// Evaluate once and stop.
    pub once: bool,
    pub quiet: bool,
}

/// The latest gauges in Prometheus' text format, shared with the endpoint.
#[derive(Debug, Clone, Default)]
pub struct Gauges(Arc<Mutex<String>>);

impl Gauges {
    /// Replaces the published gauges (what each evaluation does).
    pub fn set(&self, text: String) {
        if let Ok(mut gauges) = self.0.lock() {
            *gauges = text;
        }
    }

    /// The text exposition of the latest evaluation (empty before the first).
    pub fn text(&self) -> String {
        self.0.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// `GET /metrics` with the latest gauges; anything else is 404.
pub fn metrics_router(gauges: Gauges) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let gauges = gauges.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        gauges.text(),
                    )
                }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "see /metrics\n") })
}

/// Binds `addr` and serves [`metrics_router`] in the background; returns the bound address.
pub async fn serve_metrics(addr: SocketAddr, gauges: Gauges) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MonitorError::Io {
            path: addr.to_string().into(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| MonitorError::Io {
        path: addr.to_string().into(),
        source,
    })?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, metrics_router(gauges)).await {
            tracing::warn!("metrics endpoint stopped: {error}");
        }
    });
    Ok(bound)
}

/// One evaluation's outcome.
#[derive(Debug)]
pub struct Evaluation {
    pub report: DriftReport,
    pub windows: WindowedReport,
    /// Alerts that started or cleared with this evaluation.
    pub events: Vec<AlertEvent>,
    /// The first millisecond of the history read.
    pub since_ms: i64,
    /// Whether the `on_drift` action is due now.
    pub act: bool,
    /// The watcher's state after this evaluation (recorded with the verdict).
    pub state: WatchState,
}

/// What a watcher carries from one evaluation to the next: the active
/// alerts and when the `on_drift` action last ran. It is recorded with every
/// verdict (`state` in the summary) and read back at start-up, so a
/// restarted watcher keeps deduplicating alerts and holds the cool-down.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WatchState {
    /// Alert key → message.
    pub active_alerts: std::collections::BTreeMap<String, String>,
    /// Unix ms of the last `on_drift` action, if any.
    pub last_action_ms: Option<i64>,
    /// Conditions counted towards `--confirm` but not yet acted on: key →
    /// evaluations in a row (absent in verdicts of older watchers).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub streaks: std::collections::BTreeMap<String, u32>,
}

impl WatchState {
    /// The state recorded in a verdict's summary (JSON text), if it has one.
    pub fn from_summary(summary: &str) -> Option<WatchState> {
        let value: serde_json::Value = serde_json::from_str(summary).ok()?;
        serde_json::from_value(value.get("state")?.clone()).ok()
    }
}

/// What an evaluation decided, in a form to record (the metadata store's
/// monitor verdicts): the newest window, whether the dataset drifted, and
/// the summary the web UI's monitoring pages draw. The summary is this
/// crate's format (readers take it leniently, as JSON):
///
/// - `rule`, `drifted_columns` (`{column, effect_size}`), `current_rows`,
///   `alerts` (the events of this evaluation), `action_due`;
/// - `features`: every column in the dataset verdict's ranking (drifted
///   first), `{column, kind, status, drifted, effect_size, threshold,
///   bins: [[label, reference share, current share], …]}`;
/// - `quality`: the findings, `{kind, column, message}`;
/// - `windows`: the windows read, oldest first, `{start_ms, rows, drifted,
///   metric, live, labeled, estimated_accuracy, label_lag_ms}` (`live`: the
///   headline metric from feedback labels, `metric` its name; the estimate
///   is the label-free one, see [`crate::window::CBPE_ASSUMPTION`]; the lag
///   is the mean time from a prediction to its label; `joint`, when the
///   reference has a joint model: `{drifted, error_change, p_value,
///   drivers}` of the window, at most 3 drivers);
/// - `multivariate` (when the reference has a joint model): `{drifted,
///   error_change, p_value, drivers: [column names], pairs: [{a, b,
///   reference, current}]}`, see [`crate::joint`];
/// - `state`: the watcher's [`WatchState`] after the evaluation, which a
///   restarted watcher continues from.
///
/// The summary is kept under [`MAX_SUMMARY_BYTES`]: histogram bins go
/// first (from the lowest-ranked feature up), then the oldest windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub model: String,
    pub window_start: Option<i64>,
    pub rows: i64,
    pub drifted: bool,
    pub summary: serde_json::Value,
}

/// Largest summary recorded: below the metadata store's 64 KiB limit on a
/// verdict's text, with room to spare.
pub const MAX_SUMMARY_BYTES: usize = 60 * 1024;
/// Most features, bins per feature, findings and windows in a summary.
const SUMMARY_FEATURES: usize = 64;
const SUMMARY_BINS: usize = 40;
const SUMMARY_FINDINGS: usize = 50;
const SUMMARY_WINDOWS: usize = 96;

/// `value` to 4 significant digits: shares and effects for people, not bits.
fn short(value: f64) -> serde_json::Value {
    if !value.is_finite() {
        return serde_json::Value::Null;
    }
    format!("{value:.3e}")
        .parse::<f64>()
        .map_or(serde_json::Value::Null, |v| serde_json::json!(v))
}

impl Evaluation {
    /// The verdict to record.
    pub fn verdict(&self) -> Verdict {
        let newest = self.windows.windows.last();
        let drifted: Vec<serde_json::Value> = self
            .report
            .columns
            .iter()
            .filter(|c| c.drifted)
            .map(|c| serde_json::json!({"column": c.column, "effect_size": c.effect_size}))
            .collect();
        // Columns in the ranking's order (drifted first), then any unranked.
        let ranked = self
            .report
            .dataset
            .ranking
            .iter()
            .filter_map(|name| self.report.columns.iter().find(|c| &c.column == name))
            .chain(
                self.report
                    .columns
                    .iter()
                    .filter(|c| !self.report.dataset.ranking.contains(&c.column)),
            );
        let mut features: Vec<serde_json::Value> = ranked
            .take(SUMMARY_FEATURES)
            .map(|c| {
                serde_json::json!({
                    "column": c.column,
                    "kind": c.kind,
                    "status": c.status,
                    "drifted": c.drifted,
                    "effect_size": c.effect_size.map(short),
                    "threshold": c.threshold,
                    "bins": c.bins.iter().take(SUMMARY_BINS)
                        .map(|b| serde_json::json!([b.label, short(b.reference), short(b.current)]))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        let quality: Vec<serde_json::Value> = self
            .report
            .quality
            .iter()
            .take(SUMMARY_FINDINGS)
            .map(|f| serde_json::json!({"kind": f.kind, "column": f.column, "message": f.message}))
            .collect();
        let skip = self.windows.windows.len().saturating_sub(SUMMARY_WINDOWS);
        let mut windows: Vec<serde_json::Value> = self
            .windows
            .windows
            .iter()
            .skip(skip)
            .map(|w| {
                serde_json::json!({
                    "start_ms": w.start_ms,
                    "rows": w.rows,
                    "drifted": w.drifted,
                    "metric": w.performance.as_ref().map(|p| &p.headline_name),
                    "live": w.performance.as_ref().map(|p| short(p.headline)),
                    "labeled": w.performance.as_ref().map(|p| p.labeled),
                    "estimated_accuracy": w.estimated_accuracy.map(short),
                    "label_lag_ms": w.label_lag_ms.map(short),
                    "joint": w.joint.as_ref().map(|j| serde_json::json!({
                        "drifted": j.drifted,
                        "error_change": short(j.error_change),
                        "p_value": j.p_value.map(short),
                        "drivers": j.drivers.iter().map(|d| short_name(d)).collect::<Vec<_>>(),
                    })),
                })
            })
            .collect();
        // The joint test, bounded (a few KiB at most, see `joint_summary`).
        let joint = self.report.multivariate.as_ref().map(joint_summary);
        let mut summary;
        // Shed detail until the summary fits: bins from the lowest-ranked
        // feature up, then the oldest windows.
        loop {
            summary = serde_json::json!({
                "rule": self.report.dataset.rule,
                "drifted_columns": drifted,
                "current_rows": self.report.current_rows,
                "alerts": self.events.iter().map(|e| &e.key).collect::<Vec<_>>(),
                "action_due": self.act,
                "features": features,
                "quality": quality,
                "windows": windows,
                "state": self.state,
            });
            if let (Some(joint), Some(map)) = (&joint, summary.as_object_mut()) {
                map.insert("multivariate".into(), joint.clone());
            }
            if summary.to_string().len() <= MAX_SUMMARY_BYTES {
                break;
            }
            if let Some(bins) = features
                .iter_mut()
                .rev()
                .filter_map(|f| f.get_mut("bins")?.as_array_mut())
                .find(|bins| !bins.is_empty())
            {
                bins.clear();
            } else if !windows.is_empty() {
                windows.remove(0);
            } else {
                // Thousands of columns: the drifted list and the alert keys
                // (what a restarted watcher needs) remain.
                summary["features"] = serde_json::json!([]);
                summary["quality"] = serde_json::json!([]);
                let keys_only = WatchState {
                    active_alerts: self
                        .state
                        .active_alerts
                        .keys()
                        .map(|k| (k.clone(), String::new()))
                        .collect(),
                    last_action_ms: self.state.last_action_ms,
                    streaks: self.state.streaks.clone(),
                };
                summary["state"] = serde_json::json!(keys_only);
                break;
            }
        }
        Verdict {
            model: self.windows.model.clone(),
            window_start: newest.map(|w| w.start_ms),
            rows: newest.map_or(0, |w| w.rows as i64),
            drifted: self.report.dataset.drifted,
            summary,
        }
    }
}

/// Longest column name kept in a verdict summary's joint drivers and pairs.
const SUMMARY_NAME: usize = 200;

fn short_name(name: &str) -> String {
    match name.char_indices().nth(SUMMARY_NAME) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name.to_string(),
    }
}

/// The joint verdict in the summary's shape (what the UI reads):
/// `{"drifted", "error_change", "p_value", "drivers": [names], "pairs"}`,
/// at most 8 drivers and 3 drifted pairs, names cut at 200 characters, so
/// it stays far under the store's 64 KiB verdict limit.
fn joint_summary(joint: &JointVerdict) -> serde_json::Value {
    let finite = |x: f64| x.is_finite().then_some(x);
    serde_json::json!({
        "drifted": joint.drifted,
        "error_change": finite(joint.error_change),
        "p_value": joint.p_value.and_then(finite),
        "drivers": joint.drivers.iter().take(8).map(|d| short_name(d)).collect::<Vec<_>>(),
        "pairs": joint
            .pairs
            .iter()
            .filter(|p| p.drifted)
            .take(3)
            .map(|p| serde_json::json!({
                "a": short_name(&p.a),
                "b": short_name(&p.b),
                "reference": finite(p.reference),
                "current": finite(p.current),
            }))
            .collect::<Vec<_>>(),
    })
}

/// The watcher's state between evaluations.
#[derive(Debug)]
pub struct Watcher {
    pub options: WatchOptions,
    pub gauges: Gauges,
    alerts: AlertState,
    last_action_ms: Option<i64>,
    http: reqwest::Client,
}

impl Watcher {
    pub fn new(options: WatchOptions) -> Watcher {
        let alerts = AlertState::with_confirmation(options.confirm);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Watcher {
            options,
            gauges: Gauges::default(),
            alerts,
            last_action_ms: None,
            http,
        }
    }

    /// What this watcher would carry into its next evaluation.
    pub fn state(&self) -> WatchState {
        WatchState {
            active_alerts: self.alerts.active().clone(),
            last_action_ms: self.last_action_ms,
            streaks: self.alerts.streaks().clone(),
        }
    }

    /// Continues from a previous watcher's state (read from its last
    /// verdict): its active alerts do not fire again, confirmations go on
    /// counting, and the `on_drift` cool-down counts from its last action.
    pub fn restore(&mut self, state: WatchState) {
        self.alerts.restore(state.active_alerts, state.streaks);
        self.last_action_ms = state.last_action_ms;
    }

    /// Evaluates the history up to `now_ms`: the report, the gauges, the
    /// alert transitions, and whether the action is due (it then counts as
    /// taken, starting the cool-down).
    pub fn evaluate(&mut self, now_ms: i64, reference: &Reference) -> Result<Evaluation> {
        let window_ms = (self.options.window.as_millis() as i64).max(1);
        let since_ms = now_ms - self.options.history.max(1) * window_ms;
        let log = LogOptions {
            log_dir: self.options.log_dir.clone(),
            model: self.options.model.clone(),
            window_ms,
            config: self.options.drift.clone(),
            since_ms: Some(since_ms),
            // Windows that end now: the decision is always on a whole
            // window (a calendar window that has just begun holds a handful
            // of rows, too few to confirm an alert, and resolved it).
            until_ms: Some(now_ms),
        };
        let (report, windows) = windowed_report(
            &log,
            &reference.profile,
            reference.signature.as_ref(),
            reference.evaluation.as_ref(),
        )?;
        self.gauges.set(gauges(&windows.model, &report, &windows));
        let start = windows.windows.last().map(|w| w.start_ms);
        let events = self
            .alerts
            .update(&windows.model, conditions(&report), start);
        let act = match self.options.action_cooldown {
            Some(cooldown) if report.dataset.drifted => {
                let due = self
                    .last_action_ms
                    .is_none_or(|at| now_ms - at >= cooldown.as_millis() as i64);
                if due {
                    self.last_action_ms = Some(now_ms);
                }
                due
            }
            _ => false,
        };
        Ok(Evaluation {
            report,
            windows,
            events,
            since_ms,
            act,
            state: self.state(),
        })
    }

    /// Sends `event` to every sink: the log (stderr), webhooks (POST JSON);
    /// a failed webhook is logged, never fatal.
    pub async fn deliver(&self, event: &AlertEvent) {
        for sink in &self.options.sinks {
            match sink {
                AlertSink::Log(false) => {}
                AlertSink::Log(true) => {
                    if !self.options.quiet || event.status == "firing" {
                        eprintln!(
                            "alert {} [{}] {}: {}",
                            event.status, event.model, event.key, event.message
                        );
                    }
                }
                AlertSink::Webhook(webhook) => {
                    let sent = async {
                        self.http
                            .post(webhook)
                            .json(event)
                            .send()
                            .await?
                            .error_for_status()
                    }
                    .await;
                    if let Err(error) = sent {
                        tracing::warn!("alert webhook {webhook} failed: {error}");
                    }
                }
            }
        }
    }

    /// The loop: every interval, the reference from `reference` (asked each
    /// time, so a registry alias that moved is followed), an evaluation,
    /// alerts delivered, and `action` run (on a blocking thread, with the
    /// evaluation and the reference it used) when due.
    /// With `once`, returns after the first evaluation: `Some(exit code)`
    /// of the action when one ran, else None; the caller turns drift into
    /// its exit code.
    /// Each evaluation's [`Verdict`] goes to `record` (the caller stores it).
    /// Errors of `reference` and `action` (the caller's type `E`) end the
    /// loop; a failed `record` is logged and the loop goes on.
    pub async fn run<E, R, F, V, G, A>(
        mut self,
        mut reference: R,
        mut record: V,
        action: A,
    ) -> Result<WatchEnd, E>
    where
        E: From<MonitorError> + std::fmt::Display + Send + 'static,
        R: FnMut() -> F,
        F: std::future::Future<Output = Result<Reference, E>>,
        V: FnMut(Verdict) -> G,
        G: std::future::Future<Output = Result<(), E>>,
        A: Fn(&Evaluation, &Reference) -> Result<Option<i32>, E> + Send + Sync + 'static,
    {
        let action = Arc::new(action);
        loop {
            let now_ms = keel_core::now_millis();
            let reference = reference().await?;
            let evaluation = self.evaluate(now_ms, &reference)?;
            for event in &evaluation.events {
                self.deliver(event).await;
            }
            if let Err(error) = record(evaluation.verdict()).await {
                tracing::warn!("recording the monitor verdict failed: {error}");
            }
            let drifted = evaluation.report.dataset.drifted;
            let mut action_exit = None;
            if evaluation.act {
                let action = Arc::clone(&action);
                let (exit, evaluation) = tokio::task::spawn_blocking(move || {
                    let exit = action(&evaluation, &reference);
                    (exit, evaluation)
                })
                .await
                .map_err(|error| {
                    MonitorError::config("monitor.on_drift", format!("the action stopped: {error}"))
                })?;
                drop(evaluation);
                action_exit = exit?;
            }
            if self.options.once {
                return Ok(WatchEnd {
                    drifted,
                    action_exit,
                });
            }
            tokio::time::sleep(self.options.interval.max(Duration::from_secs(1))).await;
        }
    }
}

/// How a `once` evaluation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchEnd {
    pub drifted: bool,
    /// The action's exit code, when it ran.
    pub action_exit: Option<i32>,
}
