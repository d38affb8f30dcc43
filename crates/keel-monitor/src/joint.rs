//! Multivariate (joint) drift: changes in how the columns vary together
//! that every column's own distribution hides (a correlation that appears
//! or flips sign, mass moving between quadrants at the same marginal mean
//! and variance, a numeric column's level moving between categories).
//!
//! A categorical column takes part as indicator (0/1) columns of its most
//! frequent categories in the reference ([`Indicator`], [`JointInput`],
//! [`JointSums::planned`]: numeric columns take the [`JOINT_COLUMNS`]
//! budget first, then each categorical column at most [`INDICATORS`]);
//! another category is 0 in every indicator, a missing value missing in
//! every one. Pairs of indicators of one column are not tested, and drivers
//! name the data column (docs/monitoring.md).
//!
//! Profiles hold sketches, not rows, so the test works on second moments:
//!
//! - [`JointSums`]: while a profile is built, the numeric columns' pairwise
//!   sums `n_ij`, `Σu_i`, `Σu_i·u_j` over the rows where both are finite, in
//!   a frame `u = (x − shift) / scale`. Plain sums: constant memory, merged
//!   by addition (after an exact change of frame when the frames differ).
//!   A reference also keeps a bottom-k sample of rows (by a hash of the row
//!   number: uniform, order-independent, mergeable) of [`SAMPLE_ROWS`] rows,
//!   used once to measure the spread of the per-row error; it is not saved.
//! - [`PcaModel`] (NannyML's data reconstruction, adapted): the reference's
//!   columns standardized (mean imputation: a missing value is the mean,
//!   `z = 0`), PCA of their second-moment matrix `M = E[zzᵀ]` by a Jacobi
//!   eigendecomposition, keeping the leading components that explain
//!   [`VARIANCE_KEPT`] of the variance. A row's error is its squared
//!   reconstruction error `e = ‖(I − VVᵀ)z‖²`, so the mean error of any data
//!   is exactly `tr(Q M)` with `Q = I − VVᵀ`: a current profile's sums give
//!   it without a second pass, and per column (`(QMQ)_jj`), which names the
//!   drivers.
//! - The test ([`compare_joint`]): the current mean error against the
//!   reference's, `z = Δ / (σ_e √(1/n_cur + 1/n_ref))` with `σ_e` the per-row
//!   spread on the reference sample (two-sided normal p-value, CLT over
//!   rows), and drift = relative change ≥ `min_error_change` AND p < alpha.
//!   PCA reconstruction misses a correlation that appears between columns
//!   that were independent when the kept components happen to be
//!   orthogonal to it, so the same sums also give every pair's Pearson
//!   correlation in both profiles: Fisher-z test per pair, Holm across
//!   pairs, a pair drifts when |Δρ| ≥ `min_correlation_change` AND its
//!   adjusted p < alpha. The joint verdict's p-value is the Bonferroni
//!   combination of the two tests (2 × the smaller), so its false-alarm
//!   rate stays at most alpha.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::stats::{Correction, adjust};

/// Most joint columns (numeric columns and categorical indicators) a
/// profile keeps joint sums for.
pub const JOINT_COLUMNS: usize = 64;
/// Rows of the reference sample that measures the per-row error's spread.
pub const SAMPLE_ROWS: usize = 20_000;
/// Share of the variance the kept principal components explain (NannyML's default).
pub const VARIANCE_KEPT: f64 = 0.65;
/// Default smallest relative change of the mean reconstruction error that counts.
pub const DEFAULT_MIN_ERROR_CHANGE: f64 = 0.1;
/// Default smallest change of a pair's correlation that counts.
pub const DEFAULT_MIN_CORRELATION_CHANGE: f64 = 0.2;
/// Most indicator columns a categorical column takes in the joint sums.
pub const INDICATORS: usize = 8;
/// Smallest share of a column's present values a category needs to get
/// an indicator.
pub const MIN_CATEGORY_SHARE: f64 = 0.01;

/// A joint column that indicates one category of a categorical column:
/// 1 when the row has it, 0 when the row has another (or a category
/// without an indicator), missing when the row's value is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indicator {
    /// The categorical column.
    pub column: String,
    /// The category.
    pub category: String,
}

impl Indicator {
    /// The joint column's name: `column=category`.
    pub fn name(&self) -> String {
        format!("{}={}", self.column, self.category)
    }
}

/// A data column the joint sums read: its values, or the indicators of
/// its categories (consecutive joint columns).
#[derive(Debug, Clone, PartialEq)]
pub enum JointInput {
    /// A numeric column: one joint column.
    Numeric(String),
    /// A categorical column: one joint column per category.
    Categorical {
        /// The column.
        column: String,
        /// Its categories with an indicator, in the joint columns' order.
        categories: Vec<String>,
    },
}

impl JointInput {
    /// The data column.
    pub fn column(&self) -> &str {
        match self {
            JointInput::Numeric(column) | JointInput::Categorical { column, .. } => column,
        }
    }
}

/// One categorical cell as its indicators' values (`None`: missing, every
/// indicator missing).
pub fn indicator_values<'a>(
    categories: &'a [String],
    value: Option<&'a str>,
) -> impl Iterator<Item = f64> + 'a {
    categories.iter().map(move |c| match value {
        None => f64::NAN,
        Some(v) => f64::from(u8::from(v == c)),
    })
}

/// A categorical column's cells as its indicator columns.
pub fn indicator_columns<'a>(
    categories: &[String],
    values: impl Iterator<Item = Option<&'a str>>,
) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); categories.len()];
    for value in values {
        for (column, x) in out.iter_mut().zip(indicator_values(categories, value)) {
            column.push(x);
        }
    }
    out
}

