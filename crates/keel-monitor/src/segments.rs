//! Segments: drift and live metrics per value of one categorical column
//! (e.g. `region`).
//!
//! The rule (one owner, used by file and log mode): a value is a segment
//! when it has at least `min_rows` rows on every side compared (reference
//! and current in file mode; labelled rows in log mode); of those, the
//! `max_segments` largest (by rows, ties by value) are reported. Every other
//! value is skipped, counted and listed (the largest [`SKIPPED_LISTED`]
//! first) with the reason; rows whose value is missing belong to no segment.
//!
//! Multiple testing: the segments' drift comparisons run at `alpha / m`
//! (Bonferroni over the `m` segments tested; every per-column alpha
//! override is divided too), so that with no shift the probability that any
//! segment alarms stays at most the family's `alpha`. Bonferroni rather
//! than Holm because a drift report has no single dataset-level p-value
//! (its verdict combines column tests, a share rule and the joint test).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::Path;

use keel_chart::escape;
use keel_learn::model::Signature;
use keel_predlog::LogReader;
use keel_table::Table;
use serde::{Deserialize, Serialize};

use crate::drift::{ColumnSettings, DriftConfig, compare, format_p};
use crate::error::{MonitorError, Result};
use crate::profile::Profile;
use crate::window::{Outcomes, Performance, Scoring, Source, probability_columns, target_scale};

/// Default smallest number of rows a segment has on each side.
pub const DEFAULT_MIN_ROWS: u64 = 100;
/// Default largest number of segments reported.
pub const DEFAULT_MAX_SEGMENTS: usize = 50;
/// Skipped values listed by name (the rest are only counted).
pub const SKIPPED_LISTED: usize = 100;
/// Distinct values tracked in log mode; rows of further values are counted
/// as untracked (a bound on memory for a column with many values).
pub const MAX_TRACKED_VALUES: usize = 10_000;

/// Which column segments the data and which values are reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRule {
    /// The segmenting column (categorical; numbers are taken as labels).
    pub column: String,
    /// Smallest number of rows on each side.
    pub min_rows: u64,
    /// Most segments reported (the largest).
    pub max_segments: usize,
}

impl SegmentRule {
    /// The rule with the default bounds.
    pub fn new(column: &str) -> Self {
        SegmentRule {
            column: column.to_string(),
            min_rows: DEFAULT_MIN_ROWS,
            max_segments: DEFAULT_MAX_SEGMENTS,
        }
    }

    /// Splits the values seen (`sides[s][value]` = rows of side `s`) into
    /// the segments reported, largest first, and the skipped values (all
    /// of them counted, the largest [`SKIPPED_LISTED`] listed).
    pub fn select(&self, sides: &[&BTreeMap<String, u64>]) -> (Vec<String>, Skipped) {
        let mut totals: BTreeMap<&String, u64> = BTreeMap::new();
        for side in sides {
            for (value, rows) in side.iter() {
                *totals.entry(value).or_default() += rows;
            }
        }
        let mut values: Vec<(&String, u64)> = totals.into_iter().collect();
        values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut chosen = Vec::new();
        let mut skipped = Skipped::default();
        for (value, _) in values {
            let rows: Vec<u64> = sides
                .iter()
                .map(|s| s.get(value).copied().unwrap_or(0))
                .collect();
            let reason = if rows.iter().any(|&n| n < self.min_rows) {
                format!("fewer than {} rows on a side", self.min_rows)
            } else if chosen.len() >= self.max_segments {
                format!("beyond the {} largest segments", self.max_segments)
            } else {
                chosen.push(value.clone());
                continue;
            };
            skipped.count += 1;
            if skipped.listed.len() < SKIPPED_LISTED {
                skipped.listed.push(SkippedSegment {
                    value: value.clone(),
                    rows,
                    reason,
                });
            }
        }
        (chosen, skipped)
    }
}

/// Values that are not reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// How many values were skipped.
    pub count: usize,
    /// The largest of them (at most [`SKIPPED_LISTED`]).
    pub listed: Vec<SkippedSegment>,
}

