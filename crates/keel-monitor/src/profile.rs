//! Column profiles: one streaming pass per column, exact counts plus
//! mergeable sketches, serializable as JSON (`profile.json`).
//!
//! A profile built with a *template* (the reference profile, or a model
//! signature turned into one) takes the template's column kinds, histogram
//! layouts and value ranges, so its histograms are comparable bucket for
//! bucket with the reference's and out-of-range counts are exact. Profiles
//! with the same template merge exactly: counts add, histograms add bucket
//! by bucket, HyperLogLog registers take the maximum, moments merge by
//! Chan's formula (equal to rounding).

use std::collections::HashMap;
use std::path::Path;

use keel_table::{Column, Table, Text, format_number, is_missing, read_text};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::calibration::Calibration;
use crate::error::{MonitorError, Result};
use crate::joint::{
    INDICATORS, JointInput, JointSums, MIN_CATEGORY_SHARE, PcaModel, indicator_columns,
};
use crate::sketch::{Hll, Layout, LogHistogram, Moments, stable_hash};

/// Format tag written in every profile.
pub const PROFILE_FORMAT: &str = "keel-profile/1";
/// File name of a model folder's training-data profile.
pub const PROFILE_FILE: &str = "profile.json";
/// Distinct categories counted exactly per column; further new values are
/// counted in `other` (and still in the distinct-count estimate).
pub const CATEGORY_CAP: usize = 4096;
/// Values used to choose a histogram layout when none is given.
const LAYOUT_SAMPLE: usize = 65_536;

/// Numeric or categorical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// Numbers (floats, integers, booleans as 0/1).
    Numeric,
    /// Text categories.
    Categorical,
}

impl ColumnKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnKind::Numeric => "numeric",
            ColumnKind::Categorical => "categorical",
        }
    }
}

/// How many present values looked like numbers or text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TypeCounts {
    /// Values that are (or parse as) numbers.
    pub numbers: u64,
    /// Values that are text and do not parse as numbers.
    pub texts: u64,
}

/// The frozen reference range and exact counts of values outside it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Smallest reference value.
    pub low: f64,
    /// Largest reference value.
    pub high: f64,
    /// Finite values below `low`.
    pub below: u64,
    /// Finite values above `high`.
    pub above: u64,
}

/// Statistics of a numeric column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericStats {
    /// NaN values.
    pub nan: u64,
    /// +inf values.
    pub pos_inf: u64,
    /// -inf values.
    pub neg_inf: u64,
    /// Smallest finite value.
    pub min: Option<f64>,
    /// Largest finite value.
    pub max: Option<f64>,
    /// Mean and variance of the finite values.
    pub moments: Moments,
    /// Exact counts per logarithmic bucket (`None` until a layout is known).
    pub histogram: Option<LogHistogram>,
    /// Reference range and counts outside it (when built with a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<Bounds>,
    #[serde(skip)]
    layout_sample: Vec<f64>,
}

impl NumericStats {
    fn new(template: Option<&NumericStats>) -> Self {
        let layout = template.and_then(|t| t.histogram.as_ref().map(|h| h.layout));
        let bounds = template.and_then(|t| {
            Some(Bounds {
                low: t.min?,
                high: t.max?,
                below: 0,
                above: 0,
            })
        });
        NumericStats {
            nan: 0,
            pos_inf: 0,
            neg_inf: 0,
            min: None,
            max: None,
            moments: Moments::default(),
            histogram: layout.map(LogHistogram::new),
            bounds,
            layout_sample: Vec::new(),
        }
    }

    /// Finite values.
    pub fn finite(&self) -> u64 {
        self.moments.n
    }

    fn push_finite(&mut self, x: f64) {
        self.moments.push(x);
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
        if let Some(bounds) = &mut self.bounds {
            if x < bounds.low {
                bounds.below += 1;
            } else if x > bounds.high {
                bounds.above += 1;
            }
        }
        match &mut self.histogram {
            Some(histogram) => histogram.add(x),
            None => {
                self.layout_sample.push(x);
                if self.layout_sample.len() >= LAYOUT_SAMPLE {
                    self.fix_layout();
                }
            }
        }
    }

    /// Chooses the layout from the values held back so far and bins them.
    fn fix_layout(&mut self) {
        if self.histogram.is_some() || self.layout_sample.is_empty() {
            return;
        }
        let mut sample = std::mem::take(&mut self.layout_sample);
        let mut histogram = LogHistogram::new(Layout::from_sample(&mut sample.clone()));
        for x in sample.drain(..) {
            histogram.add(x);
        }
        self.histogram = Some(histogram);
    }

