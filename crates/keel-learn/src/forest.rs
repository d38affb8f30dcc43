//! Random forests (classification and regression): bootstrap samples, a random
//! subset of features per split, fully grown histogram trees, trees built in
//! parallel with each tree's randomness derived from (seed, tree index), so
//! results do not depend on the thread count.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result};
use crate::preprocess::Matrix;
use crate::rng::Rng;
use crate::tree::{BinMapper, Stats, Tree, TreeParams, grow};

/// Settings of a random forest (defaults follow scikit-learn's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    /// Number of trees.
    pub n_trees: usize,
    /// Deepest level; `None` grows until leaves are pure or too small.
    pub max_depth: Option<usize>,
    /// Fewest rows in a leaf.
    pub min_samples_leaf: usize,
    /// Features tried per split; `None` means sqrt(F) for classification, F for regression.
    pub max_features: Option<usize>,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            n_trees: 100,
            max_depth: None,
            min_samples_leaf: 1,
            max_features: None,
        }
    }
}

/// A fitted forest: the prediction is the mean of the trees' leaf values
/// (class probabilities for classification, values for regression).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    /// The trees.
    pub trees: Vec<Tree>,
    /// Values per leaf (number of classes, or 1).
    pub outputs: usize,
}

impl Forest {
    /// Mean leaf values for one encoded row.
    pub fn predict(&self, row: &[f64]) -> Vec<f64> {
        let mut sum = vec![0.0; self.outputs];
        for tree in &self.trees {
            sum.iter_mut()
                .zip(tree.predict(row))
                .for_each(|(s, v)| *s += v);
        }
        let n = self.trees.len().max(1) as f64;
        sum.iter().map(|s| s / n).collect()
    }
}

/// What the forest learns.
pub enum ForestTarget<'a> {
    /// Class indices in `0..n_classes`.
    Classes(&'a [usize], usize),
    /// Real values.
    Values(&'a [f64]),
}

/// Fits a random forest.
pub fn fit_forest(
    x: &Matrix,
    target: ForestTarget<'_>,
    params: &ForestParams,
    seed: u64,
) -> Result<Forest> {
    if params.n_trees == 0 {
        return Err(LearnError::param("n_trees must be at least 1"));
    }
    if x.rows == 0 {
        return Err(LearnError::data("no rows to train on"));
    }
    let (outputs, targets, default_features) = match target {
        ForestTarget::Classes(labels, n_classes) => {
            let mut onehot = vec![0.0; x.rows * n_classes];
            for (i, &label) in labels.iter().enumerate() {
                onehot[i * n_classes + label] = 1.0;
            }
            let sqrt = (x.cols as f64).sqrt().floor() as usize;
            (n_classes, onehot, sqrt.max(1))
        }
        ForestTarget::Values(values) => (1, values.to_vec(), x.cols),
    };
    let mapper = BinMapper::fit(x, seed);
    let binned = mapper.transform(x);
    let tree_params = TreeParams {
        max_depth: params.max_depth.unwrap_or(usize::MAX),
        max_leaves: usize::MAX,
        min_samples_leaf: params.min_samples_leaf.max(1),
        min_hessian: 0.0,
        lambda: 0.0,
        max_features: params
            .max_features
            .unwrap_or(default_features)
            .clamp(1, x.cols.max(1)),
        best_first: false,
    };
    let trees = (0..params.n_trees)
        .into_par_iter()
        .map(|t| {
            let mut rng = Rng::derive(seed, t as u64);
            let mut weights = vec![0.0; x.rows];
            for _ in 0..x.rows {
                weights[rng.below(x.rows)] += 1.0;
            }
            let rows: Vec<u32> = (0..x.rows as u32)
                .filter(|&i| weights[i as usize] > 0.0)
                .collect();
            let g: Vec<f64> = targets
                .iter()
                .enumerate()
                .map(|(i, y)| y * weights[i / outputs])
                .collect();
            let stats = Stats {
                g: &g,
                h: &weights,
                outputs,
            };
            grow(&binned, &mapper, &stats, rows, &tree_params, &mut rng).tree
        })
        .collect();
    Ok(Forest { trees, outputs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circles(n: usize, seed: u64) -> (Matrix, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|_| vec![rng.normal(), rng.normal(), rng.normal()])
            .collect();
        let labels = rows
            .iter()
            .map(|r| usize::from(r[0] * r[0] + r[1] * r[1] > 1.4))
            .collect();
        (Matrix::from_rows(&rows).unwrap(), labels)
    }

    #[test]
    fn classifies_a_nonlinear_boundary_deterministically() {
        let (x, y) = circles(1500, 1);
        let (test_x, test_y) = circles(500, 2);
        let params = ForestParams {
            n_trees: 30,
            ..ForestParams::default()
        };
        let forest = fit_forest(&x, ForestTarget::Classes(&y, 2), &params, 7).unwrap();
        let correct = (0..test_x.rows)
            .filter(|&i| usize::from(forest.predict(test_x.row(i))[1] > 0.5) == test_y[i])
            .count();
        assert!(correct > 440, "accuracy {correct}/500");
        let again = fit_forest(&x, ForestTarget::Classes(&y, 2), &params, 7).unwrap();
        assert_eq!(forest, again);
        let other = fit_forest(&x, ForestTarget::Classes(&y, 2), &params, 8).unwrap();
        assert_ne!(forest, other);
    }

    #[test]
    fn regresses_a_smooth_function() {
        let (x, _) = circles(1500, 3);
        let y: Vec<f64> = (0..x.rows)
            .map(|i| x.row(i)[0].sin() * 3.0 + x.row(i)[1])
            .collect();
        let forest = fit_forest(
            &x,
            ForestTarget::Values(&y),
            &ForestParams {
                n_trees: 20,
                ..Default::default()
            },
            1,
        )
        .unwrap();
        let (test_x, _) = circles(300, 4);
        let mse: f64 = (0..test_x.rows)
            .map(|i| {
                let r = test_x.row(i);
                (forest.predict(r)[0] - (r[0].sin() * 3.0 + r[1])).powi(2)
            })
            .sum::<f64>()
            / test_x.rows as f64;
        assert!(mse < 0.3, "mse {mse}");
    }
}