/// One skipped value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedSegment {
    /// The column's value.
    pub value: String,
    /// Its rows on each side (reference, current; or labelled rows).
    pub rows: Vec<u64>,
    /// Why it is not reported.
    pub reason: String,
}

/// A drifted column of a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentColumn {
    /// Column name.
    pub column: String,
    /// Its effect size.
    pub effect_size: Option<f64>,
    /// Its p-value after the correction across columns.
    pub p_value_adjusted: Option<f64>,
}

/// The drift of one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentDrift {
    /// The column's value.
    pub value: String,
    /// Reference rows with this value.
    pub reference_rows: u64,
    /// Current rows with this value.
    pub current_rows: u64,
    /// Whether the segment's drift policy fired (at the segment alpha).
    pub drifted: bool,
    /// The policy in words and what fired.
    pub rule: String,
    /// The columns that drifted, with their effects.
    pub drifted_columns: Vec<SegmentColumn>,
    /// Whether the joint (multivariate) test of the segment fired.
    pub joint_drifted: bool,
}

/// Drift per segment of two files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentsReport {
    /// The rule used.
    pub rule: SegmentRule,
    /// Always "bonferroni".
    pub correction: String,
    /// The family's significance level.
    pub alpha: f64,
    /// The level each segment's report runs at (`alpha / tested`).
    pub segment_alpha: f64,
    /// Segments tested.
    pub tested: usize,
    /// Segments that drifted.
    pub drifted: usize,
    /// The segments, largest first.
    pub segments: Vec<SegmentDrift>,
    /// Values not tested.
    pub skipped: Skipped,
    /// Rows without a value (reference, current).
    pub missing_rows: [u64; 2],
}

/// Rows of each value of `column` in `table` (missing values counted apart).
fn group_rows(table: &Table, column: &str) -> Result<(BTreeMap<String, Vec<usize>>, u64)> {
    let values = table.require(column)?;
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut missing = 0;
    for row in 0..table.n_rows() {
        match values.text(row) {
            Some(value) => groups.entry(value).or_default().push(row),
            None => missing += 1,
        }
    }
    Ok((groups, missing))
}

/// The policy of one of `m` segments: the segmenting column left out and
/// every significance level divided by `m` (Bonferroni).
pub fn segment_config(config: &DriftConfig, column: &str, m: usize) -> DriftConfig {
    let m = m.max(1) as f64;
    let mut segment = config.clone();
    segment.alpha /= m;
    for settings in segment.columns.values_mut() {
        if let Some(alpha) = &mut settings.alpha {
            *alpha /= m;
        }
    }
    segment.columns.insert(
        column.to_string(),
        ColumnSettings {
            ignore: true,
            ..ColumnSettings::default()
        },
    );
    segment
}

