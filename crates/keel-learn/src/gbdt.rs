//! Histogram gradient-boosted trees in the style of LightGBM and
//! scikit-learn's HistGradientBoosting: leaf-wise trees (31 leaves), Newton
//! leaf values, shrinkage; losses are binary log loss (one tree per round),
//! multiclass softmax (one tree per class per round) and squared error.
//! Trees are grown by [`crate::hist`] on float32 gradients and hessians.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result};
use crate::hist::{Grower, RowBins};
use crate::linear::sigmoid;
use crate::metrics::row_log_loss;
use crate::preprocess::Matrix;
use crate::tree::{BinMapper, Tree, TreeParams};

/// Rows per parallel task of the per-row loops (no sums cross rows there).
const CHUNK: usize = 8192;

/// Settings of gradient boosting (defaults follow scikit-learn's HistGradientBoosting).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoostParams {
    /// Boosting rounds.
    pub n_iter: usize,
    /// Shrinkage applied to every tree.
    pub learning_rate: f64,
    /// Most leaves per tree.
    pub max_leaves: usize,
    /// Deepest level; `None` for no limit besides `max_leaves`.
    pub max_depth: Option<usize>,
    /// Fewest rows in a leaf.
    pub min_samples_leaf: usize,
    /// L2 penalty on leaf values.
    pub l2: f64,
    /// Stop when a held-out share of the rows stops improving (off: every round is fitted).
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
}

/// Early stopping on a validation split, as LightGBM and scikit-learn's
/// HistGradientBoosting do: a seeded share of the training rows is held out,
/// scored after every round, and boosting stops once that score has not
/// improved by `tol` for `n_iter_no_change` rounds; the model keeps the
/// rounds up to the best one (LightGBM's rule).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Share of the rows held out (scikit-learn's `validation_fraction`).
    pub validation_fraction: f64,
    /// Rounds without improvement before stopping.
    pub n_iter_no_change: usize,
    /// Smallest decrease of the validation loss that counts as improvement.
    pub tol: f64,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping {
            validation_fraction: 0.1,
            n_iter_no_change: 10,
            tol: 1e-7,
        }
    }
}

impl Default for BoostParams {
    fn default() -> Self {
        BoostParams {
            n_iter: 100,
            learning_rate: 0.1,
            max_leaves: 31,
            max_depth: None,
            min_samples_leaf: 20,
            l2: 0.0,
            early_stopping: None,
        }
    }
}

/// The loss boosted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Binary classification, one logit.
    Logistic,
    /// Multiclass classification, one score per class.
    Softmax,
    /// Regression.
    Squared,
}

/// A fitted boosted ensemble: `score_k = init[k] + sum of trees[r * K + k]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Boosted {
    /// The loss it was fitted on.
    pub loss: Loss,
    /// Starting scores (log-odds, log-priors or the mean).
    pub init: Vec<f64>,
    /// Trees, round by round, `init.len()` per round; values already shrunk.
    pub trees: Vec<Tree>,
}

impl Boosted {
    /// Raw scores (logits or the value) for one encoded row.
    pub fn scores(&self, row: &[f64]) -> Vec<f64> {
        let k = self.init.len();
        let mut scores = self.init.clone();
        for (i, tree) in self.trees.iter().enumerate() {
            scores[i % k] += tree.predict(row)[0];
        }
        scores
    }
}

/// `[negative gradient, hessian]` of log loss at probability `p` of a class the row is (not) in.
fn newton(p: f64, is_class: bool) -> [f32; 2] {
    let gradient = p - f64::from(u8::from(is_class));
    [-gradient as f32, (p * (1.0 - p)).max(1e-16) as f32]
}

