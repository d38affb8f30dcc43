//! Drift verdicts: for each column an effect size and a homogeneity test,
//! and the rule "drift = effect ≥ minimum relevant effect AND significant
//! after correcting for the number of columns tested".
//!
//! Numeric columns: effect = Wasserstein-1 distance / reference standard
//! deviation, computed on the exact-count logarithmic buckets (its error is
//! bounded and reported as `effect_error`); test = G-test of homogeneity on
//! up to `bins` reference-quantile bins whose edges are bucket boundaries,
//! so both rows of the table are exact counts and no sketch error enters the
//! p-value. Categorical columns: categories whose pooled count, scaled to
//! the smaller sample, is below `min_expected` (rare ones, seen in either
//! sample) are pooled into one "(other)" bin; effect = Jensen–
//! Shannon distance (base 2) with its small-sample bias
//! `(B−1)(1/n + 1/m) / (8 ln 2)` subtracted from the divergence; test = G-test.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{MonitorError, Result};
use crate::joint::{JointConfig, JointVerdict, compare_joint};
use crate::profile::{CategoricalStats, ColumnKind, ColumnProfile, NumericStats, Profile};
use crate::quality::{self, QualityFinding};
use crate::sketch::MAX_INDEX;
use crate::stats::{Correction, adjust, g_test};

/// Default minimum relevant effect for numeric columns (W1 / σ_ref).
pub const DEFAULT_NUMERIC_EFFECT: f64 = 0.1;
/// Default minimum relevant effect for categorical columns (debiased JS distance).
pub const DEFAULT_CATEGORICAL_EFFECT: f64 = 0.1;

/// Per-column overrides (`monitor.drift.columns.NAME`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSettings {
    /// Minimum relevant effect for this column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_effect: Option<f64>,
    /// Significance level for this column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Leave the column out of drift testing (quality checks still run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore: bool,
}

/// Drift policy (`monitor.drift` in keel.yaml). Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    /// Minimum relevant effect for every column (overrides the per-kind defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_effect: Option<f64>,
    /// Minimum relevant W1/σ_ref for numeric columns.
    pub numeric_min_effect: f64,
    /// Minimum relevant debiased Jensen–Shannon distance for categorical columns.
    pub categorical_min_effect: f64,
    /// Significance level after correction.
    pub alpha: f64,
    /// Correction across the columns of one report.
    pub correction: Correction,
    /// Reference-quantile bins of the numeric test.
    pub bins: usize,
    /// Smallest expected count of a bin or category (smaller ones are pooled).
    pub min_expected: f64,
    /// The dataset drifts when at least this share of tested columns drifts
    /// (0 = any drifted column)…
    pub drift_share: f64,
    /// …or when any of these columns drifts.
    pub key_columns: Vec<String>,
    /// Per-column overrides.
    pub columns: BTreeMap<String, ColumnSettings>,
    /// Quality: smallest change in the missing (null + NaN) share reported.
    pub max_missing_change: f64,
    /// Quality: largest share of values outside the reference range that is not reported.
    pub max_out_of_range: f64,
    /// Quality: largest share of unknown categories that is not reported.
    pub max_unknown_share: f64,
    /// The joint (multivariate) test's thresholds.
    pub multivariate: JointConfig,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            min_effect: None,
            numeric_min_effect: DEFAULT_NUMERIC_EFFECT,
            categorical_min_effect: DEFAULT_CATEGORICAL_EFFECT,
            alpha: 0.01,
            correction: Correction::Holm,
            bins: 20,
            min_expected: 5.0,
            drift_share: 0.0,
            key_columns: Vec::new(),
            columns: BTreeMap::new(),
            max_missing_change: 0.01,
            max_out_of_range: 0.01,
            max_unknown_share: 0.01,
            multivariate: JointConfig::default(),
        }
    }
}

