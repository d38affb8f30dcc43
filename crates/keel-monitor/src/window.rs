//! Monitoring a served model over its prediction log (read through
//! keel-predlog, every replica's files merged by arrival time; the format is
//! `docs/prediction-log.md`): rows are cut into time windows by `ts_ms`,
//! each window's inputs and outputs are profiled against the training
//! profile and compared with it; feedback labels joined on
//! `(request_id, row)` give live accuracy / F1 / AUC or RMSE / MAE per
//! window, and a confidence-based (CBPE-style) estimate covers windows
//! without labels. Page–Hinkley detectors on the per-row error and
//! confidence streams localise changes in time.

use std::collections::BTreeMap;

use keel_learn::metrics::{Metrics, classification_metrics, regression_metrics};
use keel_learn::model::{Signature, Task};
use keel_predlog::{InputValues, Label, LogReader, PredictionBatch, schema};
use serde::{Deserialize, Serialize};

use crate::drift::{DriftConfig, DriftReport, compare};
use crate::error::Result;
use crate::profile::{ColumnProfile, Profile};
use crate::quality::{FindingKind, QualityFinding};

/// The assumption under which the label-free estimate holds (a reference without a calibration).
pub const CBPE_ASSUMPTION: &str = "estimated accuracy = mean probability of the predicted class; valid only if the model's probabilities are calibrated and P(label | inputs) has not changed (no concept drift)";
/// The same, for a reference that carries a calibration ([`crate::calibration`]).
pub const CBPE_ASSUMPTION_CALIBRATED: &str = "estimated accuracy = mean probability that each prediction is right, its score calibrated on the reference's held-out labelled predictions (isotonic); valid only if P(label | inputs) has not changed (no concept drift)";

/// Live performance of one window (rows with feedback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    /// Rows with a label.
    pub labeled: u64,
    /// Headline metric name (accuracy or rmse).
    pub headline_name: String,
    /// Its value.
    pub headline: f64,
    /// All metrics (accuracy, f1, roc_auc or rmse, mae, r2).
    pub metrics: Metrics,
}

/// One time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    /// Start (inclusive), Unix ms.
    pub start_ms: i64,
    /// End (exclusive), Unix ms.
    pub end_ms: i64,
    /// Predicted rows.
    pub rows: u64,
    /// Whether the dataset policy says drift for this window.
    pub drifted: bool,
    /// Columns that drifted.
    pub drifted_columns: Vec<String>,
    /// Effect size per tested column.
    pub effects: BTreeMap<String, f64>,
    /// Quality findings of the window.
    pub quality: Vec<QualityFinding>,
    /// Live metrics from feedback, when any row has a label.
    pub performance: Option<Performance>,
    /// CBPE-style estimate (classification), see [`CBPE_ASSUMPTION`].
    pub estimated_accuracy: Option<f64>,
    /// Mean time from a prediction to its label (ms), over the window's
    /// labelled rows (labels that came before their prediction count as 0).
    #[serde(default)]
    pub label_lag_ms: Option<f64>,
    /// Longest such time in the window (ms).
    #[serde(default)]
    pub label_lag_max_ms: Option<i64>,
    /// The joint (multivariate) test of the window, when the reference has
    /// a joint model (see [`crate::joint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joint: Option<JointWindow>,
}

/// Most drivers kept per window.
const WINDOW_DRIVERS: usize = 3;

/// The joint test's figures for one window: the dataset-level verdict
/// without the per-column and per-pair detail (that is in the report on
/// the latest window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointWindow {
    /// Whether the joint distribution drifted.
    pub drifted: bool,
    /// Relative change of the mean reconstruction error.
    pub error_change: f64,
    /// Combined p-value of the joint test.
    pub p_value: Option<f64>,
    /// The columns that drive the change, most first (at most 3).
    pub drivers: Vec<String>,
}

impl JointWindow {
    /// The window's figures of a joint verdict.
    pub fn of(verdict: &crate::joint::JointVerdict) -> JointWindow {
        JointWindow {
            drifted: verdict.drifted,
            error_change: verdict.error_change,
            p_value: verdict.p_value,
            drivers: verdict
                .drivers
                .iter()
                .take(WINDOW_DRIVERS)
                .cloned()
                .collect(),
        }
    }
}

