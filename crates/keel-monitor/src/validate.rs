//! Feature validation for the training pipeline: compares new training
//! data with the production model's stored training profile before a new
//! model is trained on it. Per feature: summary-statistic changes and the
//! drift verdict; pairwise correlation changes; the label balance. Every
//! check has a threshold in [`ValidationConfig`] and the report says which
//! fired.

use std::collections::BTreeMap;

use keel_table::Table;
use serde::{Deserialize, Serialize};

use crate::drift::{DriftConfig, DriftReport, compare};
use crate::error::Result;
use crate::profile::{ColumnProfile, ColumnStats, Profile};

/// Thresholds of [`validate_training_data`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// Drift policy for the per-feature verdicts.
    pub drift: DriftConfig,
    /// Flag a numeric feature whose mean moved by more than this many reference σ.
    pub max_mean_shift: f64,
    /// Flag a numeric feature whose σ changed by more than this factor (e.g. 0.25 = ±25 %).
    pub max_std_change: f64,
    /// Flag a change of the missing share larger than this (absolute).
    pub max_missing_change: f64,
    /// Flag a pairwise correlation that moved by more than this (absolute).
    pub max_correlation_change: f64,
    /// Flag a class whose share moved by more than this (absolute).
    pub max_label_share_change: f64,
    /// Fail validation when any feature drifts (in addition to the checks above).
    pub fail_on_drift: bool,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            drift: DriftConfig::default(),
            max_mean_shift: 0.25,
            max_std_change: 0.25,
            max_missing_change: 0.05,
            max_correlation_change: 0.2,
            max_label_share_change: 0.1,
            fail_on_drift: true,
        }
    }
}

/// Summary statistics of one feature in one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Share of missing values.
    pub missing_share: f64,
    /// Mean (numeric).
    pub mean: Option<f64>,
    /// Standard deviation (numeric).
    pub std: Option<f64>,
    /// Smallest value (numeric).
    pub min: Option<f64>,
    /// Largest value (numeric).
    pub max: Option<f64>,
    /// Distinct values (categorical).
    pub cardinality: Option<f64>,
}

fn summary(column: &ColumnProfile) -> Summary {
    let missing_share = if column.count == 0 {
        0.0
    } else {
        column.missing() as f64 / column.count as f64
    };
    match &column.stats {
        ColumnStats::Numeric(s) => Summary {
            missing_share,
            mean: (s.finite() > 0).then_some(s.moments.mean),
            std: (s.finite() > 0).then(|| s.moments.std()),
            min: s.min,
            max: s.max,
            cardinality: None,
        },
        ColumnStats::Categorical(s) => Summary {
            missing_share,
            mean: None,
            std: None,
            min: None,
            max: None,
            cardinality: Some(s.cardinality()),
        },
    }
}

/// How one feature changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureChange {
    /// Column name.
    pub column: String,
    /// In the production model's training data.
    pub reference: Summary,
    /// In the new training data.
    pub candidate: Summary,
    /// Mean shift in reference σ (numeric).
    pub mean_shift_sd: Option<f64>,
    /// σ(candidate) / σ(reference) − 1 (numeric).
    pub std_change: Option<f64>,
    /// Whether any check fired.
    pub flagged: bool,
    /// Which checks fired.
    pub reasons: Vec<String>,
}

/// How one correlation changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrelationChange {
    /// First column.
    pub a: String,
    /// Second column.
    pub b: String,
    /// Pearson correlation in the reference.
    pub reference: f64,
    /// In the candidate.
    pub candidate: f64,
    /// Whether the change exceeds the threshold.
    pub flagged: bool,
}

/// Class shares of the label column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelBalance {
    /// Label column.
    pub column: String,
    /// Share per class in the reference.
    pub reference: BTreeMap<String, f64>,
    /// Share per class in the candidate.
    pub candidate: BTreeMap<String, f64>,
    /// Largest absolute change of a class share.
    pub max_change: f64,
    /// Whether it exceeds the threshold.
    pub flagged: bool,
}