/// Pairwise sums of a fixed list of joint columns (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointSums {
    /// Columns covered, in order.
    pub columns: Vec<String>,
    /// Frame: `u = (x − shift) / scale`.
    pub shift: Vec<f64>,
    /// Frame scale (positive).
    pub scale: Vec<f64>,
    /// Rows pushed (whatever was missing in them).
    pub rows: u64,
    /// `n[i·d + j]`: rows where columns i and j are both finite.
    pub n: Vec<f64>,
    /// `s[i·d + j]`: Σ u_i over those rows.
    pub s: Vec<f64>,
    /// `q[i·d + j]`: Σ u_i·u_j over those rows.
    pub q: Vec<f64>,
    /// For each of `columns`: the category it indicates, or null for a
    /// numeric column; empty when every column is numeric (and in
    /// profiles written before categorical columns took part).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indicators: Vec<Option<Indicator>>,
    /// Bottom-k sample of rows (reference only; not saved).
    #[serde(skip)]
    sample: Option<Sample>,
}

/// A bottom-k sample: the rows whose hashed row numbers are smallest.
#[derive(Debug, Clone, Default)]
struct Sample {
    heap: BinaryHeap<Sampled>,
}

/// Two samples are equal when they hold the same rows.
impl PartialEq for Sample {
    fn eq(&self, other: &Self) -> bool {
        let rows = |s: &Sample| {
            let mut rows: Vec<&Sampled> = s.heap.iter().collect();
            rows.sort_by_key(|r| r.priority);
            rows.into_iter().cloned().collect::<Vec<_>>()
        };
        rows(self) == rows(other)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Sampled {
    priority: u64,
    values: Vec<f64>,
}

impl Eq for Sampled {}
impl PartialOrd for Sampled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sampled {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority)
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Sample {
    fn offer(&mut self, row: u64, values: impl FnOnce() -> Vec<f64>) {
        let priority = splitmix(row);
        if self.heap.len() >= SAMPLE_ROWS {
            match self.heap.peek() {
                Some(top) if top.priority > priority => {
                    self.heap.pop();
                }
                _ => return,
            }
        }
        self.heap.push(Sampled {
            priority,
            values: values(),
        });
    }

    fn merge(&mut self, other: &Sample) {
        for entry in other.heap.iter() {
            if self.heap.len() >= SAMPLE_ROWS {
                match self.heap.peek() {
                    Some(top) if top.priority > entry.priority => {
                        self.heap.pop();
                    }
                    _ => continue,
                }
            }
            self.heap.push(entry.clone());
        }
    }
}

impl JointSums {
    /// Empty sums of `columns` in the frame (`shift`, `scale`); `sample`
    /// keeps a sample of rows (for a reference).
    pub fn new(columns: Vec<String>, shift: Vec<f64>, scale: Vec<f64>, sample: bool) -> Self {
        let d = columns.len();
        JointSums {
            columns,
            shift,
            scale,
            rows: 0,
            n: vec![0.0; d * d],
            s: vec![0.0; d * d],
            q: vec![0.0; d * d],
            indicators: Vec::new(),
            sample: sample.then(Sample::default),
        }
    }

    /// Empty, unframed sums of the `inputs` (a reference's: see
    /// [`JointSums::framed`]): numeric columns first, one joint column
    /// each, at most [`JOINT_COLUMNS`]; then each categorical column's
    /// indicators (at most [`INDICATORS`]) in the room left, in order, a
    /// column cut to its most frequent categories when the room is short.
    /// None when fewer than two joint columns result.
    pub fn planned(inputs: Vec<JointInput>, sample: bool) -> Option<JointSums> {
        let mut columns = Vec::new();
        let mut indicators = Vec::new();
        for input in inputs.iter() {
            if let JointInput::Numeric(name) = input
                && columns.len() < JOINT_COLUMNS
            {
                columns.push(name.clone());
                indicators.push(None);
            }
        }
        for input in inputs {
            if let JointInput::Categorical { column, categories } = input {
                let room = JOINT_COLUMNS - columns.len();
                for category in categories.into_iter().take(room.min(INDICATORS)) {
                    let indicator = Indicator {
                        column: column.clone(),
                        category,
                    };
                    columns.push(indicator.name());
                    indicators.push(Some(indicator));
                }
            }
        }
        if columns.len() < 2 {
            return None;
        }
        let mut sums = JointSums::new(columns, Vec::new(), Vec::new(), sample);
        if indicators.iter().any(Option::is_some) {
            sums.indicators = indicators;
        }
        Some(sums)
    }

    /// The data column joint column `i` reads.
    pub fn source(&self, i: usize) -> &str {
        source_of(&self.columns, &self.indicators, i)
    }

    /// The data columns read, in the joint columns' order (a categorical
    /// column once, for its consecutive indicators).
    pub fn inputs(&self) -> Vec<JointInput> {
        let mut out: Vec<JointInput> = Vec::new();
        for (i, name) in self.columns.iter().enumerate() {
            match self.indicators.get(i).and_then(Option::as_ref) {
                None => out.push(JointInput::Numeric(name.clone())),
                Some(indicator) => match out.last_mut() {
                    Some(JointInput::Categorical { column, categories })
                        if *column == indicator.column =>
                    {
                        categories.push(indicator.category.clone())
                    }
                    _ => out.push(JointInput::Categorical {
                        column: indicator.column.clone(),
                        categories: vec![indicator.category.clone()],
                    }),
                },
            }
        }
        out
    }

    /// These empty sums framed by the mean and standard deviation of the
    /// finite values of a first chunk (`chunk[i]` is joint column i's values).
    pub fn framed(&self, chunk: &[&[f64]]) -> Self {
        let (shift, scale) = chunk
            .iter()
            .map(|values| {
                let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
                if finite.is_empty() {
                    return (0.0, 1.0);
                }
                let mean = finite.iter().sum::<f64>() / finite.len() as f64;
                let var =
                    finite.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / finite.len() as f64;
                let sd = var.sqrt();
                (mean, if sd > 0.0 && sd.is_finite() { sd } else { 1.0 })
            })
            .unzip();
        let mut out = JointSums::new(self.columns.clone(), shift, scale, self.sample.is_some());
        out.indicators = self.indicators.clone();
        out
    }

    /// Columns covered.
    pub fn dim(&self) -> usize {
        self.columns.len()
    }

    /// Adds rows given column by column (`chunk[i]` holds column i's values
    /// for the same rows); `first_row` numbers them for the sample.
    // Matrix code: indices name rows and columns of the sums.
    #[allow(clippy::needless_range_loop)]
    pub fn push_chunk(&mut self, chunk: &[&[f64]], first_row: u64) {
        let d = self.dim();
        if chunk.len() != d || d == 0 {
            return;
        }
        let rows = chunk.iter().map(|c| c.len()).min().unwrap_or(0);
        // Rows with every value finite go to dense sums, folded in at the end.
        let (mut dense_n, mut dense_s, mut dense_q) = (0.0f64, vec![0.0; d], vec![0.0; d * d]);
        let mut u = vec![0.0; d];
        let mut present = vec![false; d];
        for row in 0..rows {
            let mut complete = true;
            for i in 0..d {
                let x = chunk[i][row];
                present[i] = x.is_finite();
                complete &= present[i];
                u[i] = if present[i] {
                    (x - self.shift[i]) / self.scale[i]
                } else {
                    0.0
                };
            }
            if complete {
                dense_n += 1.0;
                for i in 0..d {
                    let ui = u[i];
                    dense_s[i] += ui;
                    let line = &mut dense_q[i * d..(i + 1) * d];
                    for j in i..d {
                        line[j] += ui * u[j];
                    }
                }
            } else {
                for i in (0..d).filter(|&i| present[i]) {
                    for j in (0..d).filter(|&j| present[j]) {
                        self.n[i * d + j] += 1.0;
                        self.s[i * d + j] += u[i];
                        self.q[i * d + j] += u[i] * u[j];
                    }
                }
            }
            if let Some(sample) = &mut self.sample {
                sample.offer(first_row + row as u64, || {
                    (0..d).map(|i| chunk[i][row]).collect()
                });
            }
        }
        self.rows += rows as u64;
        for i in 0..d {
            for j in 0..d {
                self.n[i * d + j] += dense_n;
                self.s[i * d + j] += dense_s[i];
                let (a, b) = if i <= j { (i, j) } else { (j, i) };
                self.q[i * d + j] += dense_q[a * d + b];
            }
        }
    }

    /// Adds one row (`None` or a non-finite value: missing).
    pub fn push_row(&mut self, values: &[Option<f64>], row: u64) {
        let columns: Vec<[f64; 1]> = values.iter().map(|v| [v.unwrap_or(f64::NAN)]).collect();
        let chunk: Vec<&[f64]> = columns.iter().map(|c| c.as_slice()).collect();
        self.push_chunk(&chunk, row);
    }

    /// The same sums in another frame (exact: `u' = a·u + b`).
    pub fn reframed(&self, shift: &[f64], scale: &[f64]) -> JointSums {
        let d = self.dim();
        let a: Vec<f64> = (0..d).map(|i| self.scale[i] / scale[i]).collect();
        let b: Vec<f64> = (0..d)
            .map(|i| (self.shift[i] - shift[i]) / scale[i])
            .collect();
        let mut out = JointSums::new(self.columns.clone(), shift.to_vec(), scale.to_vec(), false);
        out.indicators = self.indicators.clone();
        out.rows = self.rows;
        out.sample = self.sample.clone();
        for i in 0..d {
            for j in 0..d {
                let k = i * d + j;
                let (n, si, sj, q) = (self.n[k], self.s[k], self.s[j * d + i], self.q[k]);
                out.n[k] = n;
                out.s[k] = a[i] * si + b[i] * n;
                out.q[k] = a[i] * a[j] * q + a[i] * b[j] * si + b[i] * a[j] * sj + b[i] * b[j] * n;
            }
        }
        out
    }

    /// Adds `other` (same columns; its frame is converted to this one's).
    /// Returns false when the columns differ.
    pub fn merge(&mut self, other: &JointSums) -> bool {
        if self.columns != other.columns || self.indicators != other.indicators {
            return false;
        }
        let converted;
        let other = if other.shift == self.shift && other.scale == self.scale {
            other
        } else {
            converted = other.reframed(&self.shift, &self.scale);
            &converted
        };
        for (a, b) in self.n.iter_mut().zip(&other.n) {
            *a += b;
        }
        for (a, b) in self.s.iter_mut().zip(&other.s) {
            *a += b;
        }
        for (a, b) in self.q.iter_mut().zip(&other.q) {
            *a += b;
        }
        self.rows += other.rows;
        match (&mut self.sample, &other.sample) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) if self.rows == other.rows => self.sample = Some(theirs.clone()),
            _ => {}
        }
        true
    }