    fn push(&mut self, x: f64) {
        if x.is_finite() {
            self.push_finite(x);
        } else if x.is_nan() {
            self.nan += 1;
        } else if x > 0.0 {
            self.pos_inf += 1;
        } else {
            self.neg_inf += 1;
        }
    }
}

/// Statistics of a categorical column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalStats {
    /// Exact count per category (at most [`CATEGORY_CAP`] categories),
    /// serialized most frequent first.
    #[serde(
        serialize_with = "serialize_counts",
        deserialize_with = "deserialize_counts"
    )]
    pub counts: HashMap<String, u64>,
    /// Values of categories beyond the cap (the explicit "other" mass).
    pub other: u64,
    /// Distinct-count estimate over all values.
    pub distinct: Hll,
}

fn serialize_counts<S: serde::Serializer>(
    counts: &HashMap<String, u64>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let sorted = sorted_counts(counts);
    let mut seq = serializer.serialize_seq(Some(sorted.len()))?;
    for (name, count) in sorted {
        seq.serialize_element(&(name, count))?;
    }
    seq.end()
}

fn deserialize_counts<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<HashMap<String, u64>, D::Error> {
    let pairs: Vec<(String, u64)> = Vec::deserialize(deserializer)?;
    Ok(pairs.into_iter().collect())
}

/// Categories by count (descending), then name.
pub fn sorted_counts(counts: &HashMap<String, u64>) -> Vec<(&str, u64)> {
    let mut sorted: Vec<(&str, u64)> = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    sorted
}

impl CategoricalStats {
    fn new() -> Self {
        CategoricalStats {
            counts: HashMap::new(),
            other: 0,
            distinct: Hll::default(),
        }
    }

    fn push(&mut self, value: &str) {
        if let Some(count) = self.counts.get_mut(value) {
            *count += 1;
            return;
        }
        self.distinct.add_hash(stable_hash(value.as_bytes()));
        if self.counts.len() < CATEGORY_CAP {
            self.counts.insert(value.to_string(), 1);
        } else {
            self.other += 1;
        }
    }

    /// Present values.
    pub fn present(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.other
    }

    /// Distinct values: exact while under the cap, else the estimate.
    pub fn cardinality(&self) -> f64 {
        if self.other == 0 {
            self.counts.len() as f64
        } else {
            self.distinct.estimate().max(self.counts.len() as f64)
        }
    }

    fn merge(&mut self, other: &CategoricalStats) {
        for (name, count) in &other.counts {
            *self.counts.entry(name.clone()).or_insert(0) += count;
        }
        self.other += other.other;
        self.distinct.merge(&other.distinct);
        if self.counts.len() > CATEGORY_CAP {
            let mut sorted: Vec<(String, u64)> = self.counts.drain().collect();
            sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            for (name, count) in sorted.drain(..) {
                if self.counts.len() < CATEGORY_CAP {
                    self.counts.insert(name, count);
                } else {
                    self.other += count;
                }
            }
        }
    }
}

/// Kind-specific statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnStats {
    /// A numeric column.
    Numeric(NumericStats),
    /// A categorical column.
    Categorical(CategoricalStats),
}

/// One column's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    /// Column name.
    pub name: String,
    /// Rows seen (present or not).
    pub count: u64,
    /// Missing cells (empty, null).
    pub nulls: u64,
    /// Type mix of the present values.
    pub types: TypeCounts,
    /// Kind-specific statistics.
    #[serde(flatten)]
    pub stats: ColumnStats,
}

impl ColumnProfile {
    /// An empty profile of `kind`; `template` supplies the layout and range.
    pub fn new(name: &str, kind: ColumnKind, template: Option<&ColumnProfile>) -> Self {
        let stats = match kind {
            ColumnKind::Numeric => {
                ColumnStats::Numeric(NumericStats::new(template.and_then(ColumnProfile::numeric)))
            }
            ColumnKind::Categorical => ColumnStats::Categorical(CategoricalStats::new()),
        };
        ColumnProfile {
            name: name.to_string(),
            count: 0,
            nulls: 0,
            types: TypeCounts::default(),
            stats,
        }
    }

