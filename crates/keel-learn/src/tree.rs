//! Histogram-based decision trees shared by the random forest and gradient
//! boosting: features are bucketed into at most 255 bins (thresholds from
//! quantiles; values and thresholds compared in float32, exactly as the
//! exported ONNX TreeEnsemble evaluates them), and a tree is grown on per-row statistics `(g, h)` with the
//! gain `sum_k GL_k^2/(HL+l) + GR_k^2/(HR+l) - G_k^2/(H+l)`.
//!
//! With `g = w * y` and `h = w` that gain is the weighted variance reduction,
//! and with one-hot class targets it is exactly the Gini decrease of CART, so
//! [`grow`] serves the forests (classification and regression). Boosting
//! shares the bins, the tree and this gain but grows with [`crate::hist`],
//! laid out for its one output per tree and float32 statistics.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::preprocess::Matrix;
use crate::rng::Rng;

/// Most bins per feature.
pub const MAX_BINS: usize = 255;
/// Rows sampled to place the bin thresholds.
const BINNING_SAMPLE: usize = 200_000;
/// Nodes smaller than this find splits by sorting rather than by histogram.
const SMALL_NODE: usize = 48;

/// Per-feature split thresholds: value `x` falls in bin `b` = number of thresholds `< x`,
/// so "bin <= b" is exactly "x <= thresholds[b]".
#[derive(Debug, Clone)]
pub struct BinMapper {
    thresholds: Vec<Vec<f64>>,
}

/// Features bucketed into bins, one column per feature.
#[derive(Debug, Clone)]
pub struct Binned {
    /// `bins[feature][row]`.
    pub bins: Vec<Vec<u8>>,
    /// Number of bins of each feature.
    pub n_bins: Vec<usize>,
}

impl BinMapper {
    /// Places thresholds from (a seeded sample of) `x`.
    pub fn fit(x: &Matrix, seed: u64) -> Self {
        let sample: Vec<usize> = if x.rows > BINNING_SAMPLE {
            let mut rng = Rng::derive(seed, 0xB1);
            (0..BINNING_SAMPLE).map(|_| rng.below(x.rows)).collect()
        } else {
            (0..x.rows).collect()
        };
        let thresholds = (0..x.cols)
            .into_par_iter()
            .map(|f| {
                let mut values: Vec<f32> = sample
                    .iter()
                    .map(|&i| x.data[i * x.cols + f] as f32)
                    .collect();
                values.sort_by(f32::total_cmp);
                let mut distinct = values.clone();
                distinct.dedup();
                if distinct.len() <= MAX_BINS {
                    distinct
                        .windows(2)
                        .map(|w| midpoint(w[0], w[1]))
                        .collect::<Vec<f32>>()
                } else {
                    let mut cuts = Vec::with_capacity(MAX_BINS);
                    for q in 1..MAX_BINS {
                        let value = values[q * values.len() / MAX_BINS];
                        // The next distinct value above `value`.
                        let next = distinct.partition_point(|d| *d <= value);
                        if next < distinct.len() {
                            let cut = midpoint(value, distinct[next]);
                            if cuts.last().is_none_or(|last| *last < cut) {
                                cuts.push(cut);
                            }
                        }
                    }
                    cuts
                }
                .into_iter()
                .map(f64::from)
                .collect()
            })
            .collect();
        BinMapper { thresholds }
    }

    /// Buckets every value of `x`.
    pub fn transform(&self, x: &Matrix) -> Binned {
        let bins = (0..x.cols)
            .into_par_iter()
            .map(|f| {
                (0..x.rows)
                    .map(|i| self.bin(f, x.data[i * x.cols + f]))
                    .collect()
            })
            .collect();
        Binned {
            bins,
            n_bins: self.n_bins(),
        }
    }