    /// Mean and standard deviation (population) of each column's finite values.
    pub fn moments(&self) -> (Vec<f64>, Vec<f64>) {
        let d = self.dim();
        (0..d)
            .map(|i| {
                let k = i * d + i;
                let n = self.n[k];
                if n < 1.0 {
                    return (f64::NAN, f64::NAN);
                }
                let mean_u = self.s[k] / n;
                let var_u = (self.q[k] / n - mean_u * mean_u).max(0.0);
                (
                    self.shift[i] + self.scale[i] * mean_u,
                    self.scale[i] * var_u.sqrt(),
                )
            })
            .unzip()
    }

    /// `E[zzᵀ]` over all rows in the frame (`mean`, `std`), a missing value
    /// counting as `z = 0`; row-major d×d.
    pub fn second_moment(&self, mean: &[f64], std: &[f64]) -> Vec<f64> {
        let z = self.reframed(mean, std);
        let rows = (self.rows as f64).max(1.0);
        z.q.iter().map(|q| q / rows).collect()
    }

    /// Pearson correlation of every pair (i < j, row-major upper triangle),
    /// from the rows where both are finite; NaN when degenerate.
    pub fn correlations(&self) -> Vec<f64> {
        let d = self.dim();
        let mut out = Vec::with_capacity(d * d.saturating_sub(1) / 2);
        for i in 0..d {
            for j in (i + 1)..d {
                let k = i * d + j;
                let n = self.n[k];
                if n < 3.0 {
                    out.push(f64::NAN);
                    continue;
                }
                let (mi, mj) = (self.s[k] / n, self.s[j * d + i] / n);
                let cov = self.q[k] / n - mi * mj;
                // Variances over the rows where the column itself is finite.
                let var = |c: usize| {
                    let kk = c * d + c;
                    let m = self.s[kk] / self.n[kk];
                    (self.q[kk] / self.n[kk] - m * m).max(0.0)
                };
                let denominator = (var(i) * var(j)).sqrt();
                out.push(if denominator > 0.0 {
                    (cov / denominator).clamp(-1.0, 1.0)
                } else {
                    f64::NAN
                });
            }
        }
        out
    }