    /// Numeric or categorical.
    pub fn kind(&self) -> ColumnKind {
        match self.stats {
            ColumnStats::Numeric(_) => ColumnKind::Numeric,
            ColumnStats::Categorical(_) => ColumnKind::Categorical,
        }
    }

    /// Numeric statistics, if numeric.
    pub fn numeric(&self) -> Option<&NumericStats> {
        match &self.stats {
            ColumnStats::Numeric(stats) => Some(stats),
            ColumnStats::Categorical(_) => None,
        }
    }

    /// Categorical statistics, if categorical.
    pub fn categorical(&self) -> Option<&CategoricalStats> {
        match &self.stats {
            ColumnStats::Categorical(stats) => Some(stats),
            ColumnStats::Numeric(_) => None,
        }
    }

    /// Missing values: nulls, plus NaN for numeric columns.
    pub fn missing(&self) -> u64 {
        self.nulls + self.numeric().map_or(0, |s| s.nan)
    }

    /// Adds numbers; NaN counts as NaN, not as null.
    pub fn push_numbers(&mut self, values: &[f64]) {
        self.count += values.len() as u64;
        match &mut self.stats {
            ColumnStats::Numeric(stats) => {
                self.types.numbers += values.iter().filter(|v| !v.is_nan()).count() as u64;
                values.iter().for_each(|&x| stats.push(x));
            }
            ColumnStats::Categorical(stats) => {
                for &x in values {
                    if x.is_nan() {
                        self.nulls += 1;
                    } else {
                        self.types.numbers += 1;
                        stats.push(&format_number(x));
                    }
                }
            }
        }
    }

    /// Adds one number or a null.
    pub fn push_number(&mut self, value: Option<f64>) {
        match value {
            Some(x) => self.push_numbers(&[x]),
            None => {
                self.count += 1;
                self.nulls += 1;
            }
        }
    }

    /// Adds `n` missing cells.
    pub fn push_nulls(&mut self, n: u64) {
        self.count += n;
        self.nulls += n;
    }

    /// Adds one category value as it is (no missing-token handling, for
    /// typed sources such as Parquet strings). Numeric columns parse it.
    pub fn push_category(&mut self, value: &str) {
        match &mut self.stats {
            ColumnStats::Categorical(stats) => {
                self.count += 1;
                if value.trim().parse::<f64>().is_ok() {
                    self.types.numbers += 1;
                } else {
                    self.types.texts += 1;
                }
                stats.push(value);
            }
            ColumnStats::Numeric(_) => self.push_text(Some(value)),
        }
    }

    /// Adds one text cell (`None` = null), read by keel-table's cell rule:
    /// a missing spelling is a null; numeric columns take numbers (`inf` is
    /// ±inf) and count anything else as a type violation (`types.texts`).
    pub fn push_text(&mut self, value: Option<&str>) {
        self.count += 1;
        let Some(text) = value.filter(|text| !is_missing(text)) else {
            self.nulls += 1;
            return;
        };
        let cell = read_text(text);
        match &mut self.stats {
            ColumnStats::Numeric(stats) => match cell {
                Text::Number(x) => {
                    self.types.numbers += 1;
                    stats.push(x);
                }
                _ => self.types.texts += 1,
            },
            ColumnStats::Categorical(stats) => {
                if matches!(cell, Text::Number(_)) {
                    self.types.numbers += 1;
                } else {
                    self.types.texts += 1;
                }
                stats.push(text.trim());
            }
        }
    }

    /// Ends the pass: a column that never filled its layout sample gets its
    /// layout from what it saw.
    pub fn finish(&mut self) {
        if let ColumnStats::Numeric(stats) = &mut self.stats {
            stats.fix_layout();
        }
    }