/// A change located in time by a Page–Hinkley detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePoint {
    /// Which stream (`error`, `confidence`).
    pub stream: String,
    /// When the detector fired (Unix ms).
    pub detected_ms: i64,
    /// Estimated start of the change: where the cumulative deviation was lowest.
    pub started_ms: i64,
    /// One line for people.
    pub message: String,
}

/// The whole log report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowedReport {
    /// Model name.
    pub model: String,
    /// Window length in ms.
    pub window_ms: i64,
    /// Windows with predictions, in time order (empty windows are not listed).
    pub windows: Vec<WindowSummary>,
    /// The model's evaluation headline (from metrics.json), for the drop.
    pub evaluation_headline: Option<f64>,
    /// Changes located by Page–Hinkley.
    pub change_points: Vec<ChangePoint>,
    /// The assumption of the label-free estimate.
    pub cbpe_assumption: String,
}

/// Page–Hinkley test for an increase in the mean of a stream.
#[derive(Debug, Clone)]
pub struct PageHinkley {
    delta: f64,
    threshold: f64,
    min_samples: u64,
    n: u64,
    mean: f64,
    cumulative: f64,
    minimum: f64,
    minimum_at: i64,
}

impl PageHinkley {
    /// `delta`: tolerated increase; `threshold`: alarm level (λ).
    pub fn new(delta: f64, threshold: f64) -> Self {
        PageHinkley {
            delta,
            threshold,
            min_samples: 30,
            n: 0,
            mean: 0.0,
            cumulative: 0.0,
            minimum: 0.0,
            minimum_at: 0,
        }
    }

    /// Adds `x` observed at `ts`; returns the estimated start of the change
    /// when the detector fires (it then starts afresh).
    pub fn push(&mut self, x: f64, ts: i64) -> Option<i64> {
        if !x.is_finite() {
            return None;
        }
        self.n += 1;
        self.mean += (x - self.mean) / self.n as f64;
        self.cumulative += x - self.mean - self.delta;
        if self.cumulative < self.minimum || self.n == 1 {
            self.minimum = self.cumulative;
            self.minimum_at = ts;
        }
        if self.n >= self.min_samples && self.cumulative - self.minimum > self.threshold {
            let started = self.minimum_at;
            *self = PageHinkley::new(self.delta, self.threshold);
            return Some(started);
        }
        None
    }
}

struct WindowState {
    profile: Profile,
    rows: u64,
    invalid_outputs: u64,
    confidence_sum: f64,
    confidence_rows: u64,
    label_lag_sum_ms: f64,
    label_lag_max_ms: i64,
    outcomes: Outcomes,
}

/// The labelled outcomes of some logged rows (a window, a segment): what
/// live metrics are computed from.
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    class_truth: Vec<Option<usize>>,
    class_predicted: Vec<usize>,
    class_probabilities: Vec<Vec<f64>>,
    value_truth: Vec<f64>,
    value_predicted: Vec<f64>,
}

/// How a log's outcomes are read: the task, the classes and the target's
/// scale (from the signature).
pub(crate) struct Scoring<'a> {
    pub task: Option<Task>,
    pub classes: &'a [String],
    pub target_scale: f64,
}

