//! What `keel monitor watch` keeps between evaluations: Prometheus gauges
//! of the latest window and the set of active alerts, so an alert is sent
//! once when it starts (deduplicated) and a recovery notice once when it
//! clears.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::drift::DriftReport;
use crate::window::WindowedReport;

/// An alert event for the sinks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// `firing` or `resolved`.
    pub status: &'static str,
    /// Stable identity, e.g. `drift:num_03` or `quality:missing_rate_change:num_07`.
    pub key: String,
    /// Model name.
    pub model: String,
    /// One line for people.
    pub message: String,
    /// Window the decision came from (Unix ms), if any.
    pub window_start_ms: Option<i64>,
}

/// Active alerts by key, and the conditions on their way to changing.
#[derive(Debug, Default)]
pub struct AlertState {
    active: BTreeMap<String, String>,
    /// Evaluations in a row a condition must hold before its alert fires,
    /// and be gone before it resolves (0 and 1: at once).
    confirm: u32,
    /// Key → evaluations in a row that disagreed with the active set (a
    /// new condition not yet firing, or an active one absent).
    streak: BTreeMap<String, u32>,
}

/// The conditions of a report, by key.
pub fn conditions(report: &DriftReport) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if report.dataset.drifted {
        out.insert(
            "drift:dataset".to_string(),
            format!("dataset drift: {}", report.dataset.rule),
        );
    }
    if let Some(joint) = report.multivariate.as_ref().filter(|j| j.drifted) {
        out.insert(
            "drift:joint".to_string(),
            format!(
                "joint distribution drifted (drivers {}): {}",
                joint.drivers.join(", "),
                joint.rule
            ),
        );
    }
    for column in report.columns.iter().filter(|c| c.drifted) {
        out.insert(
            format!("drift:{}", column.column),
            format!("{} drifted: {}", column.column, column.rule),
        );
    }
    for finding in &report.quality {
        let kind = serde_json::to_value(finding.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let key = format!(
            "quality:{kind}:{}",
            finding.column.as_deref().unwrap_or("*")
        );
        out.insert(key, finding.message.clone());
    }
    out
}

impl AlertState {
    /// The active alerts (key → message).
    pub fn active(&self) -> &BTreeMap<String, String> {
        &self.active
    }

    /// Conditions on their way to firing or resolving: key → evaluations
    /// in a row so far (see [`AlertState::with_confirmation`]).
    pub fn streaks(&self) -> &BTreeMap<String, u32> {
        &self.streak
    }

    /// Starts from alerts a previous watcher left active and the streaks it
    /// had counted (its last verdict), so a restart neither fires them
    /// again, nor forgets to resolve them, nor starts a confirmation over.
    pub fn restore(&mut self, active: BTreeMap<String, String>, streaks: BTreeMap<String, u32>) {
        self.active = active;
        self.streak = streaks;
    }

    /// Alerts fire only after their condition held for `evaluations`
    /// evaluations in a row, and resolve only after it was gone as long:
    /// a finding at the edge of its rule, re-tested at every evaluation,
    /// then pages once instead of at every crossing.
    pub fn with_confirmation(evaluations: u32) -> AlertState {
        AlertState {
            confirm: evaluations,
            ..AlertState::default()
        }
    }