    /// Adds `other`'s counts; kinds, layouts and ranges must agree.
    pub fn merge(&mut self, other: &ColumnProfile) -> Result<()> {
        let incompatible = |message: &str| MonitorError::Incompatible {
            column: self.name.clone(),
            message: message.to_string(),
        };
        if self.name != other.name {
            return Err(incompatible(&format!(
                "cannot merge with column {:?}",
                other.name
            )));
        }
        match (&mut self.stats, &other.stats) {
            (ColumnStats::Numeric(mine), ColumnStats::Numeric(theirs)) => {
                mine.fix_layout();
                let mut theirs = theirs.clone();
                theirs.fix_layout();
                if mine.bounds.map(|b| (b.low, b.high)) != theirs.bounds.map(|b| (b.low, b.high)) {
                    return Err(incompatible(
                        "profiles were built against different reference ranges",
                    ));
                }
                match (&mut mine.histogram, &theirs.histogram) {
                    (Some(a), Some(b)) if a.total() == 0 => *a = b.clone(),
                    (Some(a), Some(b)) => {
                        if !a.merge(b) && b.total() > 0 {
                            return Err(incompatible(
                                "histogram layouts differ: build both profiles with the same reference (--reference-profile)",
                            ));
                        }
                    }
                    (None, Some(b)) => mine.histogram = Some(b.clone()),
                    (_, None) => {}
                }
                mine.nan += theirs.nan;
                mine.pos_inf += theirs.pos_inf;
                mine.neg_inf += theirs.neg_inf;
                mine.min = min_option(mine.min, theirs.min, f64::min);
                mine.max = min_option(mine.max, theirs.max, f64::max);
                mine.moments.merge(&theirs.moments);
                if let (Some(a), Some(b)) = (&mut mine.bounds, theirs.bounds) {
                    a.below += b.below;
                    a.above += b.above;
                }
            }
            (ColumnStats::Categorical(mine), ColumnStats::Categorical(theirs)) => {
                mine.merge(theirs)
            }
            _ => {
                return Err(incompatible(
                    "numeric in one profile, categorical in the other",
                ));
            }
        }
        self.count += other.count;
        self.nulls += other.nulls;
        self.types.numbers += other.types.numbers;
        self.types.texts += other.types.texts;
        Ok(())
    }
}

fn min_option(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Pairwise co-moments of the numeric columns (rows where both are finite),
/// for correlation-matrix comparisons. Merged exactly like [`Moments`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoMoments {
    /// Numeric columns covered, in order.
    pub columns: Vec<String>,
    /// Upper triangle, row-major: for i < j, `(n, mean_i, mean_j, m2_i, m2_j, c_ij)`.
    pub pairs: Vec<[f64; 6]>,
}

/// Most numeric columns whose pairwise co-moments a profile keeps.
pub const CORRELATION_COLUMNS: usize = 64;

impl CoMoments {
    fn from_columns(names: Vec<String>, columns: &[&[f64]]) -> Self {
        let k = columns.len();
        let pairs: Vec<[f64; 6]> = (0..k)
            .flat_map(|i| ((i + 1)..k).map(move |j| (i, j)))
            .collect::<Vec<_>>()
            .par_iter()
            .map(|&(i, j)| {
                let mut acc = [0.0f64; 6];
                for (&x, &y) in columns[i].iter().zip(columns[j]) {
                    if !(x.is_finite() && y.is_finite()) {
                        continue;
                    }
                    acc[0] += 1.0;
                    let n = acc[0];
                    let dx = x - acc[1];
                    let dy = y - acc[2];
                    acc[1] += dx / n;
                    acc[2] += dy / n;
                    acc[3] += dx * (x - acc[1]);
                    acc[4] += dy * (y - acc[2]);
                    acc[5] += dx * (y - acc[2]);
                }
                acc
            })
            .collect();
        CoMoments {
            columns: names,
            pairs,
        }
    }

    /// Pearson correlation of columns `a` and `b` (`None` if not covered or degenerate).
    pub fn correlation(&self, a: &str, b: &str) -> Option<f64> {
        let i = self.columns.iter().position(|c| c == a)?;
        let j = self.columns.iter().position(|c| c == b)?;
        let (i, j) = if i < j {
            (i, j)
        } else if i > j {
            (j, i)
        } else {
            return Some(1.0);
        };
        let k = self.columns.len();
        let index = i * k - i * (i + 1) / 2 + (j - i - 1);
        let p = self.pairs.get(index)?;
        let denominator = (p[3] * p[4]).sqrt();
        (p[0] >= 2.0 && denominator > 0.0).then(|| p[5] / denominator)
    }
}