impl Outcomes {
    /// Records row `row` of `batch` against its feedback `truth`, with
    /// `probabilities[k]` the batch column of class `k`'s probability.
    /// Returns the row's error (0/1 for a class, |error| / target scale for
    /// a value), or None when the row cannot be scored (no prediction).
    pub(crate) fn push(
        &mut self,
        batch: &PredictionBatch,
        row: usize,
        truth: &Label,
        scoring: &Scoring<'_>,
        probabilities: &[Option<usize>],
    ) -> Option<f64> {
        let classes = scoring.classes;
        let score = batch.score[row];
        let probability = |k: usize| -> Option<f64> {
            probabilities
                .get(k)
                .copied()
                .flatten()
                .and_then(|at| batch.probabilities[at].1[row])
        };
        match scoring.task {
            Some(Task::Classification) | None if truth.label.is_some() => {
                let predicted = batch.label[row]
                    .as_ref()
                    .and_then(|l| classes.iter().position(|c| c == l))?;
                let truth_class = truth
                    .label
                    .as_ref()
                    .and_then(|l| classes.iter().position(|c| c == l));
                let mut p: Vec<f64> = (0..classes.len())
                    .map(|k| probability(k).unwrap_or(f64::NAN))
                    .collect();
                if p.iter().any(|x| !x.is_finite()) {
                    let s = score.filter(|s| s.is_finite()).unwrap_or(1.0);
                    let rest = if classes.len() > 1 {
                        (1.0 - s) / (classes.len() - 1) as f64
                    } else {
                        0.0
                    };
                    p = (0..classes.len())
                        .map(|k| if k == predicted { s } else { rest })
                        .collect();
                }
                self.class_truth.push(truth_class);
                self.class_predicted.push(predicted);
                self.class_probabilities.push(p);
                Some(f64::from(u8::from(truth_class != Some(predicted))))
            }
            _ => {
                let (Some(truth), Some(predicted)) = (truth.value, batch.value[row]) else {
                    return None;
                };
                self.value_truth.push(truth);
                self.value_predicted.push(predicted);
                Some((truth - predicted).abs() / scoring.target_scale)
            }
        }
    }

    /// Live metrics of the recorded rows (None without any).
    pub(crate) fn performance(&self, classes: &[String]) -> Option<Performance> {
        if !self.class_predicted.is_empty() {
            let m = classification_metrics(
                classes,
                &self.class_truth,
                &self.class_predicted,
                &self.class_probabilities,
            );
            Some(Performance {
                labeled: self.class_predicted.len() as u64,
                headline_name: "accuracy".into(),
                headline: m.accuracy,
                metrics: Metrics::Classification(m),
            })
        } else if !self.value_truth.is_empty() {
            let m = regression_metrics(&self.value_truth, &self.value_predicted);
            Some(Performance {
                labeled: self.value_truth.len() as u64,
                headline_name: "rmse".into(),
                headline: m.rmse,
                metrics: Metrics::Regression(m),
            })
        } else {
            None
        }
    }
}

/// The target's scale of a signature (its training standard deviation), 1 without.
pub(crate) fn target_scale(signature: Option<&Signature>) -> f64 {
    signature
        .and_then(|s| s.training.value_summary)
        .map(|v| v[1])
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

/// Where each of `classes` is among `batch`'s probability columns.
pub(crate) fn probability_columns(
    batch: &PredictionBatch,
    classes: &[String],
) -> Vec<Option<usize>> {
    classes
        .iter()
        .map(|c| batch.probabilities.iter().position(|(class, _)| class == c))
        .collect()
}

/// Where the log is and how to cut it.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// The log root (`--log-dir`): a folder or `s3://bucket/prefix`.
    pub log_dir: String,
    /// The model name (its partition).
    pub model: String,
    /// Window length in ms.
    pub window_ms: i64,
    /// Drift policy.
    pub config: DriftConfig,
    /// Rows older than this (Unix ms) are left out, and so are files that
    /// hold only such rows: the sliding history of `watch`.
    pub since_ms: Option<i64>,
    /// Where windows end: with `Some(now)`, the newest window is
    /// `[now − window, now)` and the others precede it back to back (rows
    /// at or after `now` are left for the next evaluation); with None,
    /// windows start at multiples of the window length since the epoch
    /// (calendar windows, what `keel monitor report` shows). The watcher
    /// passes its evaluation time, so the window it decides on is always
    /// a whole window, never the few rows of one that has just begun.
    pub until_ms: Option<i64>,
}

/// Where a reference column's values are in a prediction file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Input(usize),
    Label,
    Score,
    Value,
    Absent,
}

impl Source {
    /// Finds the reference column `name` (an input's name, or the model
    /// profile's `output.label` / `output.score` / `output.value`) in `batch`.
    pub(crate) fn find(batch: &PredictionBatch, name: &str) -> Source {
        if name == schema::OUTPUT_LABEL.name {
            Source::Label
        } else if name == schema::OUTPUT_SCORE.name {
            Source::Score
        } else if name == schema::OUTPUT_VALUE.name {
            Source::Value
        } else {
            batch
                .inputs
                .iter()
                .position(|(n, _)| n == name)
                .map_or(Source::Absent, Source::Input)
        }
    }