/// Probabilities from scores: sigmoid for one logit, softmax otherwise.
pub fn probabilities(scores: &[f64]) -> Vec<f64> {
    if scores.len() == 1 {
        let p = sigmoid(scores[0]);
        return vec![1.0 - p, p];
    }
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// What boosting learns.
pub enum BoostTarget<'a> {
    /// Class indices in `0..n_classes`.
    Classes(&'a [usize], usize),
    /// Real values.
    Values(&'a [f64]),
}

impl BoostTarget<'_> {
    /// The target of `rows`, in their order.
    fn select(&self, rows: &[usize]) -> OwnedTarget {
        match self {
            BoostTarget::Classes(labels, n_classes) => {
                OwnedTarget::Classes(rows.iter().map(|&r| labels[r]).collect(), *n_classes)
            }
            BoostTarget::Values(values) => {
                OwnedTarget::Values(rows.iter().map(|&r| values[r]).collect())
            }
        }
    }
}

/// A [`BoostTarget`] of selected rows.
enum OwnedTarget {
    Classes(Vec<usize>, usize),
    Values(Vec<f64>),
}

impl OwnedTarget {
    fn borrow(&self) -> BoostTarget<'_> {
        match self {
            OwnedTarget::Classes(labels, n_classes) => BoostTarget::Classes(labels, *n_classes),
            OwnedTarget::Values(values) => BoostTarget::Values(values),
        }
    }
}

/// The rows held out for early stopping, scored after every round.
struct Validation<'a> {
    x: &'a Matrix,
    target: BoostTarget<'a>,
    stop: EarlyStopping,
}

impl Validation<'_> {
    /// Mean loss of the raw scores (`k` per row): log loss for
    /// classification, squared error for regression.
    fn loss(&self, raw: &[f64], k: usize) -> f64 {
        let total: f64 = match self.target {
            BoostTarget::Classes(labels, _) => raw
                .chunks_exact(k)
                .zip(labels)
                .map(|(scores, &label)| row_log_loss(&probabilities(scores), label))
                .sum(),
            BoostTarget::Values(values) => raw
                .iter()
                .zip(values)
                .map(|(raw, value)| (value - raw) * (value - raw))
                .sum(),
        };
        total / self.x.rows as f64
    }
}

/// Fits gradient-boosted trees, with early stopping when `params` asks for it.
pub fn fit_boosted(
    x: &Matrix,
    target: BoostTarget<'_>,
    params: &BoostParams,
    seed: u64,
) -> Result<Boosted> {
    let Some(stop) = params.early_stopping else {
        return boost(x, target, params, seed, None);
    };
    if stop.tol.is_nan() || stop.tol < 0.0 || stop.n_iter_no_change == 0 {
        return Err(LearnError::param(
            "early stopping needs tol >= 0 and n_iter_no_change >= 1",
        ));
    }
    let (train_rows, validation_rows) =
        crate::metrics::train_test_split(x.rows, stop.validation_fraction, seed)?;
    let select = |rows: &[usize]| Matrix {
        rows: rows.len(),
        cols: x.cols,
        data: rows
            .iter()
            .flat_map(|&r| x.row(r).iter().copied())
            .collect(),
    };
    let (train_x, validation_x) = (select(&train_rows), select(&validation_rows));
    let (train_target, validation_target) =
        (target.select(&train_rows), target.select(&validation_rows));
    let validation = Validation {
        x: &validation_x,
        target: validation_target.borrow(),
        stop,
    };
    boost(
        &train_x,
        train_target.borrow(),
        params,
        seed,
        Some(validation),
    )
}