/// A dataset's profile: one [`ColumnProfile`] per column, in file order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Always [`PROFILE_FORMAT`].
    pub format: String,
    /// Rows profiled.
    pub rows: u64,
    /// Columns in order.
    pub columns: Vec<ColumnProfile>,
    /// Pairwise co-moments of numeric columns (in-memory tables only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlations: Option<CoMoments>,
    /// Pairwise sums of the numeric columns for the joint (multivariate)
    /// test: every column of a reference (outputs excluded), the model's
    /// columns in a current profile built with a reference that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joint: Option<JointSums>,
    /// The reference's PCA model for the joint test (absent in older
    /// profiles and current profiles: the test is then skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multivariate: Option<PcaModel>,
    /// Which shard of a file set this profile covers (`keel monitor profile
    /// --shard I/N`); absent in whole profiles and merges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardOf>,
    /// The label-free accuracy estimate's calibration, fitted on labelled
    /// held-out predictions (a training profile of `keel train` with a test
    /// split; absent otherwise and in older profiles: scores are then taken
    /// as calibrated). See [`crate::calibration`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// The shard a profile covers (see [`keel_table::shard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardOf {
    /// Zero-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
    /// Units (CSV files, Parquet row groups) in the whole file set.
    pub units: u64,
}

impl Profile {
    /// An empty profile with the given columns.
    pub fn empty(columns: Vec<ColumnProfile>) -> Self {
        Profile {
            format: PROFILE_FORMAT.to_string(),
            rows: 0,
            columns,
            correlations: None,
            joint: None,
            multivariate: None,
            shard: None,
            calibration: None,
        }
    }

    /// The empty, unframed joint sums of a reference whose `columns` were
    /// profiled (a categorical column's counts choose its indicators: those
    /// of the rows seen, the whole table in memory or a streaming reader's
    /// first chunk): its numeric columns and its categorical columns'
    /// indicators ([`JointSums::planned`]; model outputs excluded). None
    /// when fewer than two joint columns result.
    pub fn joint_plan(columns: &[ColumnProfile]) -> Option<JointSums> {
        let inputs = columns
            .iter()
            .filter(|c| !c.name.starts_with("output."))
            .filter_map(|c| match &c.stats {
                ColumnStats::Numeric(_) => Some(JointInput::Numeric(c.name.clone())),
                ColumnStats::Categorical(stats) => {
                    let categories = indicated_categories(stats);
                    (!categories.is_empty()).then(|| JointInput::Categorical {
                        column: c.name.clone(),
                        categories,
                    })
                }
            })
            .collect();
        JointSums::planned(inputs, true)
    }

    /// Fits the joint model from the sums (a reference, while its row
    /// sample is still in memory); leaves `multivariate` empty when fewer
    /// than two columns vary.
    pub fn fit_joint(&mut self) {
        self.multivariate = self.joint.as_ref().and_then(PcaModel::fit);
        if let Some(joint) = &mut self.joint {
            joint.drop_sample();
        }
    }

    /// Leaves `names` (e.g. the training target) out of the joint sums and
    /// fits the model again.
    /// (Before [`Profile::fit_joint`] dropped the sample: the model is fitted
    /// from it; a profile read from a file keeps its sums and loses the model.)
    pub fn drop_from_joint(&mut self, names: &[&str]) {
        if let Some(joint) = &mut self.joint {
            *joint = joint.without(names);
            if joint.has_sample() {
                self.fit_joint();
            } else {
                self.multivariate = None;
            }
        }
    }

    /// An empty profile with this profile's columns, kinds, layouts and
    /// ranges: what windows and shards compared with it are built from.
    pub fn template(&self) -> Profile {
        let mut template = Profile::empty(
            self.columns
                .iter()
                .map(|c| ColumnProfile::new(&c.name, c.kind(), Some(c)))
                .collect(),
        );
        template.joint = self
            .multivariate
            .as_ref()
            .map(PcaModel::current_sums)
            .or_else(|| self.joint.as_ref().map(JointSums::emptied));
        template
    }