    /// Whether the sums carry a row sample (a reference profiled in this process).
    pub fn has_sample(&self) -> bool {
        self.sample.is_some()
    }

    /// Forgets the row sample (once the model is fitted).
    pub fn drop_sample(&mut self) {
        self.sample = None;
    }

    /// Empty sums with the same columns and frame (no sample).
    pub fn emptied(&self) -> JointSums {
        let mut out = JointSums::new(
            self.columns.clone(),
            self.shift.clone(),
            self.scale.clone(),
            false,
        );
        out.indicators = self.indicators.clone();
        out
    }

    /// The sums without the data columns called `names` (a categorical
    /// column with all its indicators).
    pub fn without(&self, names: &[&str]) -> JointSums {
        let keep: Vec<usize> = (0..self.dim())
            .filter(|&i| !names.contains(&self.source(i)))
            .collect();
        self.select(&keep)
    }

    /// `empty` (no rows yet; an empty frame is taken from the first rows)
    /// filled with `rows` rows, in parallel over blocks of rows: `encode`
    /// gives the joint columns' values of a range of rows.
    pub fn from_rows(
        empty: JointSums,
        rows: usize,
        encode: impl Fn(std::ops::Range<usize>) -> Vec<Vec<f64>> + Sync,
    ) -> JointSums {
        use rayon::prelude::*;
        const BLOCK: usize = 65_536;
        let empty = if empty.shift.len() == empty.dim() {
            empty
        } else {
            let head = encode(0..rows.min(16_384));
            let head: Vec<&[f64]> = head.iter().map(Vec::as_slice).collect();
            empty.framed(&head)
        };
        let blocks: Vec<JointSums> = (0..rows.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| {
                let range = b * BLOCK..((b + 1) * BLOCK).min(rows);
                let values = encode(range.clone());
                let chunk: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
                let mut sums = empty.clone();
                sums.push_chunk(&chunk, range.start as u64);
                sums
            })
            .collect();
        let mut out = empty;
        for block in &blocks {
            out.merge(block);
        }
        out
    }

    /// Rows of the sample (reference only).
    fn sample_rows(&self) -> Vec<&[f64]> {
        self.sample
            .as_ref()
            .map(|s| s.heap.iter().map(|e| e.values.as_slice()).collect())
            .unwrap_or_default()
    }
}

/// The data column of joint column `i` given the columns and their indicators.
fn source_of<'a>(columns: &'a [String], indicators: &'a [Option<Indicator>], i: usize) -> &'a str {
    match indicators.get(i).and_then(Option::as_ref) {
        Some(indicator) => &indicator.column,
        None => &columns[i],
    }
}

/// The reference's PCA model and its reconstruction error (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaModel {
    /// Columns, in order (numeric columns and indicators, not constant in
    /// the reference).
    pub columns: Vec<String>,
    /// Reference mean per column (the standardization and the imputation).
    pub mean: Vec<f64>,
    /// Reference standard deviation per column.
    pub std: Vec<f64>,
    /// Kept principal components (unit vectors of length d), largest first.
    pub components: Vec<Vec<f64>>,
    /// Share of the variance the kept components explain.
    pub variance_kept: f64,
    /// Mean squared reconstruction error per row (exact, all reference rows).
    pub error_mean: f64,
    /// Standard deviation of the per-row error (on the reference sample).
    pub error_std: f64,
    /// Reference rows used to measure `error_std`.
    pub sample_rows: u64,
    /// Mean squared reconstruction error per column.
    pub column_error: Vec<f64>,
    /// `M = E[zzᵀ]` of the reference, row-major d×d.
    pub second_moment: Vec<f64>,
    /// Reference rows.
    pub rows: u64,
    /// Pairwise correlations of the reference (upper triangle, row-major;
    /// null when a pair has too few rows or no variance).
    pub correlations: Vec<Option<f64>>,
    /// Rows where both columns of each pair were finite (same order).
    pub pair_rows: Vec<f64>,
    /// The categories the columns indicate (see [`JointSums::indicators`];
    /// empty when every column is numeric).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indicators: Vec<Option<Indicator>>,
}

