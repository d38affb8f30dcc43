//! The tree grower of gradient boosting, laid out for speed the way LightGBM
//! and scikit-learn's HistGradientBoosting are (the random forest keeps the
//! general grower of [`crate::tree`]):
//!
//! - per-row statistics are float32 `[gradient, hessian]` pairs; histogram
//!   bins add them as float32 `[g, h, rows, 0]` vectors over runs of
//!   4096 (`F32_ROWS`) rows, each run then added into float64 bins (rows counted
//!   exactly);
//! - the features are bucketed once, row-major (`bins[row * features + f]`),
//!   so a node's row is one short read rather than one scattered byte per
//!   feature; a node's scattered rows are touched 64 (`TOUCH`) at a time before
//!   they are summed, so their cache misses overlap. A column-major copy
//!   serves partitioning, which reads one feature of scattered rows;
//! - only the smaller child's histogram is built; the larger child's is the
//!   parent's minus it, computed in the parent's buffer (buffers are pooled,
//!   node partitioning is in place with one scratch array: no allocation per
//!   split);
//! - histograms are built on rayon in tasks of (block of 16384 (`BLOCK`) rows,
//!   group of features), large nodes are partitioned in parallel blocks.
//!   Per bin, a histogram is the sum over the blocks, in block order, of each
//!   block's sum in row order — an order fixed by the data alone (feature
//!   groups do not change any sum), so the model bytes do not depend on the
//!   thread count.
//!
//! Splits, leaf values and the order in which leaves are expanded follow the
//! general grower: gain `GL^2/(HL+l) + GR^2/(HR+l) - G^2/(H+l)`, leaf value
//! `G / (H + l)` with `g` the negative gradient, best leaf first.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::preprocess::Matrix;
use crate::tree::{BinMapper, Tree, TreeParams, best_gain};

/// Histogram slots per feature (every feature has at most 255 bins).
const STRIDE: usize = 256;
/// Rows per histogram task; fixed, so the sums' order is too.
const BLOCK: usize = 1 << 14;
/// Rows summed in float32 before their sums join the float64 histogram.
const F32_ROWS: usize = 4096;
/// Rows touched ahead of their accumulation.
const TOUCH: usize = 64;
/// Nodes with fewer rows than this are histogrammed on the calling thread.
const PARALLEL_ROWS: usize = 4096;

/// Features bucketed into bins, row-major.
pub struct RowBins {
    /// `bins[row * features + feature]`.
    bins: Vec<u8>,
    /// The same, column-major (`columns[feature * rows + row]`): partitioning
    /// a node reads one feature of scattered rows, which one column keeps close.
    columns: Vec<u8>,
    /// Number of features.
    features: usize,
    /// Number of rows (also when there are no features).
    rows: usize,
    /// Number of bins of each feature.
    n_bins: Vec<usize>,
}

impl RowBins {
    /// Buckets every value of `x` with `mapper`.
    pub fn new(mapper: &BinMapper, x: &Matrix) -> Self {
        let bins = mapper.transform_rows(x);
        let mut columns = vec![0u8; bins.len()];
        if x.cols > 0 {
            columns
                .par_chunks_mut(x.rows.max(1))
                .enumerate()
                .for_each(|(f, column)| {
                    for (value, row) in column.iter_mut().zip(bins.chunks_exact(x.cols)) {
                        *value = row[f];
                    }
                });
        }
        RowBins {
            bins,
            columns,
            features: x.cols,
            rows: x.rows,
            n_bins: mapper.n_bins(),
        }
    }
}

/// One histogram bin: sums of gradients and hessians, and the row count.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Slot {
    g: f64,
    h: f64,
    n: u64,
}

impl Slot {
    fn add(&mut self, other: &Slot) {
        self.g += other.g;
        self.h += other.h;
        self.n += other.n;
    }