    /// Like [`Profile::template`] but without the value ranges: for shards
    /// of the reference itself, which must share layouts but have no range yet.
    pub fn layout_template(&self) -> Profile {
        let mut template = self.template();
        for column in &mut template.columns {
            if let ColumnStats::Numeric(stats) = &mut column.stats {
                stats.bounds = None;
            }
        }
        template
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Profiles an in-memory table in parallel across columns, with pairwise
    /// co-moments of its numeric columns. `template` fixes kinds and layouts.
    /// Without a template the profile is a reference: its joint model is fitted.
    pub fn from_table(table: &Table, template: Option<&Profile>) -> Profile {
        let mut profile = Profile::profile_table(table, template);
        if template.is_none() {
            profile.fit_joint();
        }
        profile
    }

    /// A reference profile whose joint sums still hold their row sample
    /// (fit with [`Profile::fit_joint`] after choosing the columns).
    pub fn from_table_without_joint_fit(table: &Table) -> Profile {
        Profile::profile_table(table, None)
    }

    fn profile_table(table: &Table, template: Option<&Profile>) -> Profile {
        let columns: Vec<ColumnProfile> = table
            .names()
            .par_iter()
            .map(|name| {
                let column = table.column(name).expect("names come from the table");
                let model = template.and_then(|t| t.column(name));
                let kind = model.map_or(
                    match column {
                        Column::Numeric(_) => ColumnKind::Numeric,
                        Column::Categorical(_) => ColumnKind::Categorical,
                    },
                    ColumnProfile::kind,
                );
                let mut profile = ColumnProfile::new(name, kind, model);
                match column {
                    Column::Numeric(values) => {
                        for chunk in values.chunks(LAYOUT_SAMPLE) {
                            profile.push_numbers(chunk);
                        }
                    }
                    Column::Categorical(values) => {
                        values.iter().for_each(|v| profile.push_text(v.as_deref()))
                    }
                }
                profile.finish();
                profile
            })
            .collect();
        let numeric: Vec<(String, &[f64])> = table
            .names()
            .iter()
            .filter_map(|name| match table.column(name) {
                Some(Column::Numeric(values)) => Some((name.clone(), values.as_slice())),
                _ => None,
            })
            .take(CORRELATION_COLUMNS)
            .collect();
        let correlations = (numeric.len() >= 2).then(|| {
            let (names, slices): (Vec<String>, Vec<&[f64]>) = numeric.into_iter().unzip();
            CoMoments::from_columns(names, &slices)
        });
        let joint = match template {
            Some(t) => t.template().joint,
            None => Profile::joint_plan(&columns),
        };
        let joint = joint.and_then(|joint| {
            let inputs = joint.inputs();
            let sources: Vec<&Column> = inputs
                .iter()
                .map(|input| table.column(input.column()))
                .collect::<Option<_>>()?;
            // A numeric input needs numbers; a categorical one reads text
            // as its column profile does (numbers as their text).
            let readable = inputs.iter().zip(&sources).all(|(input, column)| {
                matches!(input, JointInput::Categorical { .. })
                    || matches!(column, Column::Numeric(_))
            });
            if !readable {
                return None;
            }
            let rows = table.n_rows();
            Some(JointSums::from_rows(joint, rows, |range| {
                let mut out = Vec::new();
                for (input, column) in inputs.iter().zip(&sources) {
                    match (input, column) {
                        (JointInput::Categorical { categories, .. }, Column::Categorical(v)) => out
                            .extend(indicator_columns(
                                categories,
                                v[range.clone()].iter().map(|v| {
                                    v.as_deref().filter(|t| !is_missing(t)).map(str::trim)
                                }),
                            )),
                        (JointInput::Categorical { categories, .. }, Column::Numeric(v)) => {
                            let texts: Vec<Option<String>> = v[range.clone()]
                                .iter()
                                .map(|x| (!x.is_nan()).then(|| format_number(*x)))
                                .collect();
                            out.extend(indicator_columns(
                                categories,
                                texts.iter().map(Option::as_deref),
                            ))
                        }
                        (JointInput::Numeric(_), Column::Numeric(v)) => {
                            out.push(v[range.clone()].to_vec())
                        }
                        (JointInput::Numeric(_), Column::Categorical(_)) => {
                            out.push(vec![f64::NAN; range.len()])
                        }
                    }
                }
                out
            }))
        });
        Profile {
            format: PROFILE_FORMAT.to_string(),
            rows: table.n_rows() as u64,
            columns,
            correlations,
            joint,
            multivariate: None,
            shard: None,
            calibration: None,
        }
    }

    /// Adds `other` (a profile built from the same template) to this one.
    pub fn merge(&mut self, other: &Profile) -> Result<()> {
        if self.columns.len() != other.columns.len()
            || self
                .columns
                .iter()
                .zip(&other.columns)
                .any(|(a, b)| a.name != b.name)
        {
            return Err(MonitorError::Incompatible {
                column: "*".into(),
                message: "profiles have different columns".into(),
            });
        }
        for (mine, theirs) in self.columns.iter_mut().zip(&other.columns) {
            mine.merge(theirs)?;
        }
        self.rows += other.rows;
        self.shard = None;
        self.correlations = match (self.correlations.take(), &other.correlations) {
            (Some(mut a), Some(b)) if a.columns == b.columns => {
                for (p, q) in a.pairs.iter_mut().zip(&b.pairs) {
                    merge_pair(p, q);
                }
                Some(a)
            }
            (None, Some(b)) if self.rows == other.rows => Some(b.clone()),
            _ => None,
        };
        let rows_before = self.rows - other.rows;
        self.joint = match (self.joint.take(), &other.joint) {
            (Some(mut a), Some(b)) => a.merge(b).then_some(a),
            (None, Some(b)) if rows_before == 0 => Some(b.clone()),
            _ => None,
        };
        // A fitted model needs the row sample, which only a reference
        // profiled in this process holds: refit when it is there.
        if self.multivariate.is_some() || other.multivariate.is_some() {
            self.multivariate = self
                .joint
                .as_ref()
                .filter(|j| j.has_sample())
                .and_then(PcaModel::fit);
        }
        Ok(())
    }

    /// Merges the profiles of the shards of one file set (`keel monitor
    /// profile --shard I/N`, every `I` of one `N` exactly once) into the
    /// whole's profile, in shard order. Profiles without shard information
    /// (windows, profiles built against one reference) merge in the order
    /// given. The result carries the joint sums but no joint model (see
    /// [`Profile::merge`]).
    pub fn merge_shards(profiles: Vec<Profile>) -> Result<Profile> {
        let sharded = profiles.iter().filter(|p| p.shard.is_some()).count();
        let mut profiles = profiles;
        if sharded > 0 {
            if sharded != profiles.len() {
                return Err(MonitorError::Shards(
                    "some profiles are shards (--shard) and some are not".into(),
                ));
            }
            profiles.sort_by_key(|p| p.shard.map(|s| s.index));
            let first = profiles[0].shard.unwrap_or(ShardOf {
                index: 0,
                count: 0,
                units: 0,
            });
            for (expected, profile) in profiles.iter().enumerate() {
                let Some(shard) = profile.shard else {
                    continue;
                };
                if (shard.count, shard.units) != (first.count, first.units) {
                    return Err(MonitorError::Shards(format!(
                        "shard {}/{} of {} units does not belong with shard {}/{} of {} units",
                        shard.index,
                        shard.count,
                        shard.units,
                        first.index,
                        first.count,
                        first.units
                    )));
                }
                if shard.index != expected {
                    return Err(MonitorError::Shards(format!(
                        "shard {expected}/{} is {} (every shard exactly once)",
                        first.count,
                        if shard.index > expected {
                            "missing"
                        } else {
                            "given twice"
                        }
                    )));
                }
            }
            if profiles.len() != first.count {
                return Err(MonitorError::Shards(format!(
                    "{} of {} shards given",
                    profiles.len(),
                    first.count
                )));
            }
        }
        let mut parts = profiles.into_iter();
        let mut merged = parts
            .next()
            .ok_or_else(|| MonitorError::Shards("no profiles to merge".into()))?;
        for part in parts {
            merged.merge(&part)?;
        }
        merged.shard = None;
        Ok(merged)
    }

    /// Reads a profile JSON file.
    pub fn read_json(path: &Path) -> Result<Profile> {
        let bytes = std::fs::read(path).map_err(|e| MonitorError::io(path, e))?;
        let profile: Profile = serde_json::from_slice(&bytes)
            .map_err(|e| MonitorError::file(path, format!("not a keel profile: {e}")))?;
        if profile.format != PROFILE_FORMAT {
            return Err(MonitorError::file(
                path,
                format!(
                    "profile format {:?}, this keel reads {PROFILE_FORMAT:?}",
                    profile.format
                ),
            ));
        }
        Ok(profile)
    }

    /// Writes the profile as JSON through a temporary file and a rename.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self)
            .map_err(|e| MonitorError::file(path, format!("cannot serialize: {e}")))?;
        keel_fs::write_atomic(path, &bytes).map_err(|e| MonitorError::io(path, e))
    }
}