/// The outcome of feature validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// True when no check failed.
    pub passed: bool,
    /// Why it failed, one line each.
    pub problems: Vec<String>,
    /// Per-feature changes.
    pub features: Vec<FeatureChange>,
    /// Drift verdicts and quality findings per feature.
    pub drift: DriftReport,
    /// Correlations of numeric pairs (largest change first).
    pub correlations: Vec<CorrelationChange>,
    /// Label balance, when a label column is given.
    pub label_balance: Option<LabelBalance>,
    /// The thresholds used.
    pub settings: ValidationConfig,
}

fn shares(column: &ColumnProfile) -> BTreeMap<String, f64> {
    let present = (column.count - column.missing()).max(1) as f64;
    match &column.stats {
        ColumnStats::Categorical(s) => s
            .counts
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64 / present))
            .collect(),
        // A numeric label (0/1 classes): its classes are the histogram's distinct values,
        // which the profile does not keep exactly; report the mean as the positive share.
        ColumnStats::Numeric(s) => BTreeMap::from([("mean".to_string(), s.moments.mean)]),
    }
}

/// Compares `candidate` (new training data) with `reference` (the production
/// model's `profile.json`). Columns of the reference that the candidate lacks
/// (other than model outputs `output.*`) fail validation; columns only in the
/// candidate are reported and left out of the comparison.
pub fn validate_training_data(
    reference: &Profile,
    candidate: &Table,
    label: Option<&str>,
    config: &ValidationConfig,
) -> Result<ValidationReport> {
    let mut problems = Vec::new();
    let mut reference = reference.clone();
    reference.columns.retain(|c| !c.name.starts_with("output."));
    for column in &reference.columns {
        if candidate.column(&column.name).is_none() {
            problems.push(format!(
                "column {} is missing from the new training data",
                column.name
            ));
        }
    }
    reference
        .columns
        .retain(|c| candidate.column(&c.name).is_some());
    for name in candidate.names() {
        if reference.column(name).is_none() {
            problems.push(format!(
                "column {name} is new (not in the production model's training data)"
            ));
        }
    }
    let mut current = Profile::from_table(candidate, Some(&reference));
    current
        .columns
        .retain(|c| reference.column(&c.name).is_some());
    let drift = compare(&reference, &current, &config.drift)?;
    let mut features = Vec::new();
    for r in &reference.columns {
        let Some(c) = current.column(&r.name) else {
            continue;
        };
        let (rs, cs) = (summary(r), summary(c));
        let mut reasons = Vec::new();
        let mean_shift_sd = match (rs.mean, cs.mean, rs.std) {
            (Some(a), Some(b), Some(sd)) if sd > 0.0 => Some((b - a) / sd),
            _ => None,
        };
        let std_change = match (rs.std, cs.std) {
            (Some(a), Some(b)) if a > 0.0 => Some(b / a - 1.0),
            _ => None,
        };
        if mean_shift_sd.is_some_and(|m| m.abs() > config.max_mean_shift) {
            reasons.push(format!("mean moved {:.3} sd", mean_shift_sd.unwrap_or(0.0)));
        }
        if std_change.is_some_and(|s| s.abs() > config.max_std_change) {
            reasons.push(format!(
                "sd changed {:+.1}%",
                std_change.unwrap_or(0.0) * 100.0
            ));
        }
        if (cs.missing_share - rs.missing_share).abs() > config.max_missing_change {
            reasons.push(format!(
                "missing share {:.3} -> {:.3}",
                rs.missing_share, cs.missing_share
            ));
        }
        let drifted = drift
            .columns
            .iter()
            .find(|v| v.column == r.name && v.drifted);
        if let Some(verdict) = drifted.filter(|_| config.fail_on_drift) {
            reasons.push(format!("drifted: {}", verdict.rule));
        }
        if !reasons.is_empty() && Some(r.name.as_str()) != label {
            problems.push(format!("{}: {}", r.name, reasons.join("; ")));
        }
        features.push(FeatureChange {
            column: r.name.clone(),
            reference: rs,
            candidate: cs,
            mean_shift_sd,
            std_change,
            flagged: !reasons.is_empty(),
            reasons,
        });
    }
    let mut correlations = Vec::new();
    if let (Some(a), Some(b)) = (&reference.correlations, &current.correlations) {
        for (i, x) in a.columns.iter().enumerate() {
            for y in &a.columns[i + 1..] {
                if Some(x.as_str()) == label || Some(y.as_str()) == label {
                    continue;
                }
                if let (Some(r), Some(c)) = (a.correlation(x, y), b.correlation(x, y)) {
                    let flagged = (c - r).abs() > config.max_correlation_change;
                    if flagged {
                        problems.push(format!("correlation of {x} and {y}: {r:.3} -> {c:.3}"));
                    }
                    correlations.push(CorrelationChange {
                        a: x.clone(),
                        b: y.clone(),
                        reference: r,
                        candidate: c,
                        flagged,
                    });
                }
            }
        }
        correlations.sort_by(|p, q| {
            (q.candidate - q.reference)
                .abs()
                .total_cmp(&(p.candidate - p.reference).abs())
        });
    }
    let label_balance = label.and_then(|name| {
        let (r, c) = (reference.column(name)?, current.column(name)?);
        let (rs, cs) = (shares(r), shares(c));
        let max_change = rs
            .keys()
            .chain(cs.keys())
            .map(|k| (rs.get(k).unwrap_or(&0.0) - cs.get(k).unwrap_or(&0.0)).abs())
            .fold(0.0, f64::max);
        let flagged = max_change > config.max_label_share_change;
        if flagged {
            problems.push(format!(
                "label {name}: a class share moved by {max_change:.3}"
            ));
        }
        Some(LabelBalance {
            column: name.to_string(),
            reference: rs,
            candidate: cs,
            max_change,
            flagged,
        })
    });
    Ok(ValidationReport {
        passed: problems.is_empty(),
        problems,
        features,
        drift,
        correlations,
        label_balance,
        settings: config.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_learn::rng::Rng;
    use keel_table::Column;

    fn table(n: usize, shift: f64, correlated: bool, positive_share: f64, seed: u64) -> Table {
        let mut rng = Rng::new(seed);
        let a: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let b: Vec<f64> = a
            .iter()
            .map(|x| if correlated { x + 0.3 * rng.normal() } else { rng.normal() } + shift)
            .collect();
        let label: Vec<Option<String>> = (0..n)
            .map(|_| {
                Some(
                    if rng.next_f64() < positive_share {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_string(),
                )
            })
            .collect();
        Table::new(
            vec!["a".into(), "b".into(), "label".into()],
            vec![
                Column::Numeric(a),
                Column::Numeric(b),
                Column::Categorical(label),
            ],
        )
        .unwrap()
    }

    #[test]
    fn passes_on_the_same_distribution_and_names_what_changed() {
        let reference = Profile::from_table(&table(5000, 0.0, true, 0.3, 1), None);
        let config = ValidationConfig::default();
        let same = validate_training_data(
            &reference,
            &table(5000, 0.0, true, 0.3, 2),
            Some("label"),
            &config,
        )
        .unwrap();
        assert!(same.passed, "{:?}", same.problems);
        assert_eq!(same.correlations.len(), 1);
        assert!(
            (same.correlations[0].reference - 0.958).abs() < 0.01,
            "{:?}",
            same.correlations
        );

        let changed = validate_training_data(
            &reference,
            &table(5000, 0.5, false, 0.6, 3),
            Some("label"),
            &config,
        )
        .unwrap();
        assert!(!changed.passed);
        let text = changed.problems.join("\n");
        assert!(text.contains("b: mean moved"), "{text}");
        assert!(text.contains("correlation of a and b"), "{text}");
        assert!(text.contains("label label: a class share moved"), "{text}");
        assert!(!text.contains("\na:"), "{text}");
        assert!(changed.label_balance.as_ref().is_some_and(|l| l.flagged));
    }
}
