//! Evaluation: a seeded train/test split, classification metrics (accuracy,
//! precision, recall, F1, ROC AUC, log loss, confusion matrix, calibration
//! table) and regression metrics (RMSE, MAE, R²), serialized as the metrics
//! JSON that gates read.

use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result};
use crate::model::{Model, Predictions, TargetValues};
use crate::rng::Rng;
use keel_table::Table;

/// Bins of the calibration table.
pub const CALIBRATION_BINS: usize = 10;

/// Splits `0..n` into (train, test) row indices; the same seed gives the same split.
pub fn train_test_split(
    n: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(LearnError::param(
            "test fraction must be between 0 and 1 (exclusive)",
        ));
    }
    let mut rows: Vec<usize> = (0..n).collect();
    Rng::derive(seed, 0x5A17).shuffle(&mut rows);
    let n_test = ((n as f64) * test_fraction).round() as usize;
    if n_test == 0 || n_test >= n {
        return Err(LearnError::data(format!(
            "{n} rows are too few to hold out {test_fraction} for testing"
        )));
    }
    let test = rows.split_off(n - n_test);
    Ok((rows, test))
}

/// One row of the calibration table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower edge of the predicted-probability bin.
    pub lower: f64,
    /// Upper edge.
    pub upper: f64,
    /// Rows in the bin.
    pub count: usize,
    /// Mean predicted probability.
    pub mean_predicted: f64,
    /// Observed frequency of the event.
    pub observed: f64,
}

/// Scores of a classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    /// Rows scored.
    pub rows: usize,
    /// Rows whose true label the model never saw in training (counted as errors in accuracy, left out of the rest).
    pub unseen_label_rows: usize,
    /// Share predicted right.
    pub accuracy: f64,
    /// Precision of the positive class (binary) or macro average (multiclass).
    pub precision: f64,
    /// Recall, same averaging.
    pub recall: f64,
    /// F1, same averaging.
    pub f1: f64,
    /// Area under the ROC curve (binary) or macro one-vs-rest average.
    pub roc_auc: Option<f64>,
    /// Mean negative log-likelihood (probabilities clipped to [1e-15, 1-1e-15]).
    pub log_loss: f64,
    /// Positive class for binary precision/recall/F1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<String>,
    /// Class labels, the order of the confusion matrix.
    pub classes: Vec<String>,
    /// `confusion_matrix[true][predicted]` counts.
    pub confusion_matrix: Vec<Vec<usize>>,
    /// Probability of the positive class (binary) or of the predicted class
    /// (multiclass, "observed" = correct) against the observed frequency.
    pub calibration: Vec<CalibrationBin>,
}

/// Scores of a regressor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    /// Rows scored.
    pub rows: usize,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination.
    pub r2: f64,
}

/// Metrics of either task, as written to metrics JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Metrics {
    /// A classifier's scores.
    Classification(ClassificationMetrics),
    /// A regressor's scores.
    Regression(RegressionMetrics),
}

impl Metrics {
    /// Accuracy (classification) or R² (regression): the headline figure.
    pub fn headline(&self) -> (&'static str, f64) {
        match self {
            Metrics::Classification(m) => ("accuracy", m.accuracy),
            Metrics::Regression(m) => ("r2", m.r2),
        }
    }

    /// Flat `name -> value` pairs for logging to a run.
    pub fn scalars(&self) -> Vec<(&'static str, f64)> {
        match self {
            Metrics::Classification(m) => {
                let mut out = vec![
                    ("accuracy", m.accuracy),
                    ("precision", m.precision),
                    ("recall", m.recall),
                    ("f1", m.f1),
                    ("log_loss", m.log_loss),
                ];
                if let Some(auc) = m.roc_auc {
                    out.push(("roc_auc", auc));
                }
                out
            }
            Metrics::Regression(m) => vec![("rmse", m.rmse), ("mae", m.mae), ("r2", m.r2)],
        }
    }
}

/// Predicts `table` with `model` and scores it against the model's target column.
/// Rows with a missing target are skipped.
pub fn evaluate(model: &Model, table: &Table) -> Result<Metrics> {
    Ok(Scored::from_model(model, table)?.metrics())
}

