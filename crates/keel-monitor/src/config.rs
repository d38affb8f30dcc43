//! The `monitor:` section of keel.yaml, typed. keel.yaml is read once, by
//! keel-pipeline (`KeelYaml`), which hands this section's node to
//! [`MonitorConfig::from_node`]; a field the section does not have is an
//! error at its line and column, like everywhere else in the file.
//!
//! ```yaml
//! monitor:
//!   model: risk@production
//!   window: 1h
//!   drift: {min_effect: 0.1, alpha: 0.01, columns: {income: {min_effect: 0.2}}}
//!   alerts: [{webhook: http://127.0.0.1:9000/hook}, {log: true}]
//!   on_drift: {action: retrain, train: data/train.csv, test: data/test.csv, cooldown: 10m}
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_yaml::{Node, YamlError};
use serde::{Deserialize, Serialize};

use crate::drift::DriftConfig;
use crate::error::MonitorError;

/// Where alerts go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSink {
    /// `{webhook: URL}`: POST a JSON body to this URL (http only).
    Webhook(String),
    /// `{log: true}`: write alerts to the log (stderr).
    Log(bool),
}

/// `monitor:` of keel.yaml.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// `NAME` or `NAME@alias`.
    pub model: Option<String>,
    /// Window length, e.g. `1h` (keel-core's duration format: a unit is required).
    #[serde(
        with = "keel_core::duration::serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub window: Option<Duration>,
    /// Drift policy.
    pub drift: DriftConfig,
    /// Alert sinks.
    pub alerts: Vec<AlertSink>,
    /// What a drift verdict triggers; carried out by the CLI, not by this crate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_drift: Option<OnDrift>,
}

/// What `on_drift` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftAction {
    /// Only alert (the sinks above).
    #[default]
    Alert,
    /// Retrain on recent labelled traffic and run the gated pipeline.
    Retrain,
}

/// Who moves the alias after a retrained version passes its gates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Promote {
    /// The pipeline's `register:` alias moves at once.
    #[default]
    Auto,
    /// The version waits for a person (`keel models promote`).
    Approval,
}

/// `monitor.on_drift`: the Level 2 action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnDrift {
    /// `alert` (default) or `retrain`.
    pub action: DriftAction,
    /// Pipeline training data the labelled traffic replaces.
    pub train: PathBuf,
    /// Pipeline test data (the held-out part of the labelled traffic).
    pub test: PathBuf,
    /// Share of the labelled rows held out as test data.
    pub test_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// Fewest labelled rows worth retraining on.
    pub min_rows: usize,
    /// `auto` or `approval`.
    pub promote: Promote,
    /// Quiet time after an action, e.g. `10m` (none by default).
    #[serde(
        with = "keel_core::duration::serde",
        skip_serializing_if = "Duration::is_zero"
    )]
    pub cooldown: Duration,
}

impl Default for OnDrift {
    fn default() -> Self {
        OnDrift {
            action: DriftAction::Alert,
            train: PathBuf::from("data/train.csv"),
            test: PathBuf::from("data/test.csv"),
            test_fraction: 0.25,
            seed: 0,
            min_rows: 200,
            promote: Promote::Auto,
            cooldown: Duration::ZERO,
        }
    }
}

impl MonitorConfig {
    /// Reads the `monitor:` node of keel.yaml (`file`): unknown fields and
    /// wrong types are errors at their line and column, and so are settings
    /// out of range.
    pub fn from_node(node: &Node, file: &Path) -> Result<MonitorConfig, YamlError> {
        let config: MonitorConfig = keel_yaml::from_node(node, file)?;
        config.drift.validate().map_err(|error| match &error {
            MonitorError::Config { field, .. } => {
                YamlError::new(file, position(node, field), error.to_string())
            }
            _ => YamlError::new(file, node.pos, error.to_string()),
        })?;
        if let Some(on_drift) = &config.on_drift
            && !(0.0..1.0).contains(&on_drift.test_fraction)
        {
            return Err(YamlError::new(
                file,
                position(node, "monitor.on_drift.test_fraction"),
                format!(
                    "invalid setting monitor.on_drift.test_fraction: {} is outside [0, 1)",
                    on_drift.test_fraction
                ),
            ));
        }
        Ok(config)
    }
}

