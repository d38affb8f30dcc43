//! Data-quality findings, kept apart from drift: a change in the missing
//! share, values outside the reference range, unknown categories, type
//! violations, infinities, all-missing columns and empty data. Each finding
//! carries the reference and current rates it was decided on.

use serde::{Deserialize, Serialize};

use crate::drift::DriftConfig;
use crate::profile::{ColumnProfile, ColumnStats, Profile};
use crate::stats::two_proportion_p;

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The current data has no rows.
    EmptyData,
    /// A column present in the reference has no value in the current data.
    AllMissing,
    /// A column expected by the model is absent.
    MissingColumn,
    /// The share of null + NaN values changed.
    MissingRateChange,
    /// Values outside the reference (training) range.
    OutOfRange,
    /// Categories the reference never saw.
    UnknownCategories,
    /// Text in a numeric column.
    TypeViolations,
    /// ±inf values where the reference had none.
    Infinite,
    /// NaN or ±inf in model outputs.
    InvalidOutput,
}

/// One data-quality finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityFinding {
    /// What kind.
    pub kind: FindingKind,
    /// The column, when it is about one.
    pub column: Option<String>,
    /// Rate in the reference.
    pub reference: Option<f64>,
    /// Rate in the current data.
    pub current: Option<f64>,
    /// One line for people.
    pub message: String,
}

fn finding(
    kind: FindingKind,
    column: &str,
    reference: Option<f64>,
    current: Option<f64>,
    message: String,
) -> QualityFinding {
    QualityFinding {
        kind,
        column: Some(column.to_string()),
        reference,
        current,
        message,
    }
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Quality findings of `current` against `reference` (matched by column name).
pub fn findings(
    reference: &Profile,
    current: &Profile,
    config: &DriftConfig,
) -> Vec<QualityFinding> {
    let mut out = Vec::new();
    if current.rows == 0 {
        out.push(QualityFinding {
            kind: FindingKind::EmptyData,
            column: None,
            reference: Some(reference.rows as f64),
            current: Some(0.0),
            message: "the current data has no rows".into(),
        });
        return out;
    }
    for r in &reference.columns {
        let Some(c) = current.column(&r.name) else {
            out.push(finding(
                FindingKind::MissingColumn,
                &r.name,
                None,
                None,
                format!("column {} is missing", r.name),
            ));
            continue;
        };
        column_findings(r, c, config, &mut out);
    }
    out
}

/// Findings for one column.
pub fn column_findings(
    r: &ColumnProfile,
    c: &ColumnProfile,
    config: &DriftConfig,
    out: &mut Vec<QualityFinding>,
) {
    let name = &r.name;
    if c.count > 0 && c.missing() == c.count {
        out.push(finding(
            FindingKind::AllMissing,
            name,
            Some(rate(r.missing(), r.count)),
            Some(1.0),
            format!("{name}: every one of {} values is missing", c.count),
        ));
    } else {
        let (rm, cm) = (rate(r.missing(), r.count), rate(c.missing(), c.count));
        let p = two_proportion_p(r.missing(), r.count, c.missing(), c.count);
        if (cm - rm).abs() >= config.max_missing_change && p < config.alpha {
            out.push(finding(
                FindingKind::MissingRateChange,
                name,
                Some(rm),
                Some(cm),
                format!(
                    "{name}: missing (null + NaN) share {:.2}% -> {:.2}% (p {})",
                    rm * 100.0,
                    cm * 100.0,
                    crate::drift::format_p(p)
                ),
            ));
        }
    }
    let present = c.count - c.nulls;
    if c.types.texts > 0 && matches!(c.stats, ColumnStats::Numeric(_)) {
        out.push(finding(
            FindingKind::TypeViolations,
            name,
            Some(rate(r.types.texts, r.count - r.nulls)),
            Some(rate(c.types.texts, present)),
            format!(
                "{name}: {} non-numeric values in a numeric column",
                c.types.texts
            ),
        ));
    }
    match (&r.stats, &c.stats) {
        (ColumnStats::Numeric(rs), ColumnStats::Numeric(cs)) => {
            let (r_inf, c_inf) = (rs.pos_inf + rs.neg_inf, cs.pos_inf + cs.neg_inf);
            if c_inf > 0 && r_inf == 0 {
                out.push(finding(
                    FindingKind::Infinite,
                    name,
                    Some(0.0),
                    Some(rate(c_inf, c.count)),
                    format!("{name}: {c_inf} infinite values (none in the reference)"),
                ));
            }
            if let Some(bounds) = cs.bounds {
                let outside = bounds.below + bounds.above;
                let share = rate(outside, cs.finite());
                if outside > 0 && share > config.max_out_of_range {
                    out.push(finding(
                        FindingKind::OutOfRange,
                        name,
                        Some(0.0),
                        Some(share),
                        format!(
                            "{name}: {:.2}% of values outside the reference range [{}, {}] ({} below, {} above)",
                            share * 100.0,
                            bounds.low,
                            bounds.high,
                            bounds.below,
                            bounds.above
                        ),
                    ));
                }
            }
        }
        (ColumnStats::Categorical(rs), ColumnStats::Categorical(cs)) if rs.other == 0 => {
            let unknown: u64 = cs
                .counts
                .iter()
                .filter(|(k, _)| !rs.counts.contains_key(*k))
                .map(|(_, v)| *v)
                .sum::<u64>()
                + cs.other;
            let share = rate(unknown, cs.present());
            // Under no change, the share of values from categories the reference
            // did not happen to contain is about the share of reference
            // singletons (Good-Turing); only an excess over that is a finding.
            let singletons = rs.counts.values().filter(|&&n| n == 1).count() as u64;
            let expected = rate(singletons, rs.present());
            let excess = share - expected;
            let z = if expected > 0.0 {
                excess / (expected * (1.0 - expected) / cs.present().max(1) as f64).sqrt()
            } else {
                f64::INFINITY
            };
            if unknown > 0 && excess > config.max_unknown_share && z > 3.0 {
                let mut examples: Vec<(&str, u64)> = crate::profile::sorted_counts(&cs.counts)
                    .into_iter()
                    .filter(|(k, _)| !rs.counts.contains_key(*k))
                    .take(5)
                    .collect();
                examples.truncate(5);
                let names: Vec<&str> = examples.iter().map(|e| e.0).collect();
                out.push(finding(
                    FindingKind::UnknownCategories,
                    name,
                    Some(expected),
                    Some(share),
                    format!(
                        "{name}: {:.2}% of values are categories the reference never saw (expected {:.2}% from its rare categories; e.g. {})",
                        share * 100.0,
                        expected * 100.0,
                        names.join(", ")
                    ),
                ));
            }
        }
        _ => {}
    }
}