/// Compares `current` with `reference` (CSV or Parquet files, read into
/// memory) per value of `rule.column`: each segment's rows are profiled
/// (the reference side as a reference, the current side against it) and
/// compared under `config` at the Bonferroni level `alpha / m`.
pub fn compare_segments(
    reference: &Path,
    current: &Path,
    rule: &SegmentRule,
    config: &DriftConfig,
) -> Result<SegmentsReport> {
    config.validate()?;
    let force = [rule.column.clone()];
    let reference = Table::read(reference, &force)?;
    let current = Table::read(current, &force)?;
    let (reference_groups, reference_missing) = group_rows(&reference, &rule.column)?;
    let (current_groups, current_missing) = group_rows(&current, &rule.column)?;
    let counts = |groups: &BTreeMap<String, Vec<usize>>| -> BTreeMap<String, u64> {
        groups
            .iter()
            .map(|(v, rows)| (v.clone(), rows.len() as u64))
            .collect()
    };
    let (chosen, skipped) = rule.select(&[&counts(&reference_groups), &counts(&current_groups)]);
    let segment = segment_config(config, &rule.column, chosen.len());
    let mut segments = Vec::with_capacity(chosen.len());
    for value in chosen {
        let (Some(reference_rows), Some(current_rows)) =
            (reference_groups.get(&value), current_groups.get(&value))
        else {
            continue;
        };
        let reference_profile = Profile::from_table(&reference.select_rows(reference_rows), None);
        let current_profile =
            Profile::from_table(&current.select_rows(current_rows), Some(&reference_profile));
        let report = compare(&reference_profile, &current_profile, &segment)?;
        segments.push(SegmentDrift {
            value,
            reference_rows: report.reference_rows,
            current_rows: report.current_rows,
            drifted: report.dataset.drifted,
            rule: report.dataset.rule.clone(),
            drifted_columns: report
                .columns
                .iter()
                .filter(|c| c.drifted)
                .map(|c| SegmentColumn {
                    column: c.column.clone(),
                    effect_size: c.effect_size,
                    p_value_adjusted: c.p_value_adjusted,
                })
                .collect(),
            joint_drifted: report.multivariate.as_ref().is_some_and(|j| j.drifted),
        });
    }
    Ok(SegmentsReport {
        rule: rule.clone(),
        correction: "bonferroni".into(),
        alpha: config.alpha,
        segment_alpha: segment.alpha,
        tested: segments.len(),
        drifted: segments.iter().filter(|s| s.drifted).count(),
        segments,
        skipped,
        missing_rows: [reference_missing, current_missing],
    })
}

impl SegmentsReport {
    /// Plain-text table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "\nsegments by {}: {} tested, {} drifted (Bonferroni: each at alpha {} / {} = {:.3e})\n",
            self.rule.column,
            self.tested,
            self.drifted,
            self.alpha,
            self.tested.max(1),
            self.segment_alpha
        );
        let _ = writeln!(
            out,
            "  {:<20} {:>10} {:>10}  {:<5}  drifted columns (effect, adjusted p)",
            "value", "ref rows", "cur rows", "drift"
        );
        for s in &self.segments {
            let _ = writeln!(
                out,
                "  {:<20} {:>10} {:>10}  {:<5}  {}{}",
                s.value,
                s.reference_rows,
                s.current_rows,
                if s.drifted { "yes" } else { "no" },
                columns_text(&s.drifted_columns),
                if s.joint_drifted { " [joint]" } else { "" }
            );
        }
        skipped_text(&mut out, &self.skipped, &["ref", "cur"]);
        if self.missing_rows.iter().any(|&n| n > 0) {
            let _ = writeln!(
                out,
                "  rows without a value: {} reference, {} current",
                self.missing_rows[0], self.missing_rows[1]
            );
        }
        out
    }

    /// An HTML section.
    pub fn html(&self) -> String {
        let mut out = format!(
            "<h2>Segments by {}</h2><p>{} tested, {} drifted; Bonferroni: each segment at alpha {} / {} = {:.3e}; {} values skipped.</p>\
             <table><tr><th>value</th><th>reference rows</th><th>current rows</th><th>drift</th><th>drifted columns (effect, adjusted p)</th></tr>",
            escape(&self.rule.column),
            self.tested,
            self.drifted,
            self.alpha,
            self.tested.max(1),
            self.segment_alpha,
            self.skipped.count
        );
        for s in &self.segments {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&s.value),
                s.reference_rows,
                s.current_rows,
                if s.drifted { "<b>yes</b>" } else { "no" },
                escape(&columns_text(&s.drifted_columns))
            );
        }
        out.push_str("</table>\n");
        out
    }
}