    fn minus(&self, other: &Slot) -> Slot {
        Slot {
            g: self.g - other.g,
            h: self.h - other.h,
            n: self.n - other.n,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
    /// Totals of the rows going left.
    left: Slot,
}

struct Node {
    id: usize,
    start: usize,
    end: usize,
    depth: usize,
    totals: Slot,
    histogram: Option<Vec<Slot>>,
    split: Option<Split>,
}

/// Grows boosting trees on one binned table, reusing its buffers from tree to tree.
pub struct Grower<'a> {
    binned: &'a RowBins,
    params: &'a TreeParams,
    /// Row indices, grouped by node (by leaf once a tree is grown).
    rows: Vec<u32>,
    scratch: Vec<u32>,
    /// Histograms of the row blocks after the first, while one is built.
    partial: Vec<Slot>,
    /// Spare histogram buffers.
    pool: Vec<Vec<Slot>>,
    /// `(leaf node, start, end)` ranges into `rows` of the last tree.
    leaves: Vec<(usize, usize, usize)>,
}

impl<'a> Grower<'a> {
    /// A grower for `binned` with `params` (`max_features` and `best_first` are ignored:
    /// boosting looks at every feature and expands the best leaf first).
    pub fn new(binned: &'a RowBins, params: &'a TreeParams) -> Self {
        let n = binned.rows;
        Grower {
            binned,
            params,
            rows: (0..n as u32).collect(),
            scratch: vec![0; n],
            partial: Vec::new(),
            pool: Vec::new(),
            leaves: Vec::new(),
        }
    }

    /// The leaves of the last tree grown, as `(node, rows)`.
    pub fn leaves(&self) -> impl Iterator<Item = (usize, &[u32])> {
        self.leaves
            .iter()
            .map(|&(node, start, end)| (node, &self.rows[start..end]))
    }

    /// Grows one tree on all rows, with `gh[row] = [negative gradient, hessian]`.
    pub fn grow(&mut self, gh: &[[f32; 2]], mapper: &BinMapper) -> Tree {
        let n = self.rows.len();
        self.rows
            .iter_mut()
            .enumerate()
            .for_each(|(i, r)| *r = i as u32);
        self.leaves.clear();
        let mut tree = Tree::empty(1);
        let mut totals = Slot::default();
        for &[g, h] in gh {
            totals.add(&Slot {
                g: f64::from(g),
                h: f64::from(h),
                n: 1,
            });
        }
        tree.push_leaf(&[self.value(&totals)]);
        let root_histogram = self.splittable(n, 0).then(|| {
            let mut histogram = self.buffer();
            build(
                self.binned,
                &mut self.partial,
                &self.rows,
                gh,
                &mut histogram,
                false,
            );
            histogram
        });
        let mut pending = vec![self.evaluate(Node {
            id: 0,
            start: 0,
            end: n,
            depth: 0,
            totals,
            histogram: root_histogram,
            split: None,
        })];
        let mut n_leaves = 1;
        while n_leaves < self.params.max_leaves {
            let pick = best_gain(pending.iter().map(|p| p.split.map(|s| s.gain)));
            let Some(index) = pick else { break };
            let mut node = pending.swap_remove(index);
            let Some(split) = node.split else { break };
            let mid = node.start + self.partition(node.start, node.end, &split);
            let right_totals = node.totals.minus(&split.left);
            let left_id = tree.push_leaf(&[self.value(&split.left)]);
            let right_id = tree.push_leaf(&[self.value(&right_totals)]);
            tree.features[node.id] = split.feature as i32;
            tree.thresholds[node.id] = mapper.threshold(split.feature, split.bin);
            tree.left[node.id] = left_id as u32;
            tree.right[node.id] = right_id as u32;
            n_leaves += 1;
            let depth = node.depth + 1;
            let mut left = Node {
                id: left_id,
                start: node.start,
                end: mid,
                depth,
                totals: split.left,
                histogram: None,
                split: None,
            };
            let mut right = Node {
                id: right_id,
                start: mid,
                end: node.end,
                depth,
                totals: right_totals,
                histogram: None,
                split: None,
            };
            let parent_histogram = node.histogram.take();
            let needed = n_leaves < self.params.max_leaves
                && (self.splittable(mid - node.start, depth)
                    || self.splittable(node.end - mid, depth));
            match parent_histogram {
                Some(mut parent) if needed => {
                    // Build the smaller child's histogram; the parent's buffer becomes the larger's.
                    let (small, large) = if mid - node.start <= node.end - mid {
                        (&mut left, &mut right)
                    } else {
                        (&mut right, &mut left)
                    };
                    let mut histogram = self.buffer();
                    let rows = &self.rows[small.start..small.end];
                    build(
                        self.binned,
                        &mut self.partial,
                        rows,
                        gh,
                        &mut histogram,
                        true,
                    );
                    parent
                        .iter_mut()
                        .zip(&histogram)
                        .for_each(|(p, s)| *p = p.minus(s));
                    small.histogram = Some(histogram);
                    large.histogram = Some(parent);
                }
                Some(parent) => self.pool.push(parent),
                None => {}
            }
            let left = self.evaluate(left);
            let right = self.evaluate(right);
            pending.push(right);
            pending.push(left);
        }
        for node in pending {
            if let Some(histogram) = node.histogram {
                self.pool.push(histogram);
            }
            self.leaves.push((node.id, node.start, node.end));
        }
        tree
    }