/// Where the setting `monitor.a.b` is written below the `monitor:` node (the
/// deepest part found).
fn position(monitor: &Node, field: &str) -> keel_yaml::Pos {
    let mut node = monitor;
    for part in field.split('.').skip(1) {
        match node
            .as_map(Path::new(""))
            .ok()
            .and_then(|m| keel_yaml::get(m, part))
        {
            Some(child) => node = child,
            None => break,
        }
    }
    node.pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<MonitorConfig, YamlError> {
        let file = Path::new("keel.yaml");
        let doc = keel_yaml::parse(text, file)?;
        MonitorConfig::from_node(&doc, file)
    }

    #[test]
    fn reads_the_monitor_section() {
        let text = "model: risk@production\nwindow: 1h\ndrift: {min_effect: 0.1, alpha: 0.01, columns: {income: {min_effect: 0.2}}}\nalerts: [{webhook: 'http://127.0.0.1:9000/hook'}, {log: true}]\non_drift: {action: retrain, min_rows: 50}\n";
        let config = read(text).unwrap();
        assert_eq!(config.model.as_deref(), Some("risk@production"));
        assert_eq!(config.drift.alpha, 0.01);
        assert_eq!(config.drift.columns["income"].min_effect, Some(0.2));
        assert_eq!(
            config.alerts,
            [
                AlertSink::Webhook("http://127.0.0.1:9000/hook".into()),
                AlertSink::Log(true)
            ]
        );
        let on_drift = config.on_drift.unwrap();
        assert_eq!(on_drift.action, DriftAction::Retrain);
        assert_eq!((on_drift.min_rows, on_drift.test_fraction), (50, 0.25));
        assert_eq!(on_drift.train, Path::new("data/train.csv"));
        assert_eq!(config.window, Some(Duration::from_secs(3600)));
        assert_eq!(
            read("on_drift: {cooldown: 10m}\n")
                .unwrap()
                .on_drift
                .unwrap()
                .cooldown,
            Duration::from_secs(600)
        );
        assert_eq!(read("").unwrap(), MonitorConfig::default());
        // The joint test's thresholds, and a typo in them named.
        let joint = read("drift: {multivariate: {min_error_change: 0.2, enabled: false}}\n")
            .unwrap()
            .drift
            .multivariate;
        assert_eq!((joint.min_error_change, joint.enabled), (0.2, false));
        assert_eq!(joint.min_correlation_change, 0.2);
        let error = read("drift: {multivariate: {min_eror_change: 0.2}}\n").unwrap_err();
        assert!(error.to_string().contains("min_eror_change"), "{error}");
    }

    #[test]
    fn typos_and_ranges_are_errors_at_their_line_and_column() {
        let message = |text: &str| read(text).unwrap_err().to_string();
        assert_eq!(
            message("model: risk\nmodle: risk\n"),
            "keel.yaml:2:1: unknown field `modle`, expected one of `model`, `window`, `drift`, `alerts`, `on_drift`"
        );
        assert!(
            message("drift: {min_efect: 0.2}\n")
                .starts_with("keel.yaml:1:9: unknown field `min_efect`"),
            "{}",
            message("drift: {min_efect: 0.2}\n")
        );
        assert_eq!(
            message("drift:\n  alpha: 2\n"),
            "keel.yaml:2:10: invalid setting monitor.drift.alpha: 2 is outside [0, 1]"
        );
        assert!(message("on_drift: {action: retrian}\n").contains("unknown variant `retrian`"));
        assert!(message("on_drift: {promote: later}\n").contains("expected `auto` or `approval`"));
        assert_eq!(
            message("on_drift:\n  test_fraction: 1.5\n"),
            "keel.yaml:2:18: invalid setting monitor.on_drift.test_fraction: 1.5 is outside [0, 1)"
        );
        assert!(message("alerts: [{email: a@b}]\n").contains("unknown variant `email`"));
        // A duration needs its unit: a bare number was milliseconds here
        // and seconds in `keel loadtest`.
        assert_eq!(
            message("window: 3600\n"),
            "keel.yaml:1:9: `3600` has no unit (expected a duration with a unit, such as 250ms, 30s, 10m or 1h)"
        );
        assert!(
            message("on_drift:\n  cooldown: ten minutes\n")
                .starts_with("keel.yaml:2:13: `ten minutes`: "),
            "{}",
            message("on_drift:\n  cooldown: ten minutes\n")
        );
    }
}