    /// Compares the conditions now with the active alerts: new ones fire,
    /// ones that cleared resolve, continuing ones send nothing (each after
    /// the confirmation, see [`AlertState::with_confirmation`]).
    pub fn update(
        &mut self,
        model: &str,
        mut now: BTreeMap<String, String>,
        window_start_ms: Option<i64>,
    ) -> Vec<AlertEvent> {
        if self.confirm > 1 {
            // Disagreements with the active set count up; one that has not
            // lasted `confirm` evaluations is not acted on yet.
            let changed: Vec<String> = now
                .keys()
                .filter(|k| !self.active.contains_key(*k))
                .chain(self.active.keys().filter(|k| !now.contains_key(*k)))
                .cloned()
                .collect();
            self.streak.retain(|k, _| changed.contains(k));
            for key in changed {
                let streak = self.streak.entry(key.clone()).or_insert(0);
                *streak += 1;
                if *streak >= self.confirm {
                    self.streak.remove(&key);
                } else if let Some(message) = self.active.get(&key) {
                    now.insert(key, message.clone());
                } else {
                    now.remove(&key);
                }
            }
        }
        let mut events = Vec::new();
        for (key, message) in &now {
            if !self.active.contains_key(key) {
                events.push(AlertEvent {
                    status: "firing",
                    key: key.clone(),
                    model: model.to_string(),
                    message: message.clone(),
                    window_start_ms,
                });
            }
        }
        for (key, message) in &self.active {
            if !now.contains_key(key) {
                events.push(AlertEvent {
                    status: "resolved",
                    key: key.clone(),
                    model: model.to_string(),
                    message: format!("resolved: {message}"),
                    window_start_ms,
                });
            }
        }
        self.active = now;
        events
    }
}

fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition of the latest window.
pub fn gauges(model: &str, report: &DriftReport, windows: &WindowedReport) -> String {
    let m = label(model);
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{model=\"{m}\"{labels}}} {value}");
        }
    };
    let latest = windows.windows.last();
    gauge(
        "keel_monitor_window_rows",
        "Predictions in the latest window.",
        vec![(String::new(), latest.map_or(0.0, |w| w.rows as f64))],
    );
    gauge(
        "keel_monitor_dataset_drift",
        "1 when the drift policy fires on the latest window.",
        vec![(String::new(), f64::from(u8::from(report.dataset.drifted)))],
    );
    gauge(
        "keel_monitor_drifted_columns",
        "Columns drifted in the latest window.",
        vec![(String::new(), report.dataset.drifted_columns as f64)],
    );
    gauge(
        "keel_monitor_column_effect",
        "Drift effect size per column (W1/sd or debiased JS distance).",
        report
            .columns
            .iter()
            .filter_map(|c| Some((format!(",column=\"{}\"", label(&c.column)), c.effect_size?)))
            .collect(),
    );
    gauge(
        "keel_monitor_column_drift",
        "1 when the column drifted in the latest window.",
        report
            .columns
            .iter()
            .map(|c| {
                (
                    format!(",column=\"{}\"", label(&c.column)),
                    f64::from(u8::from(c.drifted)),
                )
            })
            .collect(),
    );
    if let Some(joint) = &report.multivariate {
        gauge(
            "keel_monitor_joint_drift",
            "1 when the joint (multivariate) test fires on the latest window.",
            vec![(String::new(), f64::from(u8::from(joint.drifted)))],
        );
        gauge(
            "keel_monitor_joint_error_change",
            "Relative change of the mean PCA reconstruction error vs the reference.",
            vec![(String::new(), joint.error_change)],
        );
    }
    let mut kinds: BTreeMap<String, f64> = BTreeMap::new();
    for finding in &report.quality {
        let kind = serde_json::to_value(finding.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        *kinds.entry(kind).or_default() += 1.0;
    }
    gauge(
        "keel_monitor_quality_findings",
        "Data-quality findings in the latest window, by kind.",
        kinds
            .into_iter()
            .map(|(k, v)| (format!(",kind=\"{k}\""), v))
            .collect(),
    );
    if let Some(performance) = latest.and_then(|w| w.performance.as_ref()) {
        let samples = performance
            .metrics_scalars()
            .into_iter()
            .map(|(name, value)| (format!(",metric=\"{name}\""), value))
            .collect();
        gauge(
            "keel_monitor_live_metric",
            "Live metric from feedback in the latest window.",
            samples,
        );
    }
    // Label lag: of the newest window with labels (the latest one often has
    // none yet, its labels are still to come).
    if let Some(window) = windows
        .windows
        .iter()
        .rev()
        .find(|w| w.label_lag_ms.is_some())
    {
        let mut samples = vec![(
            ",stat=\"mean\"".to_string(),
            window.label_lag_ms.unwrap_or(0.0) / 1000.0,
        )];
        if let Some(max) = window.label_lag_max_ms {
            samples.push((",stat=\"max\"".to_string(), max as f64 / 1000.0));
        }
        gauge(
            "keel_monitor_label_lag_seconds",
            "Time from a prediction to its feedback label, over the newest window with labels.",
            samples,
        );
        gauge(
            "keel_monitor_labeled_rows",
            "Labelled predictions in the newest window with labels.",
            vec![(
                String::new(),
                window
                    .performance
                    .as_ref()
                    .map_or(0.0, |p| p.labeled as f64),
            )],
        );
    }
    if let Some(estimate) = latest.and_then(|w| w.estimated_accuracy) {
        gauge(
            "keel_monitor_estimated_accuracy",
            "Label-free accuracy estimate (assumes calibration, no concept drift).",
            vec![(String::new(), estimate)],
        );
    }
    out
}