/// Eigen-decomposition of a symmetric d×d matrix (row-major) by cyclic
/// Jacobi rotations: eigenvalues descending and their unit eigenvectors.
/// Converges quadratically; d ≤ [`JOINT_COLUMNS`] so a sweep costs O(d³) ≈ 0.3 M flops.
pub fn symmetric_eigen(matrix: &[f64], d: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut a = matrix.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| ((i + 1)..d).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum();
        let scale: f64 = (0..d).map(|i| a[i * d + i] * a[i * d + i]).sum::<f64>();
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for p in 0..d {
            for r in (p + 1)..d {
                let apr = a[p * d + r];
                if apr.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[r * d + r] - a[p * d + p]) / (2.0 * apr);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akr) = (a[k * d + p], a[k * d + r]);
                    a[k * d + p] = c * akp - s * akr;
                    a[k * d + r] = s * akp + c * akr;
                }
                for k in 0..d {
                    let (apk, ark) = (a[p * d + k], a[r * d + k]);
                    a[p * d + k] = c * apk - s * ark;
                    a[r * d + k] = s * apk + c * ark;
                }
                for k in 0..d {
                    let (vkp, vkr) = (v[k * d + p], v[k * d + r]);
                    v[k * d + p] = c * vkp - s * vkr;
                    v[k * d + r] = s * vkp + c * vkr;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&x, &y| a[y * d + y].total_cmp(&a[x * d + x]));
    let values = order.iter().map(|&k| a[k * d + k]).collect();
    let vectors = order
        .iter()
        .map(|&k| (0..d).map(|i| v[i * d + k]).collect())
        .collect();
    (values, vectors)
}

/// `Q = I − VVᵀ` for the kept components.
fn residual_projector(components: &[Vec<f64>], d: usize) -> Vec<f64> {
    let mut q = vec![0.0; d * d];
    for i in 0..d {
        q[i * d + i] = 1.0;
    }
    for v in components {
        for i in 0..d {
            for j in 0..d {
                q[i * d + j] -= v[i] * v[j];
            }
        }
    }
    q
}

/// Mean error per column, `(Q M Q)_jj`.
fn column_errors(q: &[f64], m: &[f64], d: usize) -> Vec<f64> {
    let mut qm = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let qik = q[i * d + k];
            if qik == 0.0 {
                continue;
            }
            for j in 0..d {
                qm[i * d + j] += qik * m[k * d + j];
            }
        }
    }
    (0..d)
        .map(|j| {
            (0..d)
                .map(|k| qm[j * d + k] * q[k * d + j])
                .sum::<f64>()
                .max(0.0)
        })
        .collect()
}

fn pair_rows(sums: &JointSums) -> Vec<f64> {
    let d = sums.dim();
    (0..d)
        .flat_map(|i| ((i + 1)..d).map(move |j| (i, j)))
        .map(|(i, j)| sums.n[i * d + j])
        .collect()
}

impl PcaModel {
    /// Fits the model on a reference's sums (which must carry their sample).
    /// None when fewer than two columns vary.
    pub fn fit(sums: &JointSums) -> Option<PcaModel> {
        let (mean, std) = sums.moments();
        let keep: Vec<usize> = (0..sums.dim())
            .filter(|&i| mean[i].is_finite() && std[i].is_finite() && std[i] > 0.0)
            .collect();
        if keep.len() < 2 || sums.rows < 2 {
            return None;
        }
        let sub = sums.select(&keep);
        let (mean, std): (Vec<f64>, Vec<f64>) = keep.iter().map(|&i| (mean[i], std[i])).unzip();
        let d = keep.len();
        let m = sub.second_moment(&mean, &std);
        let (values, vectors) = symmetric_eigen(&m, d);
        let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
        let mut kept = 0.0;
        let mut components = Vec::new();
        for (value, vector) in values.iter().zip(vectors) {
            if total > 0.0 && kept / total >= VARIANCE_KEPT {
                break;
            }
            kept += value.max(0.0);
            components.push(vector);
        }
        let q = residual_projector(&components, d);
        let column_error = column_errors(&q, &m, d);
        let error_mean = column_error.iter().sum();
        // Per-row spread on the sample.
        let errors: Vec<f64> = sub
            .sample_rows()
            .iter()
            .map(|row| row_error(row, &mean, &std, &components))
            .collect();
        let count = errors.len() as f64;
        let error_std = if errors.len() >= 2 {
            let avg = errors.iter().sum::<f64>() / count;
            (errors.iter().map(|e| (e - avg).powi(2)).sum::<f64>() / (count - 1.0)).sqrt()
        } else {
            f64::NAN
        };
        Some(PcaModel {
            columns: sub.columns.clone(),
            mean,
            std,
            components,
            variance_kept: if total > 0.0 { kept / total } else { 0.0 },
            error_mean,
            error_std,
            sample_rows: errors.len() as u64,
            column_error,
            second_moment: m,
            rows: sums.rows,
            correlations: sub
                .correlations()
                .into_iter()
                .map(|r| r.is_finite().then_some(r))
                .collect(),
            pair_rows: pair_rows(&sub),
            indicators: if sub.indicators.iter().any(Option::is_some) {
                sub.indicators.clone()
            } else {
                Vec::new()
            },
        })
    }

    /// Empty sums in this model's frame, for a current profile.
    pub fn current_sums(&self) -> JointSums {
        let mut sums = JointSums::new(
            self.columns.clone(),
            self.mean.clone(),
            self.std.clone(),
            false,
        );
        sums.indicators = self.indicators.clone();
        sums
    }