    fn value(&self, totals: &Slot) -> f64 {
        totals.g / (totals.h + self.params.lambda).max(1e-300)
    }

    fn splittable(&self, rows: usize, depth: usize) -> bool {
        depth < self.params.max_depth
            && rows >= 2 * self.params.min_samples_leaf.max(1)
            && self.binned.features > 0
    }

    fn buffer(&mut self) -> Vec<Slot> {
        let mut buffer = self.pool.pop().unwrap_or_default();
        buffer.clear();
        buffer.resize(self.binned.features * STRIDE, Slot::default());
        buffer
    }

    /// Finds the node's best split when it may split (it keeps its histogram only then).
    fn evaluate(&mut self, mut node: Node) -> Node {
        let Some(histogram) = node.histogram.take() else {
            return node;
        };
        if !self.splittable(node.end - node.start, node.depth) {
            self.pool.push(histogram);
            return node;
        }
        node.split = (0..self.binned.features)
            .filter_map(|f| self.best_split_in(f, &histogram[f * STRIDE..], &node.totals))
            .fold(None, |best: Option<Split>, s| match best {
                Some(b) if b.gain >= s.gain => Some(b),
                _ => Some(s),
            });
        if node.split.is_some() {
            node.histogram = Some(histogram);
        } else {
            self.pool.push(histogram);
        }
        node
    }

    /// Best split of one feature from its histogram.
    fn best_split_in(&self, feature: usize, histogram: &[Slot], total: &Slot) -> Option<Split> {
        let lambda = self.params.lambda;
        let score = |g: f64, h: f64| g * g / (h + lambda).max(1e-300);
        let parent = score(total.g, total.h);
        let min_leaf = self.params.min_samples_leaf.max(1) as u64;
        let mut left = Slot::default();
        let mut best: Option<Split> = None;
        let n_bins = self.binned.n_bins[feature];
        for (bin, slot) in histogram[..n_bins.saturating_sub(1)].iter().enumerate() {
            left.add(slot);
            let right = total.minus(&left);
            if left.n < min_leaf || right.n < min_leaf {
                continue;
            }
            if left.h < self.params.min_hessian || right.h < self.params.min_hessian {
                continue;
            }
            let gain = score(left.g, left.h) + score(right.g, right.h) - parent;
            if gain > 1e-12 * parent.abs().max(1e-12) && best.is_none_or(|b| gain > b.gain) {
                best = Some(Split {
                    gain,
                    feature,
                    bin,
                    left,
                });
            }
        }
        best
    }

