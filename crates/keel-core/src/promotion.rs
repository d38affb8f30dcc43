//! The promotion rule: a version moves to a protected alias only when its
//! recorded gates passed, or when a person forces it and says why.

use crate::{Error, ModelVersion};

/// What the recorded gate results of a version say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateStatus {
    Passed,
    Failed(String),
    Missing,
}

/// One gate's outcome, as `keel run` prints and records it (keel-pipeline's
/// `gates` evaluates; this is the one shape and the one reader of its JSON).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateResult {
    pub expression: String,
    /// The left side as written (usually a metric name).
    pub metric: String,
    pub value: Option<f64>,
    /// The right side's value.
    pub threshold: Option<f64>,
    /// The production model's value of the first `production.X` named, if any.
    pub production: Option<f64>,
    pub passed: bool,
    /// Why it failed or was not compared.
    pub note: Option<String>,
}

/// Recorded gate results: `{"passed": bool, "gates": [...]}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateResults {
    /// None when the JSON does not say.
    pub passed: Option<bool>,
    pub gates: Vec<GateResult>,
}

impl GateResults {
    /// Reads gate results from their JSON value; None unless it is an object.
    pub fn from_value(value: &serde_json::Value) -> Option<GateResults> {
        value.as_object()?;
        let text_of = |gate: &serde_json::Value, key: &str| {
            gate.get(key)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let number = |gate: &serde_json::Value, key: &str| gate.get(key).and_then(|v| v.as_f64());
        let gates = value
            .get("gates")
            .and_then(|g| g.as_array())
            .map(|gates| {
                gates
                    .iter()
                    .map(|gate| GateResult {
                        expression: text_of(gate, "expression"),
                        metric: text_of(gate, "metric"),
                        value: number(gate, "value"),
                        threshold: number(gate, "threshold"),
                        production: number(gate, "production"),
                        passed: gate.get("passed").and_then(|p| p.as_bool()) == Some(true),
                        note: gate
                            .get("note")
                            .and_then(|n| n.as_str())
                            .map(str::to_string),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(GateResults {
            passed: value.get("passed").and_then(|p| p.as_bool()),
            gates,
        })
    }
}

/// Parses recorded gate results; None when `text` is not a JSON object.
pub fn parse_gate_results(text: &str) -> Option<GateResults> {
    GateResults::from_value(&serde_json::from_str(text).ok()?)
}

/// Reads `gate_results` (`{"passed": bool, "gates": [...]}`) of a version.
pub fn gate_status(version: &ModelVersion) -> GateStatus {
    gate_text_status(version.gate_results.as_deref())
}

/// What recorded gate results say, from their stored text.
pub fn gate_text_status(gate_results: Option<&str>) -> GateStatus {
    let Some(text) = gate_results else {
        return GateStatus::Missing;
    };
    let Some(results) = parse_gate_results(text) else {
        return GateStatus::Failed("recorded gate results are not valid JSON".into());
    };
    match results.passed {
        Some(true) => GateStatus::Passed,
        Some(false) => {
            let failed: Vec<String> = results
                .gates
                .into_iter()
                .filter(|g| !g.passed && !g.expression.is_empty())
                .map(|g| g.expression)
                .collect();
            GateStatus::Failed(if failed.is_empty() {
                "gates failed".into()
            } else {
                failed.join(", ")
            })
        }
        None => GateStatus::Missing,
    }
}

/// Checks that `version` may be promoted; `force` needs a non-empty `reason`.
pub fn check_promotion(version: &ModelVersion, force: bool, reason: &str) -> Result<(), Error> {
    check_gate_text(
        &version.name,
        version.version,
        version.gate_results.as_deref(),
        force,
        reason,
    )
}

/// [`check_promotion`] on a version's stored gate results (what the store
/// re-reads inside the transaction that moves the alias).
pub fn check_gate_text(
    name: &str,
    version: i64,
    gate_results: Option<&str>,
    force: bool,
    reason: &str,
) -> Result<(), Error> {
    if force {
        if reason.trim().is_empty() {
            return Err(Error::invalid_parameter(
                "--force needs --reason \"...\": forced promotions are audited",
            ));
        }
        return Ok(());
    }
    match gate_text_status(gate_results) {
        GateStatus::Passed => Ok(()),
        GateStatus::Failed(which) => Err(Error::invalid_state(format!(
            "Refusing to promote {name} version {version}: its recorded gates failed ({which}). Use --force \
             --reason \"...\" to override."
        ))),
        GateStatus::Missing => Err(Error::invalid_state(format!(
            "Refusing to promote {name} version {version}: it has no recorded gate results. Run its pipeline's \
             gates, or use --force --reason \"...\"."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stage;

    fn version(gates: Option<&str>) -> ModelVersion {
        ModelVersion {
            name: "risk".into(),
            version: 3,
            creation_timestamp: 0,
            last_updated_timestamp: 0,
            description: String::new(),
            user_id: String::new(),
            current_stage: Stage::None,
            source: String::new(),
            run_id: None,
            run_link: None,
            model_id: None,
            status: "READY".into(),
            tags: vec![],
            aliases: vec![],
            signature: None,
            lineage: None,
            gate_results: gates.map(str::to_string),
        }
    }

    #[test]
    fn promotion_rule() {
        assert!(check_promotion(&version(Some(r#"{"passed": true}"#)), false, "").is_ok());
        let failed =
            r#"{"passed": false, "gates": [{"expression": "accuracy >= 0.9", "passed": false}]}"#;
        let error = check_promotion(&version(Some(failed)), false, "").unwrap_err();
        assert!(
            error.message.contains("accuracy >= 0.9"),
            "{}",
            error.message
        );
        assert!(
            check_promotion(&version(None), false, "")
                .unwrap_err()
                .message
                .contains("no recorded gate")
        );
        assert!(check_promotion(&version(None), true, "  ").is_err());
        assert!(
            check_promotion(
                &version(Some(failed)),
                true,
                "hotfix approved by risk committee"
            )
            .is_ok()
        );
    }
}