impl DriftConfig {
    /// Checks ranges; errors name the setting.
    pub fn validate(&self) -> Result<()> {
        let check = |field: String, value: f64, low: f64, high: f64| {
            if !(value >= low && value <= high) {
                return Err(MonitorError::config(
                    field,
                    format!("{value} is outside [{low}, {high}]"),
                ));
            }
            Ok(())
        };
        check("monitor.drift.alpha".into(), self.alpha, 0.0, 1.0)?;
        check(
            "monitor.drift.multivariate.min_error_change".into(),
            self.multivariate.min_error_change,
            0.0,
            f64::MAX,
        )?;
        check(
            "monitor.drift.multivariate.min_correlation_change".into(),
            self.multivariate.min_correlation_change,
            0.0,
            2.0,
        )?;
        check(
            "monitor.drift.drift_share".into(),
            self.drift_share,
            0.0,
            1.0,
        )?;
        check(
            "monitor.drift.min_expected".into(),
            self.min_expected,
            0.0,
            1e9,
        )?;
        if let Some(effect) = self.min_effect {
            check("monitor.drift.min_effect".into(), effect, 0.0, f64::MAX)?;
        }
        if !(2..=1000).contains(&self.bins) {
            return Err(MonitorError::config(
                "monitor.drift.bins",
                format!("{} is outside [2, 1000]", self.bins),
            ));
        }
        for (name, column) in &self.columns {
            if let Some(effect) = column.min_effect {
                check(
                    format!("monitor.drift.columns.{name}.min_effect"),
                    effect,
                    0.0,
                    f64::MAX,
                )?;
            }
            if let Some(alpha) = column.alpha {
                check(
                    format!("monitor.drift.columns.{name}.alpha"),
                    alpha,
                    0.0,
                    1.0,
                )?;
            }
        }
        Ok(())
    }

    fn min_effect_for(&self, column: &str, kind: ColumnKind) -> f64 {
        self.columns
            .get(column)
            .and_then(|c| c.min_effect)
            .or(self.min_effect)
            .unwrap_or(match kind {
                ColumnKind::Numeric => self.numeric_min_effect,
                ColumnKind::Categorical => self.categorical_min_effect,
            })
    }

    fn alpha_for(&self, column: &str) -> f64 {
        self.columns
            .get(column)
            .and_then(|c| c.alpha)
            .unwrap_or(self.alpha)
    }
}

/// Outcome of one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Effect and significance both over their thresholds.
    Drift,
    /// Tested, no drift.
    NoDrift,
    /// Could not be tested (empty, constant, ignored); see `rule`.
    NotTested,
}

/// One bin or category of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinShare {
    /// `[low, high)` for numeric bins, the category (or "(other)").
    pub label: String,
    /// Bin edges (numeric bins; ±inf as null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    /// Upper edge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// Share of the reference in the bin.
    pub reference: f64,
    /// Share of the current data in the bin.
    pub current: f64,
    /// χ² contribution of the bin (how much it moved, scaled by its noise).
    pub contribution: f64,
}

/// The verdict on one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnVerdict {
    /// Column name.
    pub column: String,
    /// Numeric or categorical.
    pub kind: ColumnKind,
    /// Effect and test used.
    pub method: String,
    /// The test statistic (G).
    pub statistic: Option<f64>,
    /// Degrees of freedom of the test.
    pub df: Option<usize>,
    /// The effect size.
    pub effect_size: Option<f64>,
    /// Bound on the effect's error from bucketing (numeric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect_error: Option<f64>,
    /// Raw p-value of the test.
    pub p_value: Option<f64>,
    /// p-value after the correction across columns.
    pub p_value_adjusted: Option<f64>,
    /// Minimum relevant effect.
    pub threshold: f64,
    /// Significance level for the adjusted p-value.
    pub alpha: f64,
    /// Whether the column drifted.
    pub drifted: bool,
    /// Drift, no drift, or not tested.
    pub status: Status,
    /// The rule that decided, in words.
    pub rule: String,
    /// Reference values used (finite numbers or present categories).
    pub n_ref: u64,
    /// Current values used.
    pub n_cur: u64,
    /// Bins or categories that moved most (largest contributions first).
    pub top_contributors: Vec<BinShare>,
    /// Every bin or category, in order (for plots).
    pub bins: Vec<BinShare>,
}