    /// The cell as a number (text that parses counts).
    pub(crate) fn number(self, batch: &PredictionBatch, row: usize) -> Option<f64> {
        match self {
            Source::Input(i) => match &batch.inputs[i].1 {
                InputValues::Numbers(v) => v[row],
                InputValues::Texts(v) => v[row].as_deref()?.trim().parse().ok(),
            },
            Source::Label => batch.label[row].as_deref()?.trim().parse().ok(),
            Source::Score => batch.score[row],
            Source::Value => batch.value[row],
            Source::Absent => None,
        }
    }

    /// The cell as text (numbers formatted like category labels).
    pub(crate) fn text(self, batch: &PredictionBatch, row: usize) -> Option<String> {
        let number = |v: Option<f64>| v.map(keel_table::format_number);
        match self {
            Source::Input(i) => match &batch.inputs[i].1 {
                InputValues::Numbers(v) => number(v[row]),
                InputValues::Texts(v) => v[row].clone(),
            },
            Source::Label => batch.label[row].clone(),
            Source::Score => number(batch.score[row]),
            Source::Value => number(batch.value[row]),
            Source::Absent => None,
        }
    }
}

/// The sources of `names` in `batch`, recomputed when the file changes.
pub(crate) struct Sources {
    file: Option<String>,
    pub sources: Vec<Source>,
}

impl Sources {
    pub(crate) fn new() -> Self {
        Sources {
            file: None,
            sources: Vec::new(),
        }
    }

    pub(crate) fn of<'a>(
        &mut self,
        batch: &PredictionBatch,
        names: impl Iterator<Item = &'a str>,
    ) -> &[Source] {
        if self.file.as_deref() != Some(batch.file.path.as_str()) {
            self.file = Some(batch.file.path.clone());
            self.sources = names.map(|name| Source::find(batch, name)).collect();
        }
        &self.sources
    }
}