/// The boosting loop of [`fit_boosted`].
fn boost(
    x: &Matrix,
    target: BoostTarget<'_>,
    params: &BoostParams,
    seed: u64,
    validation: Option<Validation<'_>>,
) -> Result<Boosted> {
    if x.rows == 0 {
        return Err(LearnError::data("no rows to train on"));
    }
    if params.learning_rate.is_nan()
        || params.learning_rate <= 0.0
        || params.n_iter == 0
        || params.max_leaves < 2
    {
        return Err(LearnError::param(
            "gbdt needs learning_rate > 0, n_iter >= 1 and max_leaves >= 2",
        ));
    }
    let n = x.rows;
    let (loss, init, labels, values): (Loss, Vec<f64>, &[usize], &[f64]) = match target {
        BoostTarget::Classes(labels, n_classes) => {
            let mut counts = vec![0.0f64; n_classes];
            for &label in labels {
                counts[label] += 1.0;
            }
            let priors: Vec<f64> = counts
                .iter()
                .map(|c| (c / n as f64).clamp(1e-12, 1.0 - 1e-12))
                .collect();
            if n_classes == 2 {
                (
                    Loss::Logistic,
                    vec![(priors[1] / priors[0]).ln()],
                    labels,
                    &[],
                )
            } else {
                (
                    Loss::Softmax,
                    priors.iter().map(|p| p.ln()).collect(),
                    labels,
                    &[],
                )
            }
        }
        BoostTarget::Values(values) => {
            let mean = values.iter().sum::<f64>() / n as f64;
            (Loss::Squared, vec![mean], &[], values)
        }
    };
    let k = init.len();
    let mapper = BinMapper::fit(x, seed);
    let binned = RowBins::new(&mapper, x);
    let tree_params = TreeParams {
        max_depth: params.max_depth.unwrap_or(usize::MAX),
        max_leaves: params.max_leaves,
        min_samples_leaf: params.min_samples_leaf.max(1),
        min_hessian: 1e-3,
        lambda: params.l2,
        max_features: x.cols,
        best_first: true,
    };
    let mut grower = Grower::new(&binned, &tree_params);
    let mut raw: Vec<f64> = (0..n).flat_map(|_| init.iter().copied()).collect();
    let mut trees = Vec::with_capacity(params.n_iter * k);
    // Per row `[negative gradient, hessian]` in float32, so leaf = G / (H + l2) is the Newton step.
    let mut gh = vec![[0.0f32; 2]; n];
    let mut probability = vec![0.0; n * k];
    // The held-out rows' raw scores, and the best round so far with its loss.
    let mut validation_raw: Vec<f64> = match &validation {
        Some(v) => (0..v.x.rows).flat_map(|_| init.iter().copied()).collect(),
        None => Vec::new(),
    };
    let mut best: Option<(usize, f64)> = None;
    for round in 0..params.n_iter {
        if loss == Loss::Softmax {
            probability
                .par_chunks_mut(k * CHUNK)
                .zip(raw.par_chunks(k * CHUNK))
                .for_each(|(p, r)| {
                    for (p, r) in p.chunks_exact_mut(k).zip(r.chunks_exact(k)) {
                        p.copy_from_slice(&probabilities(r));
                    }
                });
        }
        for class in 0..k {
            let chunks = gh.par_chunks_mut(CHUNK).enumerate();
            match loss {
                Loss::Logistic => chunks.for_each(|(chunk, gh)| {
                    let rows = chunk * CHUNK..chunk * CHUNK + gh.len();
                    for ((gh, &raw), &label) in
                        gh.iter_mut().zip(&raw[rows.clone()]).zip(&labels[rows])
                    {
                        // The sigmoid without a branch on the sign (the same values as `sigmoid`).
                        let e = (-raw.abs()).exp();
                        let p = if raw >= 0.0 {
                            1.0 / (1.0 + e)
                        } else {
                            e / (1.0 + e)
                        };
                        *gh = newton(p, label == 1);
                    }
                }),
                Loss::Softmax => chunks.for_each(|(chunk, gh)| {
                    let first = chunk * CHUNK;
                    for (i, gh) in (first..).zip(gh.iter_mut()) {
                        *gh = newton(probability[i * k + class], labels[i] == class);
                    }
                }),
                Loss::Squared => chunks.for_each(|(chunk, gh)| {
                    let rows = chunk * CHUNK..chunk * CHUNK + gh.len();
                    for ((gh, &raw), &value) in
                        gh.iter_mut().zip(&raw[rows.clone()]).zip(&values[rows])
                    {
                        *gh = [(value - raw) as f32, 1.0];
                    }
                }),
            }
            let mut tree = grower.grow(&gh, &mapper);
            tree.values
                .iter_mut()
                .for_each(|v| *v *= params.learning_rate);
            for (node, rows) in grower.leaves() {
                let value = tree.values[node];
                for &row in rows {
                    raw[row as usize * k + class] += value;
                }
            }
            trees.push(tree);
        }
        if let Some(v) = &validation {
            let round_trees = &trees[round * k..];
            validation_raw
                .par_chunks_mut(k * CHUNK)
                .enumerate()
                .for_each(|(chunk, raw)| {
                    for (i, scores) in (chunk * CHUNK..).zip(raw.chunks_exact_mut(k)) {
                        let row = v.x.row(i);
                        for (score, tree) in scores.iter_mut().zip(round_trees) {
                            *score += tree.predict(row)[0];
                        }
                    }
                });
            let round_loss = v.loss(&validation_raw, k);
            match best {
                Some((_, best_loss)) if round_loss >= best_loss - v.stop.tol => {}
                _ => best = Some((round, round_loss)),
            }
            if let Some((best_round, _)) = best
                && round - best_round >= v.stop.n_iter_no_change
            {
                break;
            }
        }
    }
    if let Some((best_round, _)) = best {
        trees.truncate((best_round + 1) * k);
    }
    Ok(Boosted { loss, init, trees })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn blobs(n: usize, seed: u64, classes: usize) -> (Matrix, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let class = i % classes;
            let angle = class as f64 * std::f64::consts::TAU / classes as f64;
            rows.push(vec![
                2.0 * angle.cos() + rng.normal(),
                2.0 * angle.sin() + rng.normal(),
                rng.normal(),
            ]);
            labels.push(class);
        }
        (Matrix::from_rows(&rows).unwrap(), labels)
    }

    fn accuracy(model: &Boosted, x: &Matrix, y: &[usize]) -> f64 {
        let correct = (0..x.rows)
            .filter(|&i| {
                let p = probabilities(&model.scores(x.row(i)));
                let best = (0..p.len())
                    .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                    .unwrap_or(0);
                best == y[i]
            })
            .count();
        correct as f64 / x.rows as f64
    }

    #[test]
    fn binary_and_multiclass_reach_bayes_level_accuracy() {
        let (x, y) = blobs(2000, 1, 2);
        let (tx, ty) = blobs(1000, 2, 2);
        let model =
            fit_boosted(&x, BoostTarget::Classes(&y, 2), &BoostParams::default(), 0).unwrap();
        assert_eq!(model.trees.len(), 100);
        // The two blobs are 4 standard deviations apart: Bayes accuracy ~0.977.
        assert!(
            accuracy(&model, &tx, &ty) > 0.95,
            "{}",
            accuracy(&model, &tx, &ty)
        );
        let (x, y) = blobs(3000, 3, 3);
        let (tx, ty) = blobs(900, 4, 3);
        let model =
            fit_boosted(&x, BoostTarget::Classes(&y, 3), &BoostParams::default(), 0).unwrap();
        assert_eq!(model.trees.len(), 300);
        assert!(
            accuracy(&model, &tx, &ty) > 0.85,
            "{}",
            accuracy(&model, &tx, &ty)
        );
    }

    /// A 3-class fit (seed 5) on a pool of `threads` threads.
    fn on_threads(threads: usize, x: &Matrix, y: &[usize], params: &BoostParams) -> Boosted {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| fit_boosted(x, BoostTarget::Classes(y, 3), params, 5).unwrap())
    }

    #[test]
    fn early_stopping_keeps_the_best_round_on_any_thread_count() {
        // Three overlapping blobs and a high learning rate: the held-out loss
        // bottoms out long before 200 rounds.
        let (x, y) = blobs(20_000, 11, 3);
        let stopping = BoostParams {
            n_iter: 200,
            learning_rate: 0.5,
            early_stopping: Some(EarlyStopping::default()),
            ..Default::default()
        };
        let fit = |threads: usize| on_threads(threads, &x, &y, &stopping);
        let model = fit(1);
        let rounds = model.trees.len() / 3;
        assert!(
            model.trees.len() % 3 == 0 && (1..200).contains(&rounds),
            "{rounds} rounds"
        );
        assert_eq!(
            serde_json::to_string(&model).unwrap(),
            serde_json::to_string(&fit(4)).unwrap()
        );
        let (tx, ty) = blobs(3000, 12, 3);
        assert!(
            accuracy(&model, &tx, &ty) > 0.85,
            "{}",
            accuracy(&model, &tx, &ty)
        );

        // The rounds kept are the best ones: on the same held-out rows, the
        // model fitted with every round is worse.
        let (train, held) = crate::metrics::train_test_split(x.rows, 0.1, 5).unwrap();
        let pick = |rows: &[usize]| {
            let picked: Vec<Vec<f64>> = rows.iter().map(|&r| x.row(r).to_vec()).collect();
            (
                Matrix::from_rows(&picked).unwrap(),
                rows.iter().map(|&r| y[r]).collect::<Vec<_>>(),
            )
        };
        let ((train_x, train_y), (held_x, held_y)) = (pick(&train), pick(&held));
        let every_round = BoostParams {
            early_stopping: None,
            ..stopping
        };
        let full =
            fit_boosted(&train_x, BoostTarget::Classes(&train_y, 3), &every_round, 5).unwrap();
        assert_eq!(full.trees.len(), 600);
        let log_loss = |m: &Boosted| {
            (0..held_x.rows)
                .map(|i| row_log_loss(&probabilities(&m.scores(held_x.row(i))), held_y[i]))
                .sum::<f64>()
                / held_x.rows as f64
        };
        assert!(
            log_loss(&model) < log_loss(&full),
            "{} vs {}",
            log_loss(&model),
            log_loss(&full)
        );

        // Regression stops too; a fraction outside (0, 1) is refused.
        let values: Vec<f64> = (0..x.rows)
            .map(|i| x.row(i)[0] + 0.5 * x.row(i)[2])
            .collect();
        let regression = fit_boosted(&x, BoostTarget::Values(&values), &stopping, 1).unwrap();
        assert!(regression.trees.len() < 200, "{}", regression.trees.len());
        let bad = BoostParams {
            early_stopping: Some(EarlyStopping {
                validation_fraction: 1.0,
                ..EarlyStopping::default()
            }),
            ..stopping
        };
        assert!(fit_boosted(&x, BoostTarget::Values(&values), &bad, 1).is_err());
    }

    #[test]
    fn same_seed_gives_the_same_model_on_any_thread_count() {
        // Enough rows for several histogram blocks and parallel partitions.
        let (x, y) = blobs(40_000, 6, 3);
        let params = BoostParams {
            n_iter: 3,
            ..Default::default()
        };
        let fit = |threads: usize| on_threads(threads, &x, &y, &params);
        let one = fit(1);
        assert_eq!(
            serde_json::to_string(&one).unwrap(),
            serde_json::to_string(&fit(4)).unwrap()
        );
        assert_eq!(one, fit(2));
    }

    #[test]
    fn squared_error_fits_and_training_rows_match_prediction() {
        let (x, _) = blobs(1000, 5, 2);
        let y: Vec<f64> = (0..x.rows)
            .map(|i| x.row(i)[0] * 2.0 + x.row(i)[2].abs())
            .collect();
        let params = BoostParams {
            n_iter: 200,
            ..Default::default()
        };
        let model = fit_boosted(&x, BoostTarget::Values(&y), &params, 0).unwrap();
        let mse: f64 = (0..x.rows)
            .map(|i| (model.scores(x.row(i))[0] - y[i]).powi(2))
            .sum::<f64>()
            / x.rows as f64;
        let variance: f64 = {
            let mean = y.iter().sum::<f64>() / y.len() as f64;
            y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / y.len() as f64
        };
        assert!(mse < 0.05 * variance, "mse {mse} variance {variance}");
    }
}