fn columns_text(columns: &[SegmentColumn]) -> String {
    columns
        .iter()
        .map(|c| {
            format!(
                "{} ({}, p={})",
                c.column,
                c.effect_size.map_or("-".into(), |e| format!("{e:.3}")),
                c.p_value_adjusted.map_or("-".into(), format_p)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn skipped_text(out: &mut String, skipped: &Skipped, sides: &[&str]) {
    if skipped.count == 0 {
        return;
    }
    let _ = writeln!(out, "  skipped {} value(s):", skipped.count);
    for s in &skipped.listed {
        let rows: Vec<String> = sides
            .iter()
            .zip(&s.rows)
            .map(|(side, n)| format!("{side} {n}"))
            .collect();
        let _ = writeln!(out, "    {} ({}): {}", s.value, rows.join(", "), s.reason);
    }
    if skipped.count > skipped.listed.len() {
        let _ = writeln!(
            out,
            "    … and {} more",
            skipped.count - skipped.listed.len()
        );
    }
}

/// Live metrics of one segment of a prediction log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentPerformance {
    /// The column's value.
    pub value: String,
    /// Predicted rows with this value.
    pub rows: u64,
    /// The live metrics over its labelled rows.
    pub performance: Option<Performance>,
}

/// Live metrics per segment over a whole prediction log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSegments {
    /// The rule used (`min_rows` counts labelled rows).
    pub rule: SegmentRule,
    /// Live metrics over every labelled row, for comparison.
    pub overall: Option<Performance>,
    /// The segments, largest (by labelled rows) first.
    pub segments: Vec<SegmentPerformance>,
    /// Values not reported.
    pub skipped: Skipped,
    /// Predicted rows without a value (or without the column in their file).
    pub missing_rows: u64,
    /// Rows of values beyond the first [`MAX_TRACKED_VALUES`] distinct ones.
    pub untracked_rows: u64,
}

#[derive(Default)]
struct LogSegment {
    rows: u64,
    labelled: u64,
    outcomes: Outcomes,
}

/// Live metrics (the metrics of [`crate::window`], from the feedback
/// labels) per value of `rule.column` (a logged input) over the whole log of
/// `model` under `log_dir`. A value is a segment with at least
/// `rule.min_rows` labelled rows.
pub fn log_segments(
    log_dir: &str,
    model: &str,
    signature: Option<&Signature>,
    rule: &SegmentRule,
) -> Result<LogSegments> {
    let reader = LogReader::open(log_dir)?;
    let feedback = reader.feedback(model, None)?;
    let classes: Vec<String> = signature.map(|s| s.classes.clone()).unwrap_or_default();
    let scoring = Scoring {
        task: signature.map(|s| s.task),
        classes: &classes,
        target_scale: target_scale(signature),
    };
    let mut segments: HashMap<String, LogSegment> = HashMap::new();
    let mut overall = Outcomes::default();
    let mut missing_rows = 0u64;
    let mut untracked_rows = 0u64;
    let mut current_file: Option<String> = None;
    let mut source = Source::Absent;
    let mut probabilities: Vec<Option<usize>> = Vec::new();
    reader.scan_predictions(model, None, |batch, row| -> Result<()> {
        if current_file.as_deref() != Some(batch.file.path.as_str()) {
            current_file = Some(batch.file.path.clone());
            source = Source::find(batch, &rule.column);
            probabilities = probability_columns(batch, &classes);
        }
        let Some(value) = source.text(batch, row) else {
            missing_rows += 1;
            return Ok(());
        };
        if !segments.contains_key(&value) && segments.len() >= MAX_TRACKED_VALUES {
            untracked_rows += 1;
            return Ok(());
        }
        let segment = segments.entry(value).or_default();
        segment.rows += 1;
        if let Some(truth) = feedback.get(&batch.request_id[row], batch.row[row])
            && segment
                .outcomes
                .push(batch, row, truth, &scoring, &probabilities)
                .is_some()
        {
            segment.labelled += 1;
            overall.push(batch, row, truth, &scoring, &probabilities);
        }
        Ok(())
    })?;
    if segments.is_empty() && missing_rows > 0 {
        return Err(MonitorError::config(
            "--segment-by",
            format!(
                "the prediction log of {model} has no input {:?}",
                rule.column
            ),
        ));
    }
    let labelled: BTreeMap<String, u64> = segments
        .iter()
        .map(|(v, s)| (v.clone(), s.labelled))
        .collect();
    let (chosen, skipped) = rule.select(&[&labelled]);
    let segments = chosen
        .into_iter()
        .filter_map(|value| {
            let segment = segments.get(&value)?;
            Some(SegmentPerformance {
                rows: segment.rows,
                performance: segment.outcomes.performance(&classes),
                value,
            })
        })
        .collect();
    Ok(LogSegments {
        rule: rule.clone(),
        overall: overall.performance(&classes),
        segments,
        skipped,
        missing_rows,
        untracked_rows,
    })
}

impl LogSegments {
    /// Plain-text table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "\nlive metrics by {} (whole log; segments with at least {} labelled rows):\n",
            self.rule.column, self.rule.min_rows
        );
        let line = |name: &str, rows: Option<u64>, p: &Option<Performance>| -> String {
            let metrics = p.as_ref().map_or("no labels".into(), |p| {
                format!(
                    "{} {:.4} on {} labels",
                    p.headline_name, p.headline, p.labeled
                )
            });
            let rows = rows.map_or(String::new(), |n| n.to_string());
            format!("  {name:<20} {rows:>10}  {metrics}\n")
        };
        out.push_str(&line("(all)", None, &self.overall));
        for s in &self.segments {
            out.push_str(&line(&s.value, Some(s.rows), &s.performance));
        }
        skipped_text(&mut out, &self.skipped, &["labelled"]);
        if self.missing_rows > 0 || self.untracked_rows > 0 {
            let _ = writeln!(
                out,
                "  rows without a value: {}; rows of untracked values: {}",
                self.missing_rows, self.untracked_rows
            );
        }
        out
    }

    /// An HTML section.
    pub fn html(&self) -> String {
        let mut out = format!(
            "<h2>Live metrics by {}</h2><p>Whole log; {} values skipped.</p><table><tr><th>value</th><th>rows</th><th>metric</th><th>labelled</th></tr>",
            escape(&self.rule.column),
            self.skipped.count
        );
        for s in &self.segments {
            let (name, value, labelled) =
                s.performance
                    .as_ref()
                    .map_or((String::from("-"), String::from("-"), 0), |p| {
                        (
                            p.headline_name.clone(),
                            format!("{:.4}", p.headline),
                            p.labeled,
                        )
                    });
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
                escape(&s.value),
                s.rows,
                name,
                value,
                labelled
            );
        }
        out.push_str("</table>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_keeps_the_largest_values_with_enough_rows_on_every_side() {
        let reference: BTreeMap<String, u64> =
            [("a", 500), ("b", 300), ("c", 50), ("d", 200), ("e", 400)]
                .into_iter()
                .map(|(v, n)| (v.to_string(), n))
                .collect();
        let current: BTreeMap<String, u64> = [("a", 500), ("b", 300), ("c", 500), ("d", 200)]
            .into_iter()
            .map(|(v, n)| (v.to_string(), n))
            .collect();
        let rule = SegmentRule {
            column: "region".into(),
            min_rows: 100,
            max_segments: 2,
        };
        let (chosen, skipped) = rule.select(&[&reference, &current]);
        assert_eq!(chosen, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(skipped.count, 3);
        let reasons: Vec<(&str, &str)> = skipped
            .listed
            .iter()
            .map(|s| (s.value.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("c", "fewer than 100 rows on a side"),
                ("d", "beyond the 2 largest segments"),
                ("e", "fewer than 100 rows on a side"),
            ]
        );
    }

    #[test]
    fn segment_config_divides_every_alpha_and_ignores_the_column() {
        let mut config = DriftConfig::default();
        config.columns.insert(
            "income".into(),
            ColumnSettings {
                alpha: Some(0.05),
                ..ColumnSettings::default()
            },
        );
        let segment = segment_config(&config, "region", 10);
        assert!((segment.alpha - config.alpha / 10.0).abs() < 1e-15);
        assert_eq!(segment.columns["income"].alpha, Some(0.005));
        assert!(segment.columns["region"].ignore);
    }
}
