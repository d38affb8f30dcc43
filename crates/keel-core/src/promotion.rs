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

/// Reads `gate_results` (`{"passed": bool, "gates": [...]}`) of a version.
pub fn gate_status(version: &ModelVersion) -> GateStatus {
    let Some(text) = version.gate_results.as_deref() else {
        return GateStatus::Missing;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return GateStatus::Failed("recorded gate results are not valid JSON".into());
    };
    match value.get("passed").and_then(|p| p.as_bool()) {
        Some(true) => GateStatus::Passed,
        Some(false) => {
            let failed: Vec<String> = value
                .get("gates")
                .and_then(|g| g.as_array())
                .map(|gates| {
                    gates
                        .iter()
                        .filter(|g| g.get("passed").and_then(|p| p.as_bool()) == Some(false))
                        .filter_map(|g| {
                            g.get("expression")
                                .and_then(|e| e.as_str())
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
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
    if force {
        if reason.trim().is_empty() {
            return Err(Error::invalid_parameter(
                "--force needs --reason \"...\": forced promotions are audited",
            ));
        }
        return Ok(());
    }
    match gate_status(version) {
        GateStatus::Passed => Ok(()),
        GateStatus::Failed(which) => Err(Error::invalid_state(format!(
            "Refusing to promote {} version {}: its recorded gates failed ({which}). Use --force --reason \"...\" \
             to override.",
            version.name, version.version
        ))),
        GateStatus::Missing => Err(Error::invalid_state(format!(
            "Refusing to promote {} version {}: it has no recorded gate results. Run its pipeline's gates, or use \
             --force --reason \"...\".",
            version.name, version.version
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
