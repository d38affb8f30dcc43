//! The `monitor:` section of keel.yaml (the rest of the file belongs to the
//! pipeline and is ignored here).
//!
//! ```yaml
//! monitor:
//!   model: risk@production
//!   window: 1h
//!   drift: {min_effect: 0.1, alpha: 0.01, columns: {income: {min_effect: 0.2}}}
//!   alerts: [{webhook: http://127.0.0.1:9000/hook}, {log: true}]
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::drift::DriftConfig;
use crate::error::{MonitorError, Result};

/// Where alerts go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AlertSink {
    /// POST a JSON body to this URL (http only).
    Webhook {
        /// The URL.
        webhook: String,
    },
    /// Write alerts to the log (stderr).
    Log {
        /// Always true.
        log: bool,
    },
}

/// `monitor:` of keel.yaml.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorConfig {
    /// `NAME` or `NAME@alias`.
    pub model: Option<String>,
    /// Window length, e.g. `1h`.
    pub window: Option<String>,
    /// Drift policy.
    pub drift: DriftConfig,
    /// Alert sinks.
    pub alerts: Vec<AlertSink>,
    /// The retrain action; carried out by the pipeline, not by this crate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_drift: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
struct KeelYaml {
    #[serde(default)]
    monitor: Option<MonitorConfig>,
}

impl MonitorConfig {
    /// Reads the `monitor:` section of a keel.yaml (defaults when absent).
    pub fn from_keel_yaml(path: &Path) -> Result<MonitorConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| MonitorError::io(path, e))?;
        Self::from_yaml_str(&text).map_err(|message| MonitorError::file(path, message))
    }

    /// Parses keel.yaml text; the error names the offending field.
    pub fn from_yaml_str(text: &str) -> std::result::Result<MonitorConfig, String> {
        let parsed: KeelYaml = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let config = parsed.monitor.unwrap_or_default();
        config.drift.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_monitor_section_and_ignores_the_rest() {
        let text = "stages:\n  train: {cmd: keel train}\nmonitor:\n  model: risk@production\n  window: 1h\n  drift: {min_effect: 0.1, alpha: 0.01, columns: {income: {min_effect: 0.2}}}\n  alerts: [{webhook: 'http://127.0.0.1:9000/hook'}, {log: true}]\n  on_drift: {action: retrain}\n";
        let config = MonitorConfig::from_yaml_str(text).unwrap();
        assert_eq!(config.model.as_deref(), Some("risk@production"));
        assert_eq!(config.drift.alpha, 0.01);
        assert_eq!(config.drift.columns["income"].min_effect, Some(0.2));
        assert_eq!(config.alerts.len(), 2);
        assert!(
            matches!(&config.alerts[0], AlertSink::Webhook { webhook } if webhook.ends_with("/hook"))
        );
        let bad = MonitorConfig::from_yaml_str("monitor:\n  drift: {alpha: 2}\n").unwrap_err();
        assert!(bad.contains("monitor.drift.alpha"), "{bad}");
        let typo =
            MonitorConfig::from_yaml_str("monitor:\n  drift: {min_efect: 0.2}\n").unwrap_err();
        assert!(typo.contains("min_efect"), "{typo}");
        assert_eq!(
            MonitorConfig::from_yaml_str("stages: {}\n").unwrap(),
            MonitorConfig::default()
        );
    }
}