/// Predictions next to the truth, ready to be scored on all rows or on
/// bootstrap resamples. Built from a keel model ([`Scored::from_model`]) or
/// from any engine's predictions (an imported ONNX model).
#[derive(Debug, Clone)]
pub enum Scored {
    /// A classifier's answers.
    Classes {
        /// Class labels in score order.
        classes: Vec<String>,
        /// True class index per row (`None`: a label the model does not know).
        truth: Vec<Option<usize>>,
        /// Predicted class index per row.
        labels: Vec<usize>,
        /// Class probabilities per row.
        probabilities: Vec<Vec<f64>>,
    },
    /// A regressor's answers.
    Values {
        /// True value per row.
        truth: Vec<f64>,
        /// Predicted value per row.
        predicted: Vec<f64>,
    },
}

impl Scored {
    /// Predicts `table` with `model`; rows with a missing target are skipped.
    pub fn from_model(model: &Model, table: &Table) -> Result<Self> {
        let target = model.target_values(table)?;
        let keep: Vec<usize> = match &target {
            TargetValues::Classes(_) => {
                let column = table.require(&model.target)?;
                (0..table.n_rows())
                    .filter(|&i| column.text(i).is_some())
                    .collect()
            }
            TargetValues::Values(values) => {
                (0..values.len()).filter(|&i| !values[i].is_nan()).collect()
            }
        };
        if keep.is_empty() {
            return Err(LearnError::data(format!(
                "target column {:?} has no values",
                model.target
            )));
        }
        let table = table.select_rows(&keep);
        match (model.predict(&table)?, model.target_values(&table)?) {
            (
                Predictions::Classes {
                    labels,
                    probabilities,
                },
                TargetValues::Classes(truth),
            ) => Ok(Scored::Classes {
                classes: model.classes.clone(),
                truth,
                labels,
                probabilities,
            }),
            (Predictions::Values(predicted), TargetValues::Values(truth)) => {
                Ok(Scored::Values { truth, predicted })
            }
            _ => Err(LearnError::data("prediction and target kinds disagree")),
        }
    }

    /// Rows scored.
    pub fn rows(&self) -> usize {
        match self {
            Scored::Classes { truth, .. } => truth.len(),
            Scored::Values { truth, .. } => truth.len(),
        }
    }

    /// Metrics over every row.
    pub fn metrics(&self) -> Metrics {
        self.metrics_of(None)
    }

    /// Metrics over `rows` (with repeats, for a bootstrap), or every row.
    fn metrics_of(&self, rows: Option<&[usize]>) -> Metrics {
        fn pick<T: Clone>(values: &[T], rows: Option<&[usize]>) -> Vec<T> {
            match rows {
                Some(rows) => rows.iter().map(|&i| values[i].clone()).collect(),
                None => values.to_vec(),
            }
        }
        match self {
            Scored::Classes {
                classes,
                truth,
                labels,
                probabilities,
            } => Metrics::Classification(classification_metrics(
                classes,
                &pick(truth, rows),
                &pick(labels, rows),
                &pick(probabilities, rows),
            )),
            Scored::Values { truth, predicted } => Metrics::Regression(regression_metrics(
                &pick(truth, rows),
                &pick(predicted, rows),
            )),
        }
    }
}

/// Percentile bootstrap confidence intervals of the scalar metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Resamples drawn.
    pub resamples: usize,
    /// Seed of the resampling.
    pub seed: u64,
    /// Confidence level of the intervals.
    pub level: f64,
    /// Metric name → `[lower, upper]`.
    pub intervals: std::collections::BTreeMap<String, [f64; 2]>,
}

impl Scored {
    /// 95 % percentile bootstrap intervals of the scalar metrics from
    /// `resamples` resamples of the scored rows (with replacement, drawn
    /// from `seed` alone, so a seed gives the same intervals on every
    /// machine).
    pub fn bootstrap(&self, resamples: usize, seed: u64) -> Bootstrap {
        let n = self.rows();
        let mut draws: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        let mut rng = Rng::derive(seed, 0xB0075);
        let mut rows = vec![0usize; n];
        for _ in 0..resamples {
            for row in rows.iter_mut() {
                *row = rng.below(n);
            }
            for (name, value) in self.metrics_of(Some(&rows)).scalars() {
                if value.is_finite() {
                    draws.entry(name.to_string()).or_default().push(value);
                }
            }
        }
        let level = 0.95;
        let intervals = draws
            .into_iter()
            .map(|(name, mut values)| {
                values.sort_by(f64::total_cmp);
                let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
                (name, [at((1.0 - level) / 2.0), at((1.0 + level) / 2.0)])
            })
            .collect();
        Bootstrap {
            resamples,
            seed,
            level,
            intervals,
        }
    }
}