    /// Buckets every value of `x`, row-major: `bins[row * x.cols + feature]`.
    pub fn transform_rows(&self, x: &Matrix) -> Vec<u8> {
        let mut bins = vec![0u8; x.data.len()];
        let chunk = x.cols.max(1) * 4096;
        bins.par_chunks_mut(chunk)
            .zip(x.data.par_chunks(chunk))
            .for_each(|(out, values)| {
                for (i, (bin, &value)) in out.iter_mut().zip(values).enumerate() {
                    *bin = self.bin(i % x.cols, value);
                }
            });
        bins
    }

    /// Number of bins of each feature.
    pub fn n_bins(&self) -> Vec<usize> {
        self.thresholds.iter().map(|t| t.len() + 1).collect()
    }

    fn bin(&self, feature: usize, value: f64) -> u8 {
        let value = f64::from(value as f32);
        self.thresholds[feature].partition_point(|t| *t < value) as u8
    }

    /// The raw-value threshold of "bin <= `bin`" for `feature`.
    pub fn threshold(&self, feature: usize, bin: usize) -> f64 {
        self.thresholds[feature][bin]
    }
}

fn midpoint(a: f32, b: f32) -> f32 {
    let mid = a + (b - a) / 2.0;
    // Guard against rounding onto `b`, which would send `b` left.
    if mid >= b { a } else { mid }
}

/// A binary tree in flat arrays (the layout of ONNX's TreeEnsemble attributes).
/// Node `i` is a leaf when `features[i] < 0`; otherwise rows with
/// `x[features[i]] <= thresholds[i]` go to `left[i]`, the others to `right[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Split feature per node, -1 for leaves.
    pub features: Vec<i32>,
    /// Split threshold per node.
    pub thresholds: Vec<f64>,
    /// Left child per node.
    pub left: Vec<u32>,
    /// Right child per node.
    pub right: Vec<u32>,
    /// `outputs` values per node (meaningful at leaves).
    pub values: Vec<f64>,
    /// Values per node.
    pub outputs: usize,
}

impl Tree {
    /// The leaf values for one encoded row.
    pub fn predict(&self, row: &[f64]) -> &[f64] {
        let mut node = 0usize;
        while self.features[node] >= 0 {
            let feature = self.features[node] as usize;
            // Compared in float32, as ONNX runtimes do (thresholds are float32 values).
            node = if (row[feature] as f32) <= (self.thresholds[node] as f32) {
                self.left[node] as usize
            } else {
                self.right[node] as usize
            };
        }
        &self.values[node * self.outputs..(node + 1) * self.outputs]
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// Whether the tree has no nodes (never true for a fitted tree).
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// A tree without nodes, for a grower to fill (root first).
    pub(crate) fn empty(outputs: usize) -> Tree {
        Tree {
            features: Vec::new(),
            thresholds: Vec::new(),
            left: Vec::new(),
            right: Vec::new(),
            values: Vec::new(),
            outputs,
        }
    }

    pub(crate) fn push_leaf(&mut self, value: &[f64]) -> usize {
        self.features.push(-1);
        self.thresholds.push(0.0);
        self.left.push(0);
        self.right.push(0);
        self.values.extend_from_slice(value);
        self.features.len() - 1
    }
}

/// Settings of one tree.
#[derive(Debug, Clone, Copy)]
pub struct TreeParams {
    /// Deepest level (root is 0).
    pub max_depth: usize,
    /// Most leaves.
    pub max_leaves: usize,
    /// Fewest rows in a leaf.
    pub min_samples_leaf: usize,
    /// Smallest hessian sum in a leaf.
    pub min_hessian: f64,
    /// L2 penalty on leaf values.
    pub lambda: f64,
    /// Features tried per split (sampled without replacement when fewer than all).
    pub max_features: usize,
    /// Expand the best leaf first (boosting) rather than depth first (forests).
    pub best_first: bool,
}

/// Per-row statistics the tree is grown on: `g[row * outputs + k]` and `h[row]`.
pub struct Stats<'a> {
    /// Gradient-like sums, `outputs` per row.
    pub g: &'a [f64],
    /// Hessian-like weight per row.
    pub h: &'a [f64],
    /// Number of outputs.
    pub outputs: usize,
}