/// Reads the prediction and feedback logs of `options.model` and reports
/// per window. Returns the report on the latest window (the one an alert
/// or exit code should follow) and the whole series.
pub fn windowed_report(
    options: &LogOptions,
    reference: &Profile,
    signature: Option<&Signature>,
    evaluation: Option<&Metrics>,
) -> Result<(DriftReport, WindowedReport)> {
    let reader = LogReader::open(&options.log_dir)?;
    let feedback = reader.feedback(&options.model, options.since_ms)?;
    let classes: Vec<String> = signature.map(|s| s.classes.clone()).unwrap_or_default();
    let task = signature.map(|s| s.task);
    let target = signature.map(|s| s.target.clone());
    // Reference columns monitored: inputs (logged as `input.NAME`) and outputs.
    let monitored: Vec<&ColumnProfile> = reference
        .columns
        .iter()
        .filter(|c| Some(&c.name) != target.as_ref())
        .collect();
    let mut seen_columns: Vec<String> = Vec::new();
    let mut windows: BTreeMap<i64, WindowState> = BTreeMap::new();
    let mut error_detector = PageHinkley::new(0.02, 30.0);
    let mut confidence_detector = PageHinkley::new(0.02, 30.0);
    let mut change_points = Vec::new();
    let scoring = Scoring {
        task,
        classes: &classes,
        target_scale: target_scale(signature),
    };
    // Where each reference column (in the window profiles' order) is in the current file.
    let mut sources = Sources::new();
    let mut current_file: Option<String> = None;
    // The joint sums' inputs and where each is among the reference's columns.
    let joint_at: Vec<(crate::joint::JointInput, usize)> = reference
        .template()
        .joint
        .map(|joint| {
            joint
                .inputs()
                .into_iter()
                .filter_map(|input| {
                    let at = reference
                        .columns
                        .iter()
                        .position(|c| c.name == input.column())?;
                    Some((input, at))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut probabilities: Vec<Option<usize>> = Vec::new();
    reader.scan_predictions(
        &options.model,
        options.since_ms,
        |batch, row| -> Result<()> {
            if current_file.as_deref() != Some(batch.file.path.as_str()) {
                current_file = Some(batch.file.path.clone());
                for column in &monitored {
                    if !matches!(Source::find(batch, &column.name), Source::Absent)
                        && !seen_columns.contains(&column.name)
                    {
                        seen_columns.push(column.name.clone());
                    }
                }
                probabilities = probability_columns(batch, &classes);
            }
            let t = batch.ts_ms[row];
            if options.until_ms.is_some_and(|end| t >= end) {
                return Ok(());
            }
            let origin = options.until_ms.unwrap_or(0);
            let start = origin + (t - origin).div_euclid(options.window_ms) * options.window_ms;
            let state = windows.entry(start).or_insert_with(|| WindowState {
                profile: reference.template(),
                rows: 0,
                invalid_outputs: 0,
                confidence_sum: 0.0,
                confidence_rows: 0,
                label_lag_sum_ms: 0.0,
                label_lag_max_ms: 0,
                outcomes: Outcomes::default(),
            });
            state.rows += 1;
            let columns = sources.of(batch, reference.columns.iter().map(|c| c.name.as_str()));
            for (column, source) in state.profile.columns.iter_mut().zip(columns) {
                if matches!(source, Source::Absent) {
                    continue;
                }
                match column.kind() {
                    crate::profile::ColumnKind::Numeric => {
                        column.push_number(source.number(batch, row));
                    }
                    crate::profile::ColumnKind::Categorical => match source.text(batch, row) {
                        Some(text) => column.push_category(&text),
                        None => column.push_nulls(1),
                    },
                }
            }
            state.profile.rows += 1;
            if let Some(joint) = &mut state.profile.joint {
                let mut values: Vec<Option<f64>> = Vec::with_capacity(joint.dim());
                for (input, k) in &joint_at {
                    let source = columns.get(*k);
                    match input {
                        crate::joint::JointInput::Numeric(_) => {
                            values.push(source.and_then(|s| s.number(batch, row)))
                        }
                        crate::joint::JointInput::Categorical { categories, .. } => {
                            let text = source.and_then(|s| s.text(batch, row));
                            values.extend(
                                crate::joint::indicator_values(categories, text.as_deref())
                                    .map(|x| x.is_finite().then_some(x)),
                            );
                        }
                    }
                }
                let pushed = joint.rows;
                joint.push_row(&values, pushed);
            }
            let score = batch.score[row];
            let value = batch.value[row];
            let probability = |k: usize| -> Option<f64> {
                probabilities[k].and_then(|at| batch.probabilities[at].1[row])
            };
            let proba_bad =
                (0..classes.len()).any(|k| probability(k).is_some_and(|p| !p.is_finite()));
            if score.is_some_and(|s| !s.is_finite())
                || value.is_some_and(|v| !v.is_finite())
                || proba_bad
            {
                state.invalid_outputs += 1;
            }
            if let Some(score) = score.filter(|s| s.is_finite()) {
                // The probability that this prediction is right: its score,
                // calibrated when the reference carries a calibration.
                state.confidence_sum += reference
                    .calibration
                    .as_ref()
                    .map_or(score, |c| c.apply(score));
                state.confidence_rows += 1;
                if let Some(started) = confidence_detector.push(1.0 - score, t) {
                    change_points.push(ChangePoint {
                    stream: "confidence".into(),
                    detected_ms: t,
                    started_ms: started,
                    message: format!(
                        "mean confidence fell; change began near {started} ms, detected at {t} ms"
                    ),
                });
                }
            }
            let Some(truth) = feedback.get(&batch.request_id[row], batch.row[row]) else {
                return Ok(());
            };
            let lag = truth.ts_ms.saturating_sub(t).max(0);
            let Some(error) = state
                .outcomes
                .push(batch, row, truth, &scoring, &probabilities)
            else {
                return Ok(());
            };
            state.label_lag_sum_ms += lag as f64;
            state.label_lag_max_ms = state.label_lag_max_ms.max(lag);
            if let Some(started) = error_detector.push(error, t) {
                change_points.push(ChangePoint {
                    stream: "error".into(),
                    detected_ms: t,
                    started_ms: started,
                    message: format!(
                        "error rate rose; change began near {started} ms, detected at {t} ms"
                    ),
                });
            }
            Ok(())
        },
    )?;
    // Only the columns the log carries are compared.
    let keep = |profile: &Profile| -> Profile {
        let mut p = profile.clone();
        p.columns.retain(|c| seen_columns.contains(&c.name));
        p.correlations = None;
        // The joint test needs every one of its columns in the log.
        let complete =
            |sources: Vec<&str>| sources.iter().all(|c| seen_columns.iter().any(|s| s == c));
        if !p
            .joint
            .as_ref()
            .is_none_or(|j| complete((0..j.dim()).map(|i| j.source(i)).collect()))
        {
            p.joint = None;
        }
        if !p
            .multivariate
            .as_ref()
            .is_none_or(|m| complete((0..m.columns.len()).map(|i| m.source(i)).collect()))
        {
            p.multivariate = None;
        }
        p
    };
    let reduced_reference = keep(reference);
    let missing_inputs: Vec<String> = monitored
        .iter()
        .filter(|c| !c.name.starts_with("output.") && !seen_columns.contains(&c.name))
        .map(|c| c.name.clone())
        .collect();
    let mut summaries = Vec::new();
    let mut latest: Option<DriftReport> = None;
    for (start, state) in &windows {
        let current = keep(&state.profile);
        let mut report = compare(&reduced_reference, &current, &options.config)?;
        for name in &missing_inputs {
            report.quality.push(QualityFinding {
                kind: FindingKind::MissingColumn,
                column: Some(name.clone()),
                reference: None,
                current: None,
                message: format!("input {name} is not in the prediction log"),
            });
        }
        if state.invalid_outputs > 0 {
            report.quality.push(QualityFinding {
                kind: FindingKind::InvalidOutput,
                column: None,
                reference: Some(0.0),
                current: Some(state.invalid_outputs as f64 / state.rows as f64),
                message: format!(
                    "{} predictions with NaN or infinite outputs",
                    state.invalid_outputs
                ),
            });
        }
        let performance = state.outcomes.performance(&classes);
        let performance_rows = performance.as_ref().map(|p| p.labeled).filter(|&n| n > 0);
        summaries.push(WindowSummary {
            start_ms: *start,
            end_ms: start + options.window_ms,
            rows: state.rows,
            drifted: report.dataset.drifted,
            drifted_columns: report
                .columns
                .iter()
                .filter(|c| c.drifted)
                .map(|c| c.column.clone())
                .collect(),
            effects: report
                .columns
                .iter()
                .filter_map(|c| Some((c.column.clone(), c.effect_size?)))
                .collect(),
            quality: report.quality.clone(),
            performance,
            estimated_accuracy: (task != Some(Task::Regression) && state.confidence_rows > 0)
                .then(|| state.confidence_sum / state.confidence_rows as f64),
            label_lag_ms: performance_rows.map(|labeled| state.label_lag_sum_ms / labeled as f64),
            label_lag_max_ms: performance_rows.map(|_| state.label_lag_max_ms),
            joint: report.multivariate.as_ref().map(JointWindow::of),
        });
        latest = Some(report);
    }
    let latest = match latest {
        Some(report) => report,
        None => {
            let empty = reduced_reference.template();
            compare(&reduced_reference, &empty, &options.config)?
        }
    };
    let evaluation_headline = evaluation.map(|m| match m {
        Metrics::Classification(c) => c.accuracy,
        Metrics::Regression(r) => r.rmse,
    });
    Ok((
        latest,
        WindowedReport {
            model: options.model.clone(),
            window_ms: options.window_ms,
            windows: summaries,
            evaluation_headline,
            change_points,
            cbpe_assumption: if reference.calibration.is_some() {
                CBPE_ASSUMPTION_CALIBRATED
            } else {
                CBPE_ASSUMPTION
            }
            .into(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_hinkley_locates_a_rise_in_error_rate() {
        let mut detector = PageHinkley::new(0.005, 40.0);
        let mut rng = keel_learn::rng::Rng::new(3);
        let mut fired = None;
        for t in 0..4000i64 {
            let p = if t < 2000 { 0.1 } else { 0.4 };
            let x = f64::from(u8::from(rng.next_f64() < p));
            if let Some(start) = detector.push(x, t) {
                fired = Some((t, start));
                break;
            }
        }
        let (detected, started) = fired.expect("fires after the change");
        assert!(detected > 2000 && detected < 2500, "{detected}");
        assert!((1900..=2100).contains(&started), "{started}");
    }
}