/// The categories of a categorical column that get an indicator in the
/// joint sums: the most frequent (ties by name), at most [`INDICATORS`],
/// each with at least [`MIN_CATEGORY_SHARE`] of the present values; none
/// when the column has a single value.
pub fn indicated_categories(stats: &CategoricalStats) -> Vec<String> {
    let present = stats.present();
    let distinct = stats.counts.len() + usize::from(stats.other > 0);
    if present == 0 || distinct < 2 {
        return Vec::new();
    }
    sorted_counts(&stats.counts)
        .into_iter()
        .filter(|&(_, count)| count as f64 >= MIN_CATEGORY_SHARE * present as f64)
        .take(INDICATORS)
        .map(|(name, _)| name.to_string())
        .collect()
}

fn merge_pair(a: &mut [f64; 6], b: &[f64; 6]) {
    if b[0] == 0.0 {
        return;
    }
    if a[0] == 0.0 {
        *a = *b;
        return;
    }
    let n = a[0] + b[0];
    let dx = b[1] - a[1];
    let dy = b[2] - a[2];
    let w = a[0] * b[0] / n;
    a[3] += b[3] + dx * dx * w;
    a[4] += b[4] + dy * dy * w;
    a[5] += b[5] + dx * dy * w;
    a[1] += dx * b[0] / n;
    a[2] += dy * b[0] / n;
    a[0] = n;
}