/// The dataset-level verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetVerdict {
    /// Whether the policy says drift.
    pub drifted: bool,
    /// The policy, in words, and what fired.
    pub rule: String,
    /// Columns tested.
    pub tested_columns: usize,
    /// Columns that drifted.
    pub drifted_columns: usize,
    /// `drifted_columns / tested_columns`.
    pub drifted_share: f64,
    /// Columns by effect relative to their threshold (drifted first).
    pub ranking: Vec<String>,
}

/// A full comparison: column verdicts, dataset verdict, quality findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Rows in the reference.
    pub reference_rows: u64,
    /// Rows in the current data.
    pub current_rows: u64,
    /// One verdict per column, in reference order.
    pub columns: Vec<ColumnVerdict>,
    /// The dataset verdict.
    pub dataset: DatasetVerdict,
    /// Data-quality findings (not drift).
    pub quality: Vec<QualityFinding>,
    /// The joint (multivariate) verdict, when the reference profile has a
    /// model and the current profile its sums (absent in older profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multivariate: Option<JointVerdict>,
    /// The policy used.
    pub settings: DriftConfig,
}

/// Checks that `current` has the reference's columns with the same kinds.
pub fn check_schema(reference: &Profile, current: &Profile) -> Result<()> {
    let missing: Vec<String> = reference
        .columns
        .iter()
        .filter(|c| current.column(&c.name).is_none())
        .map(|c| c.name.clone())
        .collect();
    let extra: Vec<String> = current
        .columns
        .iter()
        .filter(|c| reference.column(&c.name).is_none())
        .map(|c| c.name.clone())
        .collect();
    let type_changed: Vec<(String, String, String)> = reference
        .columns
        .iter()
        .filter_map(|r| {
            let c = current.column(&r.name)?;
            let present = c.count - c.nulls;
            let mostly_text =
                r.kind() == ColumnKind::Numeric && present > 0 && c.types.texts * 2 > present;
            if c.kind() != r.kind() || mostly_text {
                let now = if mostly_text {
                    "text"
                } else {
                    c.kind().as_str()
                };
                Some((
                    r.name.clone(),
                    r.kind().as_str().to_string(),
                    now.to_string(),
                ))
            } else {
                None
            }
        })
        .collect();
    if missing.is_empty() && extra.is_empty() && type_changed.is_empty() {
        Ok(())
    } else {
        Err(MonitorError::SchemaMismatch {
            missing,
            extra,
            type_changed,
        })
    }
}

/// Compares `current` with `reference` under `config`. The current profile
/// must have been built with the reference as template (same layouts).
pub fn compare(
    reference: &Profile,
    current: &Profile,
    config: &DriftConfig,
) -> Result<DriftReport> {
    config.validate()?;
    // A training profile carries the model's outputs (`output.*`); data
    // without them is compared on the columns it has.
    let trimmed;
    let reference = if reference
        .columns
        .iter()
        .any(|c| c.name.starts_with("output.") && current.column(&c.name).is_none())
    {
        let mut copy = reference.clone();
        copy.columns
            .retain(|c| !c.name.starts_with("output.") || current.column(&c.name).is_some());
        trimmed = copy;
        &trimmed
    } else {
        reference
    };
    check_schema(reference, current)?;
    let mut columns: Vec<ColumnVerdict> = Vec::with_capacity(reference.columns.len());
    for r in &reference.columns {
        let c = current.column(&r.name).expect("schema checked");
        columns.push(column_verdict(r, c, config)?);
    }
    let tested: Vec<usize> = (0..columns.len())
        .filter(|&i| columns[i].p_value.is_some() && columns[i].status != Status::NotTested)
        .collect();
    let p_values: Vec<f64> = tested
        .iter()
        .map(|&i| columns[i].p_value.unwrap_or(1.0))
        .collect();
    let adjusted = adjust(&p_values, config.correction);
    for (&i, p) in tested.iter().zip(adjusted) {
        let verdict = &mut columns[i];
        verdict.p_value_adjusted = Some(p);
        let effect = verdict.effect_size.unwrap_or(0.0);
        let relevant = effect >= verdict.threshold;
        let significant = p < verdict.alpha;
        verdict.drifted = relevant && significant;
        verdict.status = if verdict.drifted {
            Status::Drift
        } else {
            Status::NoDrift
        };
        let correction = match config.correction {
            Correction::Holm => "Holm",
            Correction::Bh => "Benjamini-Hochberg",
            Correction::None => "uncorrected",
        };
        verdict.rule = format!(
            "effect {effect:.4} {} {} and {correction} p {} {} {}",
            if relevant { ">=" } else { "<" },
            verdict.threshold,
            format_p(p),
            if significant { "<" } else { ">=" },
            verdict.alpha
        );
    }
    let mut dataset = dataset_verdict(&columns, config);
    let multivariate = if config.multivariate.enabled {
        match (&reference.multivariate, &current.joint) {
            (Some(model), Some(sums)) => {
                compare_joint(model, sums, &config.multivariate, config.alpha)
            }
            _ => None,
        }
    } else {
        None
    };
    if let Some(joint) = multivariate.as_ref().filter(|j| j.drifted) {
        dataset.drifted = true;
        dataset.rule.push_str(&format!(
            "; joint distribution drifted (driven by {})",
            joint.drivers.join(", ")
        ));
    }
    let quality = quality::findings(reference, current, config);
    Ok(DriftReport {
        reference_rows: reference.rows,
        current_rows: current.rows,
        columns,
        dataset,
        quality,
        multivariate,
        settings: config.clone(),
    })
}