/// A grown tree plus where each training row ended: rows `rows[start..end]` sit in leaf `node`.
pub struct Grown {
    /// The tree; leaf values are `G / (H + lambda)`.
    pub tree: Tree,
    /// Row indices, grouped by leaf.
    pub rows: Vec<u32>,
    /// `(leaf node, start, end)` ranges into `rows`.
    pub leaves: Vec<(usize, usize, usize)>,
}

#[derive(Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
}

struct Pending {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    histogram: Option<Vec<Vec<f64>>>,
    split: Option<Split>,
}

/// Grows one tree on `rows` (each row's weight lives in `stats.h`).
pub fn grow(
    binned: &Binned,
    mapper: &BinMapper,
    stats: &Stats<'_>,
    rows: Vec<u32>,
    params: &TreeParams,
    rng: &mut Rng,
) -> Grown {
    let n_features = binned.bins.len();
    let subtraction = params.max_features >= n_features;
    let grower = Grower {
        binned,
        stats,
        params,
    };
    let mut rows = rows;
    let mut tree = Tree::empty(stats.outputs);
    let root_value = grower.leaf_value(&rows);
    tree.push_leaf(&root_value);
    let mut pending = vec![grower.evaluate(0, 0, rows.len(), 0, &rows, None, subtraction, rng)];
    let mut leaves = Vec::new();
    let mut n_leaves = 1;
    loop {
        let pick = if params.best_first {
            best_gain(pending.iter().map(|p| p.split.map(|s| s.gain)))
        } else {
            (!pending.is_empty()).then(|| pending.len() - 1)
        };
        let Some(index) = pick else { break };
        let current = pending.swap_remove(index);
        let Some(split) = current.split.filter(|_| n_leaves < params.max_leaves) else {
            leaves.push((current.node, current.start, current.end));
            if params.best_first && n_leaves >= params.max_leaves {
                // No more splits: everything still pending is a leaf (drained below).
                break;
            }
            continue;
        };
        // Partition the node's rows, keeping each side in ascending order.
        let column = &binned.bins[split.feature];
        let segment = &mut rows[current.start..current.end];
        let (mut left_rows, mut right_rows): (Vec<u32>, Vec<u32>) = segment
            .iter()
            .partition(|&&row| column[row as usize] as usize <= split.bin);
        let mid = current.start + left_rows.len();
        segment[..left_rows.len()].copy_from_slice(&left_rows);
        segment[left_rows.len()..].copy_from_slice(&right_rows);
        let left_value = grower.leaf_value(&left_rows);
        let right_value = grower.leaf_value(&right_rows);
        let left = tree.push_leaf(&left_value);
        let right = tree.push_leaf(&right_value);
        tree.features[current.node] = split.feature as i32;
        tree.thresholds[current.node] = mapper.threshold(split.feature, split.bin);
        tree.left[current.node] = left as u32;
        tree.right[current.node] = right as u32;
        n_leaves += 1;
        // Histograms: build the smaller child's, subtract for the larger.
        let (small_histogram, large_histogram, small_is_left) = match current.histogram {
            Some(parent) if subtraction => {
                let small_is_left = left_rows.len() <= right_rows.len();
                let small = if small_is_left {
                    &left_rows
                } else {
                    &right_rows
                };
                let small_histogram =
                    grower.histograms(small, &(0..n_features).collect::<Vec<_>>());
                let large_histogram: Vec<Vec<f64>> = parent
                    .into_iter()
                    .zip(&small_histogram)
                    .map(|(mut p, s)| {
                        p.iter_mut().zip(s).for_each(|(a, b)| *a -= b);
                        p
                    })
                    .collect();
                (Some(small_histogram), Some(large_histogram), small_is_left)
            }
            _ => (None, None, true),
        };
        let (left_histogram, right_histogram) = if small_is_left {
            (small_histogram, large_histogram)
        } else {
            (large_histogram, small_histogram)
        };
        let depth = current.depth + 1;
        let left_pending = grower.evaluate(
            left,
            current.start,
            mid,
            depth,
            &left_rows,
            left_histogram,
            subtraction,
            rng,
        );
        let right_pending = grower.evaluate(
            right,
            mid,
            current.end,
            depth,
            &right_rows,
            right_histogram,
            subtraction,
            rng,
        );
        left_rows.clear();
        right_rows.clear();
        pending.push(right_pending);
        pending.push(left_pending);
    }
    leaves.extend(pending.drain(..).map(|p| (p.node, p.start, p.end)));
    Grown { tree, rows, leaves }
}