/// The training profile a model folder carries (`profile.json`): the
/// training table's columns plus the model's outputs on it (`output.label`
/// and `output.score` for classifiers, `output.value` for regressors), the
/// reference for prediction drift. A classifier's `holdout` (labelled rows
/// it was not trained on) calibrates the label-free accuracy estimate.
pub fn training_profile(
    model: &keel_learn::Model,
    table: &Table,
    holdout: Option<&Table>,
) -> Result<Profile> {
    let mut profile = Profile::from_table_without_joint_fit(table);
    profile.drop_from_joint(&[model.target.as_str()]);
    let outputs = match model.predict(table)? {
        keel_learn::Predictions::Classes {
            labels,
            probabilities,
        } => {
            let mut label = ColumnProfile::new("output.label", ColumnKind::Categorical, None);
            for &index in &labels {
                match model.classes.get(index) {
                    Some(class) => label.push_category(class),
                    None => label.push_nulls(1),
                }
            }
            let scores: Vec<f64> = labels
                .iter()
                .zip(&probabilities)
                .map(|(&i, p)| p.get(i).copied().unwrap_or(f64::NAN))
                .collect();
            let mut score = ColumnProfile::new("output.score", ColumnKind::Numeric, None);
            score.push_numbers(&scores);
            score.finish();
            vec![label, score]
        }
        keel_learn::Predictions::Values(values) => {
            let mut value = ColumnProfile::new("output.value", ColumnKind::Numeric, None);
            value.push_numbers(&values);
            value.finish();
            vec![value]
        }
    };
    profile.columns.extend(outputs);
    if let Some(holdout) = holdout {
        profile.calibration = holdout_calibration(model, holdout)?;
    }
    Ok(profile)
}

/// The calibration of a classifier's predicted-class score on labelled
/// rows (`(score, prediction right)` pairs); None for a regressor, a table
/// without the target, or too few labelled rows.
fn holdout_calibration(model: &keel_learn::Model, table: &Table) -> Result<Option<Calibration>> {
    let Some(truth) = table.column(&model.target) else {
        return Ok(None);
    };
    let keel_learn::Predictions::Classes {
        labels,
        probabilities,
    } = model.predict(table)?
    else {
        return Ok(None);
    };
    let pairs: Vec<(f64, bool)> = labels
        .iter()
        .zip(&probabilities)
        .enumerate()
        .filter_map(|(row, (&index, p))| {
            let truth = truth.text(row)?;
            let predicted = model.classes.get(index)?;
            Some((p.get(index).copied()?, *predicted == truth))
        })
        .collect();
    Ok(Calibration::fit(&pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicators_go_to_frequent_categories_of_columns_that_vary() {
        let mut column = ColumnProfile::new("c", ColumnKind::Categorical, None);
        for (name, count) in [("a", 500), ("b", 300), ("c", 195), ("rare", 5)] {
            for _ in 0..count {
                column.push_category(name);
            }
        }
        let stats = column.categorical().unwrap();
        // "rare" is under 1 % of the values.
        assert_eq!(indicated_categories(stats), ["a", "b", "c"]);
        let mut single = ColumnProfile::new("s", ColumnKind::Categorical, None);
        single.push_category("only");
        single.push_nulls(3);
        assert!(indicated_categories(single.categorical().unwrap()).is_empty());
        let mut many = ColumnProfile::new("m", ColumnKind::Categorical, None);
        for i in 0..20 {
            for _ in 0..(100 + i) {
                many.push_category(&format!("k{i:02}"));
            }
        }
        let chosen = indicated_categories(many.categorical().unwrap());
        assert_eq!(chosen.len(), INDICATORS);
        assert_eq!(chosen[0], "k19");
    }
}