    /// Moves the rows of `rows[start..end]` going left to the front, each side
    /// keeping its order; returns how many went left. Blocks of rows are split
    /// in parallel (left in place, right into the scratch array), then moved
    /// together in block order: the same result as one pass.
    fn partition(&mut self, start: usize, end: usize, split: &Split) -> usize {
        let n = self.rows.len();
        let column = &self.binned.columns[split.feature * n..][..n];
        let threshold = split.bin as u8;
        let rows = &mut self.rows[start..end];
        let scratch = &mut self.scratch[..end - start];
        // Per block: its first row, length and how many of its rows go left.
        let split_block = |(block, (rows, scratch)): (usize, (&mut [u32], &mut [u32]))| {
            let (mut l, mut r) = (0, 0);
            for i in 0..rows.len() {
                let row = rows[i];
                let goes_left = usize::from(column[row as usize] <= threshold);
                // Written to both sides, kept on one (no unpredictable branch); `l <= i`.
                rows[l] = row;
                scratch[r] = row;
                l += goes_left;
                r += 1 - goes_left;
            }
            (block * BLOCK, rows.len(), l)
        };
        let blocks: Vec<(usize, usize, usize)> = if rows.len() >= 2 * BLOCK {
            rows.par_chunks_mut(BLOCK)
                .zip(scratch.par_chunks_mut(BLOCK))
                .enumerate()
                .map(split_block)
                .collect()
        } else {
            vec![split_block((0, (&mut *rows, &mut *scratch)))]
        };
        let mut l = 0;
        for &(from, _, left) in &blocks {
            rows.copy_within(from..from + left, l);
            l += left;
        }
        let mut r = l;
        for &(from, len, left) in &blocks {
            let right = len - left;
            rows[r..r + right].copy_from_slice(&scratch[from..from + right]);
            r += right;
        }
        l
    }
}

/// The histogram of `rows` into `out` (zeroed, `features * STRIDE` slots);
/// `scattered` when `rows` are not consecutive (to touch them first).
fn build(
    binned: &RowBins,
    partial: &mut Vec<Slot>,
    rows: &[u32],
    gh: &[[f32; 2]],
    out: &mut [Slot],
    scattered: bool,
) {
    let features = binned.features;
    let width = features * STRIDE;
    let blocks: Vec<&[u32]> = rows.chunks(BLOCK).collect();
    let threads = rayon::current_num_threads();
    // A task for every thread: split the features when blocks are fewer
    // (each group reads the rows again, so only then).
    let groups = if rows.len() < PARALLEL_ROWS || blocks.len() >= threads {
        1
    } else {
        threads.div_ceil(blocks.len()).min(features)
    };
    let per_group = features.div_ceil(groups).max(1);
    partial.clear();
    partial.resize(blocks.len().saturating_sub(1) * width, Slot::default());
    let mut tasks = Vec::new();
    for (block, histogram) in blocks
        .iter()
        .zip(std::iter::once(&mut *out).chain(partial.chunks_mut(width)))
    {
        for (group, part) in histogram.chunks_mut(per_group * STRIDE).enumerate() {
            tasks.push((*block, group * per_group, part));
        }
    }
    let run = |(block, first, part): (&[u32], usize, &mut [Slot])| {
        accumulate(binned, gh, block, first, part, scattered)
    };
    if tasks.len() > 1 {
        tasks.into_par_iter().for_each(run);
    } else {
        tasks.into_iter().for_each(run);
    }
    for block in partial.chunks(width) {
        out.iter_mut().zip(block).for_each(|(o, b)| o.add(b));
    }
}

/// Adds `rows` into the histograms of features `first..` held in `part`:
/// runs of [`F32_ROWS`] rows are summed in float32, each run's sums then
/// added to the float64 bins (so every bin is a sum in a fixed order).
fn accumulate(
    binned: &RowBins,
    gh: &[[f32; 2]],
    rows: &[u32],
    first: usize,
    part: &mut [Slot],
    scattered: bool,
) {
    let (histograms, _) = part.as_chunks_mut::<STRIDE>();
    let width = histograms.len();
    if width == 0 {
        return;
    }
    // `[g, h, rows, 0]` per bin in float32: one vector add per feature and row.
    // The buffer is the thread's own, kept between calls (zero between runs).
    LOCAL.with_borrow_mut(|local| {
        if local.len() < width {
            local.resize(width, [[0.0; 4]; STRIDE]);
        }
        accumulate_runs(
            binned,
            gh,
            rows,
            first,
            histograms,
            &mut local[..width],
            scattered,
        );
    });
}

thread_local! {
    /// Each thread's float32 histogram runs, kept between calls.
    static LOCAL: RefCell<Vec<[[f32; 4]; STRIDE]>> = const { RefCell::new(Vec::new()) };
}

/// [`accumulate`] with the thread's float32 buffer `local`.
fn accumulate_runs(
    binned: &RowBins,
    gh: &[[f32; 2]],
    rows: &[u32],
    first: usize,
    histograms: &mut [[Slot; STRIDE]],
    local: &mut [[[f32; 4]; STRIDE]],
    scattered: bool,
) {
    let (bins, features) = (&binned.bins, binned.features);
    let width = histograms.len();
    for run in rows.chunks(F32_ROWS) {
        for chunk in run.chunks(TOUCH) {
            // A node's rows are scattered: touch every row's bins and statistics
            // first, in a loop small enough for the loads to overlap, so the
            // accumulation below finds them in cache.
            if scattered {
                let mut touched = 0u8;
                let mut touched_gh = 0.0f32;
                for &row in chunk {
                    let row = row as usize;
                    touched ^=
                        bins[row * features + first] ^ bins[row * features + first + width - 1];
                    touched_gh += gh[row][1];
                }
                std::hint::black_box((touched, touched_gh));
            }
            for &row in chunk {
                let row = row as usize;
                let [g, h] = gh[row];
                let add = [g, h, 1.0, 0.0];
                let row_bins = &bins[row * features + first..][..width];
                for (histogram, &bin) in local.iter_mut().zip(row_bins) {
                    let slot = &mut histogram[usize::from(bin)];
                    *slot = std::array::from_fn(|k| slot[k] + add[k]);
                }
            }
        }
        // Into the float64 sums every F32_ROWS rows, which bounds float32's rounding.
        for (histogram, local) in histograms.iter_mut().zip(local.iter_mut()) {
            for (slot, sums) in histogram.iter_mut().zip(local.iter_mut()) {
                slot.g += f64::from(sums[0]);
                slot.h += f64::from(sums[1]);
                slot.n += sums[2] as u64;
                *sums = [0.0; 4];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A 3-feature table, its statistics, bin mapper and bins.
    fn table(rows: usize, seed: u64) -> (Matrix, Vec<[f32; 2]>, BinMapper, RowBins) {
        let mut rng = Rng::new(seed);
        let data: Vec<f64> = (0..rows * 3).map(|_| rng.normal()).collect();
        let gh = data
            .chunks(3)
            .map(|r| [(r[0] * r[1] + r[2]) as f32, 0.25])
            .collect();
        let x = Matrix {
            rows,
            cols: 3,
            data,
        };
        let mapper = BinMapper::fit(&x, 0);
        let binned = RowBins::new(&mapper, &x);
        (x, gh, mapper, binned)
    }

    fn params() -> TreeParams {
        TreeParams {
            max_depth: usize::MAX,
            max_leaves: 31,
            min_samples_leaf: 20,
            min_hessian: 1e-3,
            lambda: 0.0,
            max_features: 3,
            best_first: true,
        }
    }

    #[test]
    fn histogram_sums_every_row_once_per_feature() {
        let (x, gh, _, binned) = table(3 * BLOCK + 17, 1);
        let rows: Vec<u32> = (0..x.rows as u32).filter(|r| r % 3 != 0).collect();
        let mut histogram = vec![Slot::default(); 3 * STRIDE];
        build(&binned, &mut Vec::new(), &rows, &gh, &mut histogram, true);
        for f in 0..3 {
            let mut expected = vec![Slot::default(); STRIDE];
            for &row in &rows {
                let bin = binned.bins[row as usize * 3 + f] as usize;
                expected[bin].n += 1;
                expected[bin].g += f64::from(gh[row as usize][0]);
                // The scale of the sum, for float32's rounding.
                expected[bin].h += f64::from(gh[row as usize][0]).abs();
            }
            for (bin, (got, want)) in histogram[f * STRIDE..(f + 1) * STRIDE]
                .iter()
                .zip(&expected)
                .enumerate()
            {
                assert_eq!(got.n, want.n, "feature {f} bin {bin}");
                assert!(
                    (got.g - want.g).abs() <= 1e-6 * want.h,
                    "feature {f} bin {bin}: {} vs {}",
                    got.g,
                    want.g
                );
                assert!((got.h - 0.25 * want.n as f64).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn leaves_partition_the_rows_and_trees_do_not_depend_on_threads() {
        let (x, gh, mapper, binned) = table(2 * BLOCK + 5000, 2);
        let params = params();
        let grow = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut grower = Grower::new(&binned, &params);
                let tree = grower.grow(&gh, &mapper);
                let mut seen: Vec<u32> = grower.leaves().flat_map(|(_, r)| r.to_vec()).collect();
                for (node, rows) in grower.leaves() {
                    assert!(tree.features[node] < 0);
                    for &row in rows {
                        assert_eq!(tree.predict(x.row(row as usize)), &tree.values[node..=node]);
                    }
                }
                seen.sort_unstable();
                assert_eq!(seen, (0..x.rows as u32).collect::<Vec<_>>());
                tree
            })
        };
        let one = grow(1);
        assert_eq!(one.features.iter().filter(|&&f| f < 0).count(), 31);
        assert_eq!(one, grow(2));
        assert_eq!(one, grow(3));
    }
}