/// Index of the largest gain among those present (the first one on ties):
/// the leaf a best-first grower expands next.
pub(crate) fn best_gain(gains: impl Iterator<Item = Option<f64>>) -> Option<usize> {
    gains
        .enumerate()
        .filter_map(|(i, gain)| gain.map(|gain| (i, gain)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
}

struct Grower<'a> {
    binned: &'a Binned,
    stats: &'a Stats<'a>,
    params: &'a TreeParams,
}

impl Grower<'_> {
    fn leaf_value(&self, rows: &[u32]) -> Vec<f64> {
        let k = self.stats.outputs;
        let mut g = vec![0.0; k];
        let mut h = 0.0;
        for &row in rows {
            let row = row as usize;
            for (gk, value) in g.iter_mut().zip(&self.stats.g[row * k..(row + 1) * k]) {
                *gk += value;
            }
            h += self.stats.h[row];
        }
        g.iter()
            .map(|gk| gk / (h + self.params.lambda).max(1e-300))
            .collect()
    }

    /// Histograms of `features` over `rows`: per bin `[g_0..g_k-1, h, count]`.
    fn histograms(&self, rows: &[u32], features: &[usize]) -> Vec<Vec<f64>> {
        let k = self.stats.outputs;
        let width = k + 2;
        // Each row's statistics gathered once, in row order, so every
        // feature's pass reads them sequentially rather than at scattered
        // row indices. Per bin the sums run in the same order as before, so
        // the histograms are bit-for-bit the same.
        let mut gathered = Vec::with_capacity(rows.len() * (k + 1));
        for &row in rows {
            let row = row as usize;
            gathered.extend_from_slice(&self.stats.g[row * k..(row + 1) * k]);
            gathered.push(self.stats.h[row]);
        }
        let build = |&f: &usize| {
            let column = &self.binned.bins[f];
            let mut histogram = vec![0.0; self.binned.n_bins[f] * width];
            if k == 1 {
                for (&row, gh) in rows.iter().zip(gathered.chunks_exact(2)) {
                    let slot = &mut histogram[column[row as usize] as usize * 3..][..3];
                    slot[0] += gh[0];
                    slot[1] += gh[1];
                    slot[2] += 1.0;
                }
            } else {
                for (&row, gh) in rows.iter().zip(gathered.chunks_exact(k + 1)) {
                    let slot = &mut histogram[column[row as usize] as usize * width..][..width];
                    for (s, value) in slot[..=k].iter_mut().zip(gh) {
                        *s += value;
                    }
                    slot[k + 1] += 1.0;
                }
            }
            histogram
        };
        if rows.len() * features.len() > 200_000 {
            features.par_iter().map(build).collect()
        } else {
            features.iter().map(build).collect()
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        node: usize,
        start: usize,
        end: usize,
        depth: usize,
        rows: &[u32],
        histogram: Option<Vec<Vec<f64>>>,
        subtraction: bool,
        rng: &mut Rng,
    ) -> Pending {
        let n_features = self.binned.bins.len();
        let splittable = depth < self.params.max_depth
            && rows.len() >= 2 * self.params.min_samples_leaf.max(1)
            && n_features > 0;
        if !splittable {
            return Pending {
                node,
                start,
                end,
                depth,
                histogram: None,
                split: None,
            };
        }
        let features: Vec<usize> = if self.params.max_features >= n_features {
            (0..n_features).collect()
        } else {
            let mut all: Vec<usize> = (0..n_features).collect();
            for i in 0..self.params.max_features {
                let j = i + rng.below(n_features - i);
                all.swap(i, j);
            }
            all.truncate(self.params.max_features);
            all
        };
        let (split, histogram) = if histogram.is_none() && rows.len() < SMALL_NODE {
            (self.best_split_sorted(rows, &features), None)
        } else {
            let histogram = histogram.unwrap_or_else(|| self.histograms(rows, &features));
            let split = features
                .iter()
                .zip(&histogram)
                .filter_map(|(&f, h)| self.best_split_in(f, h))
                .fold(None, |best: Option<Split>, s| match best {
                    Some(b) if b.gain >= s.gain => Some(b),
                    _ => Some(s),
                });
            (split, subtraction.then_some(histogram))
        };
        Pending {
            node,
            start,
            end,
            depth,
            histogram,
            split,
        }
    }

    /// Best split of one feature from its histogram (rows per bin in the last slot).
    fn best_split_in(&self, feature: usize, histogram: &[f64]) -> Option<Split> {
        let k = self.stats.outputs;
        let width = k + 2;
        let n_bins = histogram.len() / width;
        let mut total = vec![0.0; width];
        for slot in histogram.chunks(width) {
            total.iter_mut().zip(slot).for_each(|(t, s)| *t += s);
        }
        let lambda = self.params.lambda;
        let score =
            |g: &[f64], h: f64| g.iter().map(|v| v * v).sum::<f64>() / (h + lambda).max(1e-300);
        let parent = score(&total[..k], total[k]);
        let mut left = vec![0.0; width];
        let mut right_g = vec![0.0; k];
        let mut best: Option<Split> = None;
        let min_leaf = self.params.min_samples_leaf.max(1) as f64;
        for bin in 0..n_bins.saturating_sub(1) {
            left.iter_mut()
                .zip(&histogram[bin * width..(bin + 1) * width])
                .for_each(|(l, s)| *l += s);
            let (left_h, left_n) = (left[k], left[k + 1]);
            let (right_h, right_n) = (total[k] - left_h, total[k + 1] - left_n);
            if left_n < min_leaf || right_n < min_leaf {
                continue;
            }
            if left_h < self.params.min_hessian || right_h < self.params.min_hessian {
                continue;
            }
            right_g
                .iter_mut()
                .zip(&total[..k])
                .zip(&left[..k])
                .for_each(|((r, t), l)| *r = t - l);
            let gain = score(&left[..k], left_h) + score(&right_g, right_h) - parent;
            if gain > 1e-12 * parent.abs().max(1e-12) && best.is_none_or(|b| gain > b.gain) {
                best = Some(Split { gain, feature, bin });
            }
        }
        best
    }

    /// Same search as [`Self::best_split_in`] for tiny nodes, from a histogram of only the bins present.
    fn best_split_sorted(&self, rows: &[u32], features: &[usize]) -> Option<Split> {
        let k = self.stats.outputs;
        let width = k + 2;
        let mut best: Option<Split> = None;
        let mut order: Vec<(u8, u32)> = Vec::with_capacity(rows.len());
        for &f in features {
            let column = &self.binned.bins[f];
            order.clear();
            order.extend(rows.iter().map(|&r| (column[r as usize], r)));
            order.sort_unstable();
            // Compact histogram: one slot per distinct bin; the split "after slot i"
            // is "bin <= bins[i]".
            let mut compact = Vec::new();
            let mut bins = Vec::new();
            for &(bin, row) in &order {
                if bins.last() != Some(&bin) {
                    bins.push(bin);
                    compact.extend(std::iter::repeat_n(0.0, width));
                }
                let slot = compact.len() - width;
                let row = row as usize;
                for j in 0..k {
                    compact[slot + j] += self.stats.g[row * k + j];
                }
                compact[slot + k] += self.stats.h[row];
                compact[slot + k + 1] += 1.0;
            }
            if let Some(split) = self.best_split_in(f, &compact) {
                let split = Split {
                    bin: bins[split.bin] as usize,
                    ..split
                };
                if best.is_none_or(|b| split.gain > b.gain) {
                    best = Some(split);
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_respect_thresholds_and_tree_learns_a_step() {
        let rows: Vec<Vec<f64>> = (0..200).map(|i| vec![i as f64, (i % 7) as f64]).collect();
        let x = Matrix::from_rows(&rows).unwrap();
        let mapper = BinMapper::fit(&x, 0);
        let binned = mapper.transform(&x);
        for (i, row) in rows.iter().enumerate() {
            let bin = binned.bins[0][i] as usize;
            if bin < binned.n_bins[0] - 1 {
                assert!(row[0] <= mapper.threshold(0, bin));
            }
            if bin > 0 {
                assert!(row[0] > mapper.threshold(0, bin - 1));
            }
        }
        // y = 1 when x0 > 120: one split must find it exactly.
        let g: Vec<f64> = rows
            .iter()
            .map(|r| f64::from(u8::from(r[0] > 120.0)))
            .collect();
        let h = vec![1.0; rows.len()];
        let stats = Stats {
            g: &g,
            h: &h,
            outputs: 1,
        };
        let params = TreeParams {
            max_depth: 1,
            max_leaves: 2,
            min_samples_leaf: 1,
            min_hessian: 0.0,
            lambda: 0.0,
            max_features: 2,
            best_first: true,
        };
        let grown = grow(
            &binned,
            &mapper,
            &stats,
            (0..200).collect(),
            &params,
            &mut Rng::new(0),
        );
        assert_eq!(grown.tree.features[0], 0);
        assert!((grown.tree.thresholds[0] - 120.5).abs() < 1e-9);
        assert_eq!(grown.tree.predict(&[10.0, 0.0]), &[0.0]);
        assert_eq!(grown.tree.predict(&[150.0, 0.0]), &[1.0]);
        assert_eq!(grown.leaves.iter().map(|l| l.2 - l.1).sum::<usize>(), 200);
    }

    #[test]
    fn small_and_histogram_paths_agree() {
        let mut rng = Rng::new(3);
        let rows: Vec<Vec<f64>> = (0..40).map(|_| vec![rng.normal(), rng.normal()]).collect();
        let x = Matrix::from_rows(&rows).unwrap();
        let mapper = BinMapper::fit(&x, 0);
        let binned = mapper.transform(&x);
        let g: Vec<f64> = rows.iter().map(|r| r[0] * 2.0 + r[1]).collect();
        let h = vec![1.0; rows.len()];
        let stats = Stats {
            g: &g,
            h: &h,
            outputs: 1,
        };
        let params = TreeParams {
            max_depth: 3,
            max_leaves: usize::MAX,
            min_samples_leaf: 1,
            min_hessian: 0.0,
            lambda: 0.0,
            max_features: 2,
            best_first: false,
        };
        let grower = Grower {
            binned: &binned,
            stats: &stats,
            params: &params,
        };
        let all: Vec<u32> = (0..40).collect();
        let sorted = grower.best_split_sorted(&all, &[0, 1]).unwrap();
        let histograms = grower.histograms(&all, &[0, 1]);
        let dense = [0, 1]
            .iter()
            .filter_map(|&f| grower.best_split_in(f, &histograms[f]))
            .max_by(|a, b| a.gain.total_cmp(&b.gain))
            .unwrap();
        assert_eq!((sorted.feature, sorted.bin), (dense.feature, dense.bin));
        assert!((sorted.gain - dense.gain).abs() < 1e-9);
    }
}