    /// The data column of column `i`.
    pub fn source(&self, i: usize) -> &str {
        source_of(&self.columns, &self.indicators, i)
    }
}

impl JointSums {
    /// The sums of the columns at `keep` (indices into `columns`).
    fn select(&self, keep: &[usize]) -> JointSums {
        let d = self.dim();
        let k = keep.len();
        // Unframed sums (no rows yet) stay unframed.
        let framed = self.shift.len() == d && self.scale.len() == d;
        let frame = |values: &[f64]| -> Vec<f64> {
            if framed {
                keep.iter().map(|&i| values[i]).collect()
            } else {
                Vec::new()
            }
        };
        let mut out = JointSums::new(
            keep.iter().map(|&i| self.columns[i].clone()).collect(),
            frame(&self.shift),
            frame(&self.scale),
            false,
        );
        if keep
            .iter()
            .any(|&i| self.indicators.get(i).is_some_and(Option::is_some))
        {
            out.indicators = keep
                .iter()
                .map(|&i| self.indicators.get(i).cloned().flatten())
                .collect();
        }
        out.rows = self.rows;
        for (a, &i) in keep.iter().enumerate() {
            for (b, &j) in keep.iter().enumerate() {
                out.n[a * k + b] = self.n[i * d + j];
                out.s[a * k + b] = self.s[i * d + j];
                out.q[a * k + b] = self.q[i * d + j];
            }
        }
        if let Some(sample) = &self.sample {
            let mut selected = Sample::default();
            for entry in sample.heap.iter() {
                selected.heap.push(Sampled {
                    priority: entry.priority,
                    values: keep.iter().map(|&i| entry.values[i]).collect(),
                });
            }
            out.sample = Some(selected);
        }
        out
    }
}

/// One row's squared reconstruction error.
fn row_error(row: &[f64], mean: &[f64], std: &[f64], components: &[Vec<f64>]) -> f64 {
    let z: Vec<f64> = row
        .iter()
        .zip(mean.iter().zip(std))
        .map(|(&x, (&m, &s))| if x.is_finite() { (x - m) / s } else { 0.0 })
        .collect();
    let mut residual = z.clone();
    for v in components {
        let dot: f64 = v.iter().zip(&z).map(|(a, b)| a * b).sum();
        for (r, a) in residual.iter_mut().zip(v) {
            *r -= dot * a;
        }
    }
    residual.iter().map(|r| r * r).sum()
}

/// Thresholds of the joint test (`monitor.drift.multivariate` in keel.yaml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JointConfig {
    /// Run the test when the reference profile has a model.
    pub enabled: bool,
    /// Smallest relative change of the mean reconstruction error that counts.
    pub min_error_change: f64,
    /// Smallest change of a pair's correlation that counts.
    pub min_correlation_change: f64,
}

impl Default for JointConfig {
    fn default() -> Self {
        JointConfig {
            enabled: true,
            min_error_change: DEFAULT_MIN_ERROR_CHANGE,
            min_correlation_change: DEFAULT_MIN_CORRELATION_CHANGE,
        }
    }
}

/// A column's share of the error change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointDriver {
    /// Column name.
    pub column: String,
    /// Its mean squared reconstruction error in the reference.
    pub reference_error: f64,
    /// In the current data.
    pub current_error: f64,
    /// Its part of the change of the mean error (`Σ_j Q_ij ΔM_ij`; the parts add up to it).
    pub contribution: f64,
    /// `|contribution|` over the sum of every column's.
    pub share: f64,
}

/// A pair of columns whose correlation changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairChange {
    /// First column.
    pub a: String,
    /// Second column.
    pub b: String,
    /// Pearson correlation in the reference.
    pub reference: f64,
    /// In the current data.
    pub current: f64,
    /// Holm-adjusted p-value of the Fisher-z test.
    pub p_value_adjusted: f64,
    /// Whether the pair passed both thresholds.
    pub drifted: bool,
}

/// The dataset-level joint verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointVerdict {
    /// Whether the joint distribution drifted.
    pub drifted: bool,
    /// Method, in words.
    pub method: String,
    /// The rule that decided, in words.
    pub rule: String,
    /// Columns in the test.
    pub columns: Vec<String>,
    /// Principal components kept (of `columns.len()`).
    pub components: usize,
    /// Mean squared reconstruction error per row, reference.
    pub reference_error: f64,
    /// Same, current data.
    pub current_error: f64,
    /// `(current − reference) / reference`.
    pub error_change: f64,
    /// Two-sided p-value of the error change.
    pub error_p_value: Option<f64>,
    /// Combined p-value of the joint test (Bonferroni over its two parts).
    pub p_value: Option<f64>,
    /// Columns with the largest share of the error change (or in drifted
    /// pairs), most first.
    pub drivers: Vec<String>,
    /// Every column's error, reference and current, by share of the change.
    pub column_errors: Vec<JointDriver>,
    /// The pairs whose correlation changed most (drifted first; at most 10).
    pub pairs: Vec<PairChange>,
    /// Reference rows and current rows.
    pub n_ref: u64,
    /// Current rows.
    pub n_cur: u64,
}

fn normal_two_sided(z: f64) -> f64 {
    match Normal::new(0.0, 1.0) {
        Ok(normal) => (2.0 * normal.sf(z.abs())).clamp(0.0, 1.0),
        Err(_) => f64::NAN,
    }
}