/// A p-value in short form.
pub fn format_p(p: f64) -> String {
    if p == 0.0 {
        "0".into()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

fn dataset_verdict(columns: &[ColumnVerdict], config: &DriftConfig) -> DatasetVerdict {
    let tested = columns
        .iter()
        .filter(|c| c.status != Status::NotTested)
        .count();
    let drifted: Vec<&ColumnVerdict> = columns.iter().filter(|c| c.drifted).collect();
    let share = if tested == 0 {
        0.0
    } else {
        drifted.len() as f64 / tested as f64
    };
    let keys: Vec<&str> = drifted
        .iter()
        .filter(|c| config.key_columns.contains(&c.column))
        .map(|c| c.column.as_str())
        .collect();
    let by_share = !drifted.is_empty() && share >= config.drift_share;
    let mut rule = if config.drift_share > 0.0 {
        format!(
            "{} of {tested} columns drifted (share {share:.2}, policy >= {})",
            drifted.len(),
            config.drift_share
        )
    } else {
        format!(
            "{} of {tested} columns drifted (policy: any column)",
            drifted.len()
        )
    };
    if !keys.is_empty() {
        rule.push_str(&format!("; key columns drifted: {}", keys.join(", ")));
    }
    let mut ranked: Vec<&ColumnVerdict> = columns
        .iter()
        .filter(|c| c.status != Status::NotTested)
        .collect();
    ranked.sort_by(|a, b| {
        let score = |c: &ColumnVerdict| c.effect_size.unwrap_or(0.0) / c.threshold.max(1e-12);
        b.drifted
            .cmp(&a.drifted)
            .then(score(b).total_cmp(&score(a)))
    });
    DatasetVerdict {
        drifted: by_share || !keys.is_empty(),
        rule,
        tested_columns: tested,
        drifted_columns: drifted.len(),
        drifted_share: share,
        ranking: ranked.iter().map(|c| c.column.clone()).collect(),
    }
}

fn not_tested(
    r: &ColumnProfile,
    method: &str,
    threshold: f64,
    alpha: f64,
    n_ref: u64,
    n_cur: u64,
    why: &str,
) -> ColumnVerdict {
    ColumnVerdict {
        column: r.name.clone(),
        kind: r.kind(),
        method: method.to_string(),
        statistic: None,
        df: None,
        effect_size: None,
        effect_error: None,
        p_value: None,
        p_value_adjusted: None,
        threshold,
        alpha,
        drifted: false,
        status: Status::NotTested,
        rule: format!("not tested: {why}"),
        n_ref,
        n_cur,
        top_contributors: Vec::new(),
        bins: Vec::new(),
    }
}

const NUMERIC_METHOD: &str = "wasserstein_norm + g_test(reference-quantile bins)";
const CATEGORICAL_METHOD: &str = "jensen_shannon_debiased + g_test(categories, rare pooled)";

fn column_verdict(
    r: &ColumnProfile,
    c: &ColumnProfile,
    config: &DriftConfig,
) -> Result<ColumnVerdict> {
    let threshold = config.min_effect_for(&r.name, r.kind());
    let alpha = config.alpha_for(&r.name);
    let ignored = config.columns.get(&r.name).is_some_and(|s| s.ignore);
    match (&r.stats, &c.stats) {
        (crate::profile::ColumnStats::Numeric(rs), crate::profile::ColumnStats::Numeric(cs)) => {
            if ignored {
                return Ok(not_tested(
                    r,
                    NUMERIC_METHOD,
                    threshold,
                    alpha,
                    rs.finite(),
                    cs.finite(),
                    "ignored by configuration",
                ));
            }
            numeric_verdict(r, rs, cs, threshold, alpha, config)
        }
        (
            crate::profile::ColumnStats::Categorical(rs),
            crate::profile::ColumnStats::Categorical(cs),
        ) => {
            if ignored {
                return Ok(not_tested(
                    r,
                    CATEGORICAL_METHOD,
                    threshold,
                    alpha,
                    rs.present(),
                    cs.present(),
                    "ignored by configuration",
                ));
            }
            Ok(categorical_verdict(r, rs, cs, threshold, alpha, config))
        }
        _ => Err(MonitorError::SchemaMismatch {
            missing: vec![],
            extra: vec![],
            type_changed: vec![(
                r.name.clone(),
                r.kind().as_str().into(),
                c.kind().as_str().into(),
            )],
        }),
    }
}

fn short(x: f64) -> String {
    if x == 0.0 || (x.abs() >= 1e-3 && x.abs() < 1e6) {
        let text = format!("{x:.4}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        text.to_string()
    } else {
        format!("{x:.3e}")
    }
}

fn no_finite_values(
    r: &ColumnProfile,
    threshold: f64,
    alpha: f64,
    n_ref: u64,
    n_cur: u64,
) -> ColumnVerdict {
    let why = if n_ref == 0 {
        "no finite reference values"
    } else {
        "no finite current values"
    };
    not_tested(r, NUMERIC_METHOD, threshold, alpha, n_ref, n_cur, why)
}

fn numeric_verdict(
    r: &ColumnProfile,
    rs: &NumericStats,
    cs: &NumericStats,
    threshold: f64,
    alpha: f64,
    config: &DriftConfig,
) -> Result<ColumnVerdict> {
    let (n_ref, n_cur) = (rs.finite(), cs.finite());
    let histograms = (&rs.histogram, &cs.histogram);
    let (Some(rh), Some(ch)) = histograms else {
        return Ok(no_finite_values(r, threshold, alpha, n_ref, n_cur));
    };
    if n_ref == 0 || n_cur == 0 {
        return Ok(no_finite_values(r, threshold, alpha, n_ref, n_cur));
    }
    if rh.layout != ch.layout {
        return Err(MonitorError::Incompatible {
            column: r.name.clone(),
            message: "the current profile was not built against this reference (histogram layouts differ); profile it with the reference as template".into(),
        });
    }
    let layout = rh.layout;
    // Coarse bins: runs of buckets holding about 1/bins of the reference each.
    let target = n_ref as f64 / config.bins as f64;
    let mut uppers: Vec<i32> = Vec::new(); // last bucket index of each bin
    let mut accumulated = 0u64;
    let mut bin_start_mass = 0u64;
    for (index, count) in rh.iter() {
        accumulated += count;
        if (accumulated - bin_start_mass) as f64 >= target * 0.999 {
            uppers.push(index);
            bin_start_mass = accumulated;
        }
    }
    if uppers.last().copied() != Some(MAX_INDEX) {
        match uppers.last_mut() {
            Some(last) if bin_start_mass == accumulated => *last = MAX_INDEX,
            _ => uppers.push(MAX_INDEX),
        }
    }
    let bin_of = |index: i32| uppers.partition_point(|&u| u < index);
    let mut ref_counts = vec![0u64; uppers.len()];
    let mut cur_counts = vec![0u64; uppers.len()];
    rh.iter().for_each(|(i, n)| ref_counts[bin_of(i)] += n);
    ch.iter().for_each(|(i, n)| cur_counts[bin_of(i)] += n);
    // Pool bins whose expected count is too small for the χ² approximation.
    let total = (n_ref + n_cur) as f64;
    let small = n_ref.min(n_cur) as f64;
    let mut bins: Vec<(i32, u64, u64)> = Vec::new(); // (upper index, ref, cur)
    for (k, &upper) in uppers.iter().enumerate() {
        let (rc, cc) = (ref_counts[k], cur_counts[k]);
        match bins.last_mut() {
            Some(last) if ((last.1 + last.2) as f64) * small / total < config.min_expected => {
                last.0 = upper;
                last.1 += rc;
                last.2 += cc;
            }
            _ => bins.push((upper, rc, cc)),
        }
    }
    while bins.len() >= 2 {
        let last = bins[bins.len() - 1];
        if ((last.1 + last.2) as f64) * small / total >= config.min_expected {
            break;
        }
        bins.pop();
        let previous = bins.last_mut().expect("two bins");
        previous.0 = last.0;
        previous.1 += last.1;
        previous.2 += last.2;
    }
    // Effect: W1 between the bucketed distributions, and its error bound.
    let (r_lo, r_hi) = rh.range().unwrap_or((0, 0));
    let (c_lo, c_hi) = ch.range().unwrap_or((0, 0));
    let (lo, hi) = (r_lo.min(c_lo), r_hi.max(c_hi));
    let (mut fr, mut fc, mut w1, mut displacement) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for index in lo..=hi {
        let (pr, pc) = (
            rh.count(index) as f64 / n_ref as f64,
            ch.count(index) as f64 / n_cur as f64,
        );
        fr += pr;
        fc += pc;
        let width = layout.upper(index) - layout.lower(index);
        displacement += (pr + pc) * width;
        if index < hi {
            w1 += (fr - fc).abs() * (layout.upper(index + 1) - layout.upper(index));
        }
    }
    let sigma = rs.moments.std();
    let scale = if sigma > 0.0 {
        sigma
    } else {
        layout.scale.abs().max(1e-12)
    };
    let effect = w1 / scale;
    let effect_error = displacement / scale;
    let labels: Vec<BinShare> = {
        let mut lower_index = -MAX_INDEX;
        bins.iter()
            .map(|&(upper, rc, cc)| {
                let low = (lower_index > -MAX_INDEX).then(|| layout.lower(lower_index));
                let high = (upper < MAX_INDEX).then(|| layout.upper(upper));
                lower_index = upper + 1;
                BinShare {
                    label: format!(
                        "[{}, {})",
                        low.map_or("-inf".into(), short),
                        high.map_or("inf".into(), short)
                    ),
                    low,
                    high,
                    reference: rc as f64 / n_ref as f64,
                    current: cc as f64 / n_cur as f64,
                    contribution: 0.0,
                }
            })
            .collect()
    };
    let ref_row: Vec<u64> = bins.iter().map(|b| b.1).collect();
    let cur_row: Vec<u64> = bins.iter().map(|b| b.2).collect();
    Ok(finish_verdict(
        r,
        NUMERIC_METHOD,
        threshold,
        alpha,
        n_ref,
        n_cur,
        effect,
        Some(effect_error),
        labels,
        &ref_row,
        &cur_row,
        "reference values fall in fewer than two bins (constant column)",
    ))
}

#[allow(clippy::too_many_arguments)]
fn finish_verdict(
    r: &ColumnProfile,
    method: &str,
    threshold: f64,
    alpha: f64,
    n_ref: u64,
    n_cur: u64,
    effect: f64,
    effect_error: Option<f64>,
    mut bins: Vec<BinShare>,
    ref_row: &[u64],
    cur_row: &[u64],
    why_untestable: &str,
) -> ColumnVerdict {
    let Some(test) = g_test(ref_row, cur_row) else {
        let mut verdict = not_tested(r, method, threshold, alpha, n_ref, n_cur, why_untestable);
        verdict.effect_size = Some(effect);
        verdict.effect_error = effect_error;
        verdict.bins = bins;
        return verdict;
    };
    for (bin, contribution) in bins.iter_mut().zip(&test.contributions) {
        bin.contribution = *contribution;
    }
    let mut top = bins.clone();
    top.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
    top.truncate(3);
    ColumnVerdict {
        column: r.name.clone(),
        kind: r.kind(),
        method: method.to_string(),
        statistic: Some(test.g),
        df: Some(test.df),
        effect_size: Some(effect),
        effect_error,
        p_value: Some(test.p_value),
        p_value_adjusted: None,
        threshold,
        alpha,
        drifted: false,
        status: Status::NoDrift,
        rule: String::new(),
        n_ref,
        n_cur,
        top_contributors: top,
        bins,
    }
}

/// Label of the pooled bin of rare and unseen categories.
pub const OTHER: &str = "(other)";

fn categorical_verdict(
    r: &ColumnProfile,
    rs: &CategoricalStats,
    cs: &CategoricalStats,
    threshold: f64,
    alpha: f64,
    config: &DriftConfig,
) -> ColumnVerdict {
    let (n_ref, n_cur) = (rs.present(), cs.present());
    if n_ref == 0 || n_cur == 0 {
        let why = if n_ref == 0 {
            "no reference values"
        } else {
            "no current values"
        };
        return not_tested(r, CATEGORICAL_METHOD, threshold, alpha, n_ref, n_cur, why);
    }
    // Categories are kept on their pooled count, so the choice does not
    // depend on one sample alone (choosing on the reference's counts would
    // pool the categories that were rare there by chance and bias the test).
    let small = n_ref.min(n_cur) as f64;
    let total = (n_ref + n_cur) as f64;
    let mut kept: Vec<(&str, u64, u64)> = rs
        .counts
        .iter()
        .map(|(name, &count)| {
            (
                name.as_str(),
                count,
                cs.counts.get(name).copied().unwrap_or(0),
            )
        })
        .chain(
            cs.counts
                .iter()
                .filter(|(name, _)| !rs.counts.contains_key(*name))
                .map(|(name, &count)| (name.as_str(), 0, count)),
        )
        .filter(|&(_, r, c)| (r + c) as f64 * small / total >= config.min_expected)
        .collect();
    kept.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then_with(|| a.0.cmp(b.0)));
    let other_ref = n_ref - kept.iter().map(|k| k.1).sum::<u64>();
    let other_cur = n_cur - kept.iter().map(|k| k.2).sum::<u64>();
    if other_ref + other_cur > 0 {
        kept.push((OTHER, other_ref, other_cur));
    }
    let ref_row: Vec<u64> = kept.iter().map(|k| k.1).collect();
    let cur_row: Vec<u64> = kept.iter().map(|k| k.2).collect();
    let bins: Vec<BinShare> = kept
        .iter()
        .map(|&(name, rc, cc)| BinShare {
            label: name.to_string(),
            low: None,
            high: None,
            reference: rc as f64 / n_ref as f64,
            current: cc as f64 / n_cur as f64,
            contribution: 0.0,
        })
        .collect();
    let effect = js_distance_debiased(&bins, n_ref, n_cur);
    finish_verdict(
        r,
        CATEGORICAL_METHOD,
        threshold,
        alpha,
        n_ref,
        n_cur,
        effect,
        None,
        bins,
        &ref_row,
        &cur_row,
        "a single category in both samples",
    )
}

/// Jensen–Shannon distance (base 2) with the expected divergence under no
/// change, `(B−1)(1/n + 1/m) / (8 ln 2)`, subtracted from the divergence.
fn js_distance_debiased(bins: &[BinShare], n_ref: u64, n_cur: u64) -> f64 {
    let mut divergence = 0.0;
    for bin in bins {
        let (p, q) = (bin.reference, bin.current);
        let m = 0.5 * (p + q);
        if p > 0.0 {
            divergence += 0.5 * p * (p / m).log2();
        }
        if q > 0.0 {
            divergence += 0.5 * q * (q / m).log2();
        }
    }
    let used = bins
        .iter()
        .filter(|b| b.reference + b.current > 0.0)
        .count();
    let bias = (used.saturating_sub(1)) as f64 * (1.0 / n_ref as f64 + 1.0 / n_cur as f64)
        / (8.0 * std::f64::consts::LN_2);
    (divergence - bias).max(0.0).sqrt()
}