/// Classification metrics; `truth[i] = None` marks a label unseen in training.
/// One row's negative log-likelihood of its true class `label` under the
/// class probabilities `p`, clipped to [1e-15, 1 - 1e-15]: [`Metrics`]'
/// `log_loss` and GBDT's early stopping average it.
pub(crate) fn row_log_loss(p: &[f64], label: usize) -> f64 {
    -p[label].clamp(1e-15, 1.0 - 1e-15).ln()
}

pub fn classification_metrics(
    classes: &[String],
    truth: &[Option<usize>],
    predicted: &[usize],
    probabilities: &[Vec<f64>],
) -> ClassificationMetrics {
    let k = classes.len();
    let rows = truth.len();
    let unseen_label_rows = truth.iter().filter(|t| t.is_none()).count();
    let correct = truth
        .iter()
        .zip(predicted)
        .filter(|(t, p)| **t == Some(**p))
        .count();
    let mut confusion_matrix = vec![vec![0usize; k]; k];
    for (t, &p) in truth.iter().zip(predicted) {
        if let Some(t) = t {
            confusion_matrix[*t][p] += 1;
        }
    }
    let per_class: Vec<(f64, f64, f64)> = (0..k)
        .map(|c| {
            let tp = confusion_matrix[c][c] as f64;
            let predicted_c: usize = (0..k).map(|t| confusion_matrix[t][c]).sum();
            let actual_c: usize = confusion_matrix[c].iter().sum();
            let precision = if predicted_c > 0 {
                tp / predicted_c as f64
            } else {
                0.0
            };
            let recall = if actual_c > 0 {
                tp / actual_c as f64
            } else {
                0.0
            };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            (precision, recall, f1)
        })
        .collect();
    let (precision, recall, f1, positive_class) = if k == 2 {
        let (p, r, f) = per_class[1];
        (p, r, f, Some(classes[1].clone()))
    } else {
        let n = k as f64;
        (
            per_class.iter().map(|v| v.0).sum::<f64>() / n,
            per_class.iter().map(|v| v.1).sum::<f64>() / n,
            per_class.iter().map(|v| v.2).sum::<f64>() / n,
            None,
        )
    };
    let seen: Vec<(usize, &Vec<f64>)> = truth
        .iter()
        .zip(probabilities)
        .filter_map(|(t, p)| t.map(|t| (t, p)))
        .collect();
    let log_loss =
        seen.iter().map(|(t, p)| row_log_loss(p, *t)).sum::<f64>() / seen.len().max(1) as f64;
    let roc_auc = if k == 2 {
        let scores: Vec<(f64, bool)> = seen.iter().map(|(t, p)| (p[1], *t == 1)).collect();
        roc_auc(&scores)
    } else {
        let aucs: Vec<f64> = (0..k)
            .filter_map(|c| {
                let scores: Vec<(f64, bool)> = seen.iter().map(|(t, p)| (p[c], *t == c)).collect();
                roc_auc(&scores)
            })
            .collect();
        (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64)
    };
    let events: Vec<(f64, bool)> = if k == 2 {
        seen.iter().map(|(t, p)| (p[1], *t == 1)).collect()
    } else {
        truth
            .iter()
            .zip(predicted)
            .zip(probabilities)
            .filter(|((t, _), _)| t.is_some())
            .map(|((t, &p), probs)| (probs[p], *t == Some(p)))
            .collect()
    };
    ClassificationMetrics {
        rows,
        unseen_label_rows,
        accuracy: correct as f64 / rows.max(1) as f64,
        precision,
        recall,
        f1,
        roc_auc,
        log_loss,
        positive_class,
        classes: classes.to_vec(),
        confusion_matrix,
        calibration: calibration(&events),
    }
}