/// The joint test of `current` (sums in any frame, the model's columns)
/// against the reference `model`. None when the columns differ or the
/// current data has no rows.
pub fn compare_joint(
    model: &PcaModel,
    current: &JointSums,
    config: &JointConfig,
    alpha: f64,
) -> Option<JointVerdict> {
    if current.columns != model.columns
        || current.indicators != model.indicators
        || current.rows == 0
    {
        return None;
    }
    let d = model.columns.len();
    let m = current.second_moment(&model.mean, &model.std);
    let q = residual_projector(&model.components, d);
    let cur_columns = column_errors(&q, &m, d);
    let current_error: f64 = cur_columns.iter().sum();
    let delta = current_error - model.error_mean;
    let error_change = if model.error_mean > 0.0 {
        delta / model.error_mean
    } else {
        0.0
    };
    let (n_ref, n_cur) = (model.rows, current.rows);
    let se = model.error_std * (1.0 / n_cur as f64 + 1.0 / n_ref as f64).sqrt();
    let error_p = (se.is_finite() && se > 0.0).then(|| normal_two_sided(delta / se));
    let error_drifted =
        error_change.abs() >= config.min_error_change && error_p.is_some_and(|p| p < alpha);
    // Each column's part of the change: Δ = tr(Q ΔM) = Σ_i Σ_j Q_ij ΔM_ij,
    // row i's sum going to column i, so only columns whose moments moved
    // take a part (an entry ij is split between i and j by symmetry).
    let contributions: Vec<f64> = (0..d)
        .map(|i| {
            (0..d)
                .map(|j| q[i * d + j] * (m[i * d + j] - model.second_moment[i * d + j]))
                .sum()
        })
        .collect();
    // One entry per data column: a categorical column's indicators add up
    // (errors and parts; its share is that of its parts' absolute values,
    // so categories moving in opposite directions do not hide it).
    let total_change: f64 = contributions.iter().map(|c| c.abs()).sum();
    let mut column_errors: Vec<JointDriver> = Vec::new();
    for j in 0..d {
        let share = if total_change > 0.0 {
            contributions[j].abs() / total_change
        } else {
            0.0
        };
        let source = model.source(j);
        match column_errors.iter_mut().find(|c| c.column == source) {
            Some(entry) => {
                entry.reference_error += model.column_error[j];
                entry.current_error += cur_columns[j];
                entry.contribution += contributions[j];
                entry.share += share;
            }
            None => column_errors.push(JointDriver {
                column: source.to_string(),
                reference_error: model.column_error[j],
                current_error: cur_columns[j],
                contribution: contributions[j],
                share,
            }),
        }
    }
    column_errors.sort_by(|a, b| b.share.total_cmp(&a.share));
    // Pairwise correlations.
    let current_r = current.correlations();
    let current_n = pair_rows(current);
    let mut tested: Vec<(usize, usize, f64, f64, f64)> = Vec::new(); // (i, j, r_ref, r_cur, p)
    let mut k = 0;
    for i in 0..d {
        for j in (i + 1)..d {
            let (rr, rc) = (model.correlations[k], current_r[k]);
            let (nr, nc) = (model.pair_rows[k], current_n[k]);
            k += 1;
            // Two categories of one column exclude each other: no test.
            if model.source(i) == model.source(j) {
                continue;
            }
            let Some(rr) = rr.filter(|_| rc.is_finite() && nr >= 4.0 && nc >= 4.0) else {
                continue;
            };
            let clip = |r: f64| r.clamp(-0.999_999, 0.999_999);
            let zeta = (clip(rc).atanh() - clip(rr).atanh())
                / (1.0 / (nr - 3.0) + 1.0 / (nc - 3.0)).sqrt();
            tested.push((i, j, rr, rc, normal_two_sided(zeta)));
        }
    }
    let adjusted = adjust(
        &tested.iter().map(|t| t.4).collect::<Vec<_>>(),
        Correction::Holm,
    );
    let mut pairs: Vec<PairChange> = tested
        .iter()
        .zip(&adjusted)
        .map(|(&(i, j, rr, rc, _), &p)| PairChange {
            a: model.columns[i].clone(),
            b: model.columns[j].clone(),
            reference: rr,
            current: rc,
            p_value_adjusted: p,
            drifted: (rc - rr).abs() >= config.min_correlation_change && p < alpha,
        })
        .collect();
    pairs.sort_by(|x, y| {
        y.drifted.cmp(&x.drifted).then(
            (y.current - y.reference)
                .abs()
                .total_cmp(&(x.current - x.reference).abs()),
        )
    });
    let pairs_drifted = pairs.iter().filter(|p| p.drifted).count();
    pairs.truncate(10);
    let pair_p = adjusted
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.min(p))));
    let p_value = match (error_p, pair_p) {
        (Some(a), Some(b)) => Some((2.0 * a.min(b)).min(1.0)),
        (Some(a), None) => Some(a),
        (None, Some(b)) => Some(b),
        (None, None) => None,
    };
    // Drivers: the columns making up 80 % of the error change (at most 5)
    // when the error drifted, then the columns of drifted pairs.
    let mut drivers: Vec<String> = Vec::new();
    if error_drifted {
        let mut covered = 0.0;
        for c in &column_errors {
            if covered >= 0.8 || drivers.len() >= 5 {
                break;
            }
            covered += c.share;
            drivers.push(c.column.clone());
        }
    }
    // A pair of an indicator names its categorical column.
    let source = |name: &str| -> String {
        model
            .columns
            .iter()
            .position(|c| c == name)
            .map_or(name, |i| model.source(i))
            .to_string()
    };
    for pair in pairs.iter().filter(|p| p.drifted) {
        for name in [source(&pair.a), source(&pair.b)] {
            if drivers.len() < 8 && !drivers.contains(&name) {
                drivers.push(name);
            }
        }
    }
    let drifted = error_drifted || pairs_drifted > 0;
    let rule = format!(
        "reconstruction error {:+.1}% (min {}%, p {}){}; {} of {} pairs changed correlation by >= {} with Holm p < {alpha}",
        error_change * 100.0,
        config.min_error_change * 100.0,
        error_p.map_or("-".into(), crate::drift::format_p),
        if error_drifted { ": DRIFT" } else { "" },
        pairs_drifted,
        tested.len(),
        config.min_correlation_change,
    );
    Some(JointVerdict {
        drifted,
        method: format!(
            "PCA reconstruction error ({} of {d} components, {:.0}% of the variance) + pairwise Fisher-z correlation tests",
            model.components.len(),
            model.variance_kept * 100.0
        ),
        rule,
        columns: model.columns.clone(),
        components: model.components.len(),
        reference_error: model.error_mean,
        current_error,
        error_change,
        error_p_value: error_p,
        p_value,
        drivers,
        column_errors,
        pairs,
        n_ref,
        n_cur,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_recovers_a_known_spectrum() {
        // [[2,1],[1,2]]: eigenvalues 3 and 1, vectors (1,1)/√2 and (1,-1)/√2.
        let (values, vectors) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((values[0] - 3.0).abs() < 1e-12 && (values[1] - 1.0).abs() < 1e-12);
        assert!((vectors[0][0].abs() - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((vectors[0][0] * vectors[0][1] - 0.5).abs() < 1e-12);
        // A 3×3 with a zero eigenvalue: rank one, v = (1, 2, 3).
        let v = [1.0, 2.0, 3.0];
        let m: Vec<f64> = (0..9).map(|k| v[k / 3] * v[k % 3]).collect();
        let (values, _) = symmetric_eigen(&m, 3);
        assert!((values[0] - 14.0).abs() < 1e-9, "{values:?}");
        assert!(values[1].abs() < 1e-9 && values[2].abs() < 1e-9);
    }

    #[test]
    fn categorical_indicators_share_the_column_budget_after_numeric_columns() {
        let numeric = |n: usize| (0..n).map(|i| JointInput::Numeric(format!("x{i}")));
        let region = || JointInput::Categorical {
            column: "region".into(),
            categories: ["n", "s", "e", "w", "c"].map(String::from).to_vec(),
        };
        // Room for two of the five indicators, the most frequent first.
        let mut inputs: Vec<JointInput> = vec![region()];
        inputs.extend(numeric(JOINT_COLUMNS - 2));
        let sums = JointSums::planned(inputs, false).unwrap();
        assert_eq!(sums.dim(), JOINT_COLUMNS);
        assert_eq!(sums.columns[JOINT_COLUMNS - 2..], ["region=n", "region=s"]);
        assert_eq!(sums.source(JOINT_COLUMNS - 1), "region");
        assert_eq!(sums.source(0), "x0");
        assert_eq!(
            sums.inputs().last(),
            Some(&JointInput::Categorical {
                column: "region".into(),
                categories: vec!["n".into(), "s".into()],
            })
        );
        // A full budget of numeric columns leaves categorical ones out, as
        // before they took part (no indicator field at all).
        let mut inputs: Vec<JointInput> = numeric(JOINT_COLUMNS + 3).collect();
        inputs.push(region());
        let sums = JointSums::planned(inputs, false).unwrap();
        assert_eq!(sums.dim(), JOINT_COLUMNS);
        assert!(sums.indicators.is_empty());
        // Dropping a categorical column drops all its indicators.
        let sums =
            JointSums::planned(vec![region(), JointInput::Numeric("y".into())], false).unwrap();
        assert_eq!(sums.without(&["region"]).columns, ["y"]);
        assert!(sums.without(&["region"]).indicators.is_empty());
        // Indicator values: 1 for its category, 0 for another, missing for missing.
        let categories = vec!["n".to_string(), "s".to_string()];
        let values: Vec<f64> = indicator_values(&categories, Some("s")).collect();
        assert_eq!(values, [0.0, 1.0]);
        let values: Vec<f64> = indicator_values(&categories, Some("w")).collect();
        assert_eq!(values, [0.0, 0.0]);
        assert!(indicator_values(&categories, None).all(f64::is_nan));
    }

    #[test]
    fn reframing_and_merging_are_exact() {
        let a: Vec<f64> = (0..50)
            .map(|i| (i as f64 * 0.37).sin() * 10.0 + 3.0)
            .collect();
        let mut b: Vec<f64> = (0..50)
            .map(|i| (i as f64 * 0.11).cos() * 2.0 - 1.0)
            .collect();
        b[7] = f64::NAN;
        let names = vec!["a".to_string(), "b".to_string()];
        let mut whole = JointSums::new(names.clone(), vec![0.0, 0.0], vec![1.0, 1.0], false);
        whole.push_chunk(&[&a, &b], 0);
        let mut first =
            JointSums::new(names.clone(), vec![], vec![], false).framed(&[&a[..20], &b[..20]]);
        first.push_chunk(&[&a[..20], &b[..20]], 0);
        let mut second = JointSums::new(names, vec![5.0, -2.0], vec![3.0, 0.5], false);
        second.push_chunk(&[&a[20..], &b[20..]], 20);
        assert!(first.merge(&second));
        let merged = first.reframed(&[0.0, 0.0], &[1.0, 1.0]);
        for (x, y) in whole.q.iter().zip(&merged.q) {
            assert!((x - y).abs() < 1e-9 * x.abs().max(1.0), "{x} vs {y}");
        }
        assert_eq!(whole.n, merged.n);
        assert_eq!(whole.rows, merged.rows);
        let (mean, std) = whole.moments();
        let direct = a.iter().sum::<f64>() / 50.0;
        assert!((mean[0] - direct).abs() < 1e-12);
        assert!(std[1] > 0.0);
    }
}
