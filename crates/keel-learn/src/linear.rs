//! Linear learners on encoded features: L2-regularized logistic regression
//! (binary with one logit, multiclass with softmax), fitted by L-BFGS, and
//! least-squares / ridge regression, solved exactly through the normal
//! equations with a Cholesky factorization.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result};
use crate::preprocess::Matrix;

/// A fitted linear model: `score_k(x) = intercepts[k] + weights[k] . x`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    /// One weight row per output (1 for regression and binary, k for softmax).
    pub weights: Vec<Vec<f64>>,
    /// One intercept per output.
    pub intercepts: Vec<f64>,
}

impl LinearModel {
    /// Raw scores (logits or values) of one encoded row.
    pub fn scores(&self, row: &[f64]) -> Vec<f64> {
        self.weights
            .iter()
            .zip(&self.intercepts)
            .map(|(w, b)| b + dot(w, row))
            .collect()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Settings of logistic regression.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticParams {
    /// Inverse regularization strength, as scikit-learn's `C` (penalty `||w||^2 / 2C`).
    pub c: f64,
    /// Maximum L-BFGS iterations.
    pub max_iter: usize,
}

impl Default for LogisticParams {
    fn default() -> Self {
        LogisticParams {
            c: 1.0,
            max_iter: 500,
        }
    }
}

/// Fits logistic regression; `labels` are class indices in `0..n_classes`.
pub fn fit_logistic(
    x: &Matrix,
    labels: &[usize],
    n_classes: usize,
    params: &LogisticParams,
) -> Result<LinearModel> {
    if n_classes < 2 {
        return Err(LearnError::data(
            "the target has a single class; classification needs at least two",
        ));
    }
    if params.c.is_nan() || params.c <= 0.0 {
        return Err(LearnError::param("C must be positive"));
    }
    let d = x.cols;
    let outputs = if n_classes == 2 { 1 } else { n_classes };
    let lambda = 1.0 / params.c;
    let objective = |theta: &[f64], grad: &mut [f64]| -> f64 {
        let (mut loss, g) = x
            .data
            .par_chunks(x.cols.max(1) * 1024)
            .enumerate()
            .map(|(chunk, rows)| {
                let mut g = vec![0.0; theta.len()];
                let mut loss = 0.0;
                let mut scores = vec![0.0; outputs];
                for (r, row) in rows.chunks(d.max(1)).enumerate() {
                    let label = labels[chunk * 1024 + r];
                    for (k, score) in scores.iter_mut().enumerate() {
                        let w = &theta[k * (d + 1)..(k + 1) * (d + 1)];
                        *score = w[d] + dot(&w[..d], &row[..d]);
                    }
                    // The scores become the residuals (p - y) in place.
                    if outputs == 1 {
                        let z = scores[0];
                        let y = if label == 1 { 1.0 } else { 0.0 };
                        // log(1 + e^z) - y z, computed stably.
                        loss += z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z;
                        scores[0] = sigmoid(z) - y;
                    } else {
                        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                        loss += max + sum.ln() - scores[label];
                        for (k, score) in scores.iter_mut().enumerate() {
                            *score = (*score - max).exp() / sum - f64::from(u8::from(k == label));
                        }
                    }
                    for (k, residual) in scores.iter().enumerate() {
                        let gk = &mut g[k * (d + 1)..(k + 1) * (d + 1)];
                        for (gj, xj) in gk.iter_mut().zip(&row[..d]) {
                            *gj += residual * xj;
                        }
                        gk[d] += residual;
                    }
                }
                (loss, g)
            })
            .reduce(
                || (0.0, vec![0.0; theta.len()]),
                |(la, mut ga), (lb, gb)| {
                    for (a, b) in ga.iter_mut().zip(gb) {
                        *a += b;
                    }
                    (la + lb, ga)
                },
            );
        grad.copy_from_slice(&g);
        for k in 0..outputs {
            for j in 0..d {
                let i = k * (d + 1) + j;
                loss += 0.5 * lambda * theta[i] * theta[i];
                grad[i] += lambda * theta[i];
            }
        }
        loss
    };
    let theta = lbfgs(
        vec![0.0; outputs * (d + 1)],
        objective,
        params.max_iter,
        x.rows,
    );
    Ok(LinearModel {
        weights: (0..outputs)
            .map(|k| theta[k * (d + 1)..k * (d + 1) + d].to_vec())
            .collect(),
        intercepts: (0..outputs).map(|k| theta[k * (d + 1) + d]).collect(),
    })
}

/// Logistic function.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Minimizes a smooth convex function with L-BFGS (memory 10) and a
/// backtracking Armijo line search. `scale` (the row count) sets the
/// gradient tolerance.
fn lbfgs(
    mut theta: Vec<f64>,
    mut objective: impl FnMut(&[f64], &mut [f64]) -> f64,
    max_iter: usize,
    scale: usize,
) -> Vec<f64> {
    const MEMORY: usize = 10;
    let n = theta.len();
    let tolerance = 1e-7 * scale.max(1) as f64;
    let mut grad = vec![0.0; n];
    let mut value = objective(&theta, &mut grad);
    let mut history: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    let mut next_grad = vec![0.0; n];
    for iteration in 0..max_iter {
        if grad.iter().fold(0.0f64, |m, g| m.max(g.abs())) < tolerance {
            break;
        }
        // Two-loop recursion.
        let mut direction: Vec<f64> = grad.iter().map(|g| -g).collect();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let alpha = rho * dot(s, &direction);
            for (d, yi) in direction.iter_mut().zip(y) {
                *d -= alpha * yi;
            }
            alphas.push(alpha);
        }
        let gamma = history
            .last()
            .map_or(1.0 / dot(&grad, &grad).sqrt().max(1e-12), |(s, y, _)| {
                dot(s, y) / dot(y, y)
            });
        for d in direction.iter_mut() {
            *d *= gamma;
        }
        for ((s, y, rho), alpha) in history.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(y, &direction);
            for (d, si) in direction.iter_mut().zip(s) {
                *d += (alpha - beta) * si;
            }
        }
        let mut slope = dot(&grad, &direction);
        if slope >= 0.0 {
            direction = grad.iter().map(|g| -g).collect();
            slope = -dot(&grad, &grad);
            history.clear();
        }
        let mut step = 1.0;
        let mut candidate = vec![0.0; n];
        let mut accepted = false;
        for _ in 0..40 {
            for i in 0..n {
                candidate[i] = theta[i] + step * direction[i];
            }
            let candidate_value = objective(&candidate, &mut next_grad);
            if candidate_value.is_finite() && candidate_value <= value + 1e-4 * step * slope {
                let s: Vec<f64> = (0..n).map(|i| candidate[i] - theta[i]).collect();
                let y: Vec<f64> = (0..n).map(|i| next_grad[i] - grad[i]).collect();
                let sy = dot(&s, &y);
                if sy > 1e-12 {
                    if history.len() == MEMORY {
                        history.remove(0);
                    }
                    history.push((s, y, 1.0 / sy));
                }
                let improvement = value - candidate_value;
                std::mem::swap(&mut theta, &mut candidate);
                std::mem::swap(&mut grad, &mut next_grad);
                value = candidate_value;
                accepted = true;
                if improvement.abs() <= 1e-12 * value.abs().max(1.0) && iteration > 0 {
                    return theta;
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    theta
}

/// Fits least squares with an L2 penalty `alpha * ||w||^2` (intercept not
/// penalized). `alpha = 0` is ordinary least squares; a tiny ridge is then
/// still added so collinear one-hot columns have a unique solution.
pub fn fit_ridge(x: &Matrix, y: &[f64], alpha: f64) -> Result<LinearModel> {
    if alpha.is_nan() || alpha < 0.0 {
        return Err(LearnError::param("alpha must be zero or positive"));
    }
    let d = x.cols;
    let p = d + 1;
    // Gram matrix of [x, 1] and the right-hand side, accumulated in parallel.
    let (gram, rhs) = x
        .data
        .par_chunks(d.max(1) * 1024)
        .enumerate()
        .map(|(chunk, rows)| {
            let mut gram = vec![0.0; p * p];
            let mut rhs = vec![0.0; p];
            let mut extended = vec![1.0; p];
            for (r, row) in rows.chunks(d.max(1)).enumerate() {
                extended[..d].copy_from_slice(&row[..d]);
                let target = y[chunk * 1024 + r];
                for i in 0..p {
                    rhs[i] += extended[i] * target;
                    for j in 0..=i {
                        gram[i * p + j] += extended[i] * extended[j];
                    }
                }
            }
            (gram, rhs)
        })
        .reduce(
            || (vec![0.0; p * p], vec![0.0; p]),
            |(mut ga, mut ra), (gb, rb)| {
                ga.iter_mut().zip(gb).for_each(|(a, b)| *a += b);
                ra.iter_mut().zip(rb).for_each(|(a, b)| *a += b);
                (ga, ra)
            },
        );
    let mut gram = gram;
    for i in 0..p {
        for j in 0..i {
            gram[j * p + i] = gram[i * p + j];
        }
    }
    let jitter = 1e-9 * x.rows.max(1) as f64;
    for i in 0..d {
        gram[i * p + i] += alpha.max(jitter);
    }
    gram[d * p + d] += 1e-12;
    let beta = cholesky_solve(&mut gram, &rhs, p).ok_or_else(|| {
        LearnError::data("the features are degenerate (normal equations are singular)")
    })?;
    Ok(LinearModel {
        weights: vec![beta[..d].to_vec()],
        intercepts: vec![beta[d]],
    })
}

/// Solves `a x = b` for a symmetric positive-definite `a` (overwritten).
fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut diagonal = a[j * n + j];
        for k in 0..j {
            diagonal -= a[j * n + k] * a[j * n + k];
        }
        if diagonal.is_nan() || diagonal <= 0.0 {
            return None;
        }
        let diagonal = diagonal.sqrt();
        a[j * n + j] = diagonal;
        for i in j + 1..n {
            let mut value = a[i * n + j];
            for k in 0..j {
                value -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = value / diagonal;
        }
    }
    let mut z = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            z[i] -= a[i * n + k] * z[k];
        }
        z[i] /= a[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            z[i] -= a[k * n + i] * z[k];
        }
        z[i] /= a[i * n + i];
    }
    Some(z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn data(n: usize, seed: u64) -> (Matrix, Vec<f64>) {
        let mut rng = Rng::new(seed);
        let rows: Vec<Vec<f64>> = (0..n).map(|_| vec![rng.normal(), rng.normal()]).collect();
        let y = rows
            .iter()
            .map(|r| 3.0 + 2.0 * r[0] - r[1] + 0.01 * rng.normal())
            .collect();
        (Matrix::from_rows(&rows).unwrap(), y)
    }

    #[test]
    fn least_squares_recovers_coefficients() {
        let (x, y) = data(500, 1);
        let model = fit_ridge(&x, &y, 0.0).unwrap();
        assert!((model.intercepts[0] - 3.0).abs() < 0.01, "{model:?}");
        assert!((model.weights[0][0] - 2.0).abs() < 0.01);
        assert!((model.weights[0][1] + 1.0).abs() < 0.01);
        let shrunk = fit_ridge(&x, &y, 500.0).unwrap();
        assert!(
            shrunk.weights[0][0].abs() < 1.9,
            "ridge must shrink: {shrunk:?}"
        );
    }

    #[test]
    fn logistic_separates_binary_and_multiclass() {
        let (x, y) = data(600, 2);
        let binary: Vec<usize> = y.iter().map(|v| usize::from(*v > 3.0)).collect();
        let model = fit_logistic(&x, &binary, 2, &LogisticParams::default()).unwrap();
        let correct = (0..x.rows)
            .filter(|&i| usize::from(model.scores(x.row(i))[0] > 0.0) == binary[i])
            .count();
        assert!(correct as f64 / x.rows as f64 > 0.97, "{correct}");
        let three: Vec<usize> = y
            .iter()
            .map(|v| {
                if *v < 2.0 {
                    0
                } else if *v < 4.0 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let model = fit_logistic(&x, &three, 3, &LogisticParams::default()).unwrap();
        let correct = (0..x.rows)
            .filter(|&i| {
                let s = model.scores(x.row(i));
                let best = (0..3).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap_or(0);
                best == three[i]
            })
            .count();
        assert!(correct as f64 / x.rows as f64 > 0.9, "{correct}");
        assert!(fit_logistic(&x, &vec![0; x.rows], 1, &LogisticParams::default()).is_err());
    }
}