/// ROC AUC by the rank-sum (Mann-Whitney) formula with tied scores sharing ranks;
/// `None` when one side is empty.
pub fn roc_auc(scores: &[(f64, bool)]) -> Option<f64> {
    let positives = scores.iter().filter(|s| s.1).count();
    let negatives = scores.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = scores.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let mean_rank = (i + j + 1) as f64 / 2.0;
        rank_sum += mean_rank * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

fn calibration(events: &[(f64, bool)]) -> Vec<CalibrationBin> {
    let mut bins: Vec<(usize, f64, f64)> = vec![(0, 0.0, 0.0); CALIBRATION_BINS];
    for &(p, event) in events {
        let b = ((p * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
        bins[b].0 += 1;
        bins[b].1 += p;
        bins[b].2 += f64::from(u8::from(event));
    }
    bins.into_iter()
        .enumerate()
        .map(|(b, (count, sum_p, sum_event))| CalibrationBin {
            lower: b as f64 / CALIBRATION_BINS as f64,
            upper: (b + 1) as f64 / CALIBRATION_BINS as f64,
            count,
            mean_predicted: if count > 0 { sum_p / count as f64 } else { 0.0 },
            observed: if count > 0 {
                sum_event / count as f64
            } else {
                0.0
            },
        })
        .collect()
}

/// RMSE, MAE and R² of `predicted` against `truth`.
pub fn regression_metrics(truth: &[f64], predicted: &[f64]) -> RegressionMetrics {
    let n = truth.len().max(1) as f64;
    let mean = truth.iter().sum::<f64>() / n;
    let sse: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).powi(2))
        .sum();
    let sst: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    RegressionMetrics {
        rows: truth.len(),
        rmse: (sse / n).sqrt(),
        mae: truth
            .iter()
            .zip(predicted)
            .map(|(t, p)| (t - p).abs())
            .sum::<f64>()
            / n,
        r2: if sst > 0.0 { 1.0 - sse / sst } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let (train, test) = train_test_split(100, 0.25, 3).unwrap();
        assert_eq!((train.len(), test.len()), (75, 25));
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(train_test_split(100, 0.25, 3).unwrap().1, test);
        assert_ne!(train_test_split(100, 0.25, 4).unwrap().1, test);
        assert!(train_test_split(1, 0.25, 0).is_err());
    }

    #[test]
    fn auc_matches_hand_counts_with_ties() {
        // Pairs (pos, neg): (0.9 > 0.1), (0.9 > 0.5), (0.5 = 0.5 -> 1/2), (0.5 > 0.1): 3.5 / 4.
        let auc = roc_auc(&[(0.9, true), (0.5, true), (0.5, false), (0.1, false)]).unwrap();
        assert!((auc - 0.875).abs() < 1e-12);
        assert_eq!(roc_auc(&[(0.3, true)]), None);
    }

    #[test]
    fn binary_metrics_by_hand() {
        let classes = vec!["no".to_string(), "yes".to_string()];
        let truth = vec![Some(1), Some(1), Some(0), Some(0), None];
        let predicted = vec![1, 0, 1, 0, 0];
        let probabilities = vec![
            vec![0.2, 0.8],
            vec![0.6, 0.4],
            vec![0.3, 0.7],
            vec![0.9, 0.1],
            vec![0.5, 0.5],
        ];
        let m = classification_metrics(&classes, &truth, &predicted, &probabilities);
        assert_eq!(m.accuracy, 2.0 / 5.0);
        assert_eq!((m.precision, m.recall, m.f1), (0.5, 0.5, 0.5));
        assert_eq!(m.confusion_matrix, vec![vec![1, 1], vec![1, 1]]);
        assert_eq!(m.unseen_label_rows, 1);
        let expected_log_loss = -(0.8f64.ln() + 0.4f64.ln() + 0.3f64.ln() + 0.9f64.ln()) / 4.0;
        assert!((m.log_loss - expected_log_loss).abs() < 1e-12);
        assert_eq!(m.roc_auc, Some(0.75));
        assert_eq!(m.calibration.iter().map(|b| b.count).sum::<usize>(), 4);
    }

    #[test]
    fn regression_metrics_by_hand() {
        let m = regression_metrics(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((m.rmse - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((m.mae - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.r2 - (1.0 - 4.0 / 2.0)).abs() < 1e-12);
    }
}