impl crate::window::Performance {
    /// Flat metric values.
    pub fn metrics_scalars(&self) -> Vec<(&'static str, f64)> {
        self.metrics.scalars()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_fire_once_and_resolve() {
        let mut state = AlertState::default();
        let now = |keys: &[&str]| {
            keys.iter()
                .map(|k| (k.to_string(), format!("{k} happened")))
                .collect()
        };
        let first = state.update("m", now(&["drift:a", "drift:dataset"]), None);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|e| e.status == "firing"));
        assert!(
            state
                .update("m", now(&["drift:a", "drift:dataset"]), None)
                .is_empty()
        );
        let later = state.update("m", now(&["drift:a"]), Some(5));
        assert_eq!(later.len(), 1);
        assert_eq!(
            (later[0].status, later[0].key.as_str()),
            ("resolved", "drift:dataset")
        );
    }

    #[test]
    fn a_confirmed_alert_ignores_single_evaluation_blips() {
        let mut state = AlertState::with_confirmation(2);
        let now = |keys: &[&str]| -> BTreeMap<String, String> {
            keys.iter()
                .map(|k| (k.to_string(), format!("{k} happened")))
                .collect()
        };
        let statuses = |events: Vec<AlertEvent>| -> Vec<(&'static str, String)> {
            events.into_iter().map(|e| (e.status, e.key)).collect()
        };
        // A finding at its rule's edge: present one evaluation in three.
        for _ in 0..3 {
            assert!(state.update("m", now(&["quality:x"]), None).is_empty());
            assert!(state.update("m", now(&[]), None).is_empty());
            assert!(state.update("m", now(&[]), None).is_empty());
        }
        // A drift that lasts fires at its second evaluation, once.
        assert!(state.update("m", now(&["drift:dataset"]), None).is_empty());
        assert_eq!(
            statuses(state.update("m", now(&["drift:dataset"]), None)),
            [("firing", "drift:dataset".to_string())]
        );
        assert!(state.update("m", now(&["drift:dataset"]), None).is_empty());
        // One clean evaluation in the middle of it does not resolve it ...
        assert!(state.update("m", now(&[]), None).is_empty());
        assert!(state.update("m", now(&["drift:dataset"]), None).is_empty());
        // ... two in a row do, once.
        assert!(state.update("m", now(&[]), None).is_empty());
        assert_eq!(
            statuses(state.update("m", now(&[]), None)),
            [("resolved", "drift:dataset".to_string())]
        );
        assert!(state.update("m", now(&[]), None).is_empty());
        assert!(state.active().is_empty());

        // A restart in the middle of a confirmation continues it: the
        // drift seen once before the restart fires at its second evaluation.
        assert!(state.update("m", now(&["drift:dataset"]), None).is_empty());
        let mut restarted = AlertState::with_confirmation(2);
        restarted.restore(state.active().clone(), state.streaks().clone());
        assert_eq!(
            statuses(restarted.update("m", now(&["drift:dataset"]), None)),
            [("firing", "drift:dataset".to_string())]
        );
    }
}
