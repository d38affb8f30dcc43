//! The calibration of the label-free (CBPE-style) accuracy estimate.
//!
//! The estimate is the mean probability that each prediction is right. A
//! model's score for its predicted class is that probability only when the
//! model is calibrated; gradient-boosted trees and forests often are not.
//! As NannyML's CBPE does, keel calibrates the scores on labelled reference
//! predictions with isotonic regression (pool-adjacent-violators): the map
//! from the predicted class's score to the share of right predictions,
//! non-decreasing in the score. `keel train` fits it on its held-out rows
//! and stores it in the training profile (`calibration` in `profile.json`);
//! the windows of the prediction log apply it row by row.

use serde::{Deserialize, Serialize};

/// Fewest labelled predictions a calibration is fitted on.
pub const MIN_CALIBRATION_ROWS: usize = 100;
/// Most steps kept (neighbouring steps are pooled beyond it), so the
/// profile stays small whatever the reference's size.
const MAX_STEPS: usize = 256;

/// A non-decreasing map from a score to the probability that the
/// prediction is right: steps `(lowest score, highest score, probability)`
/// in increasing order, linear between steps, constant beyond the ends
/// (scikit-learn's `IsotonicRegression(out_of_bounds="clip")`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Labelled predictions it was fitted on.
    pub rows: u64,
    /// `[lowest score, highest score, probability right]` per step.
    pub steps: Vec<[f64; 3]>,
}

impl Calibration {
    /// Fits the map on `(score, right)` pairs (non-finite scores left out);
    /// None when fewer than [`MIN_CALIBRATION_ROWS`] remain.
    pub fn fit(pairs: &[(f64, bool)]) -> Option<Calibration> {
        let mut pairs: Vec<(f64, f64)> = pairs
            .iter()
            .filter(|(score, _)| score.is_finite())
            .map(|&(score, right)| (score, f64::from(u8::from(right))))
            .collect();
        if pairs.len() < MIN_CALIBRATION_ROWS {
            return None;
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Pool-adjacent-violators over blocks of equal scores:
        // [low, high, sum of right, count].
        let mut blocks: Vec<[f64; 4]> = Vec::new();
        for (score, right) in &pairs {
            match blocks.last_mut() {
                Some(last) if last[1] == *score => {
                    last[2] += right;
                    last[3] += 1.0;
                }
                _ => blocks.push([*score, *score, *right, 1.0]),
            }
            while blocks.len() >= 2 {
                let n = blocks.len();
                let (a, b) = (blocks[n - 2], blocks[n - 1]);
                if a[2] / a[3] < b[2] / b[3] {
                    break;
                }
                blocks[n - 2] = [a[0], b[1], a[2] + b[2], a[3] + b[3]];
                blocks.pop();
            }
        }
        // Bounded size: pool neighbours (the map stays non-decreasing).
        while blocks.len() > MAX_STEPS {
            blocks = blocks
                .chunks(2)
                .map(|c| match c {
                    [a, b] => [a[0], b[1], a[2] + b[2], a[3] + b[3]],
                    [a] => *a,
                    _ => unreachable!("chunks(2) gives one or two blocks"),
                })
                .collect();
        }
        Some(Calibration {
            rows: pairs.len() as u64,
            steps: blocks.iter().map(|b| [b[0], b[1], b[2] / b[3]]).collect(),
        })
    }

    /// The probability that a prediction with this score is right (NaN for
    /// a non-finite score or an empty map).
    pub fn apply(&self, score: f64) -> f64 {
        if !score.is_finite() {
            return f64::NAN;
        }
        if self.steps.is_empty() {
            return f64::NAN;
        }
        // First step whose highest score reaches `score`.
        let at = self.steps.partition_point(|s| s[1] < score);
        let Some(step) = self.steps.get(at) else {
            return self.steps[self.steps.len() - 1][2];
        };
        if at == 0 || score >= step[0] {
            // Within the step, or below the first one (clipped).
            return step[2];
        }
        // Between the previous step's end and this one's start.
        let before = self.steps[at - 1];
        let t = (score - before[1]) / (step[0] - before[1]);
        before[2] + t * (step[2] - before[2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_fit_corrects_overconfident_scores() {
        // Scores say 0.9 but only 70 % are right; scores 0.6 are right 60 %.
        let mut pairs = Vec::new();
        for i in 0..1000 {
            pairs.push((0.9, i % 10 < 7));
            pairs.push((0.6, i % 10 < 6));
        }
        let c = Calibration::fit(&pairs).expect("enough rows");
        assert_eq!(c.rows, 2000);
        assert!((c.apply(0.9) - 0.7).abs() < 1e-12, "{}", c.apply(0.9));
        assert!((c.apply(0.6) - 0.6).abs() < 1e-12);
        // Linear between the steps, clipped beyond them.
        assert!((c.apply(0.75) - 0.65).abs() < 1e-12, "{}", c.apply(0.75));
        assert!((c.apply(0.99) - 0.7).abs() < 1e-12);
        assert!((c.apply(0.5) - 0.6).abs() < 1e-12);
        assert!(c.apply(f64::NAN).is_nan());
    }

    #[test]
    fn violators_are_pooled_and_the_map_never_decreases() {
        // Right-rates 0.8 at 0.6 and 0.5 at 0.7 violate monotonicity: pooled to 0.65.
        let mut pairs = Vec::new();
        for i in 0..100 {
            pairs.push((0.6, i % 10 < 8));
            pairs.push((0.7, i % 10 < 5));
            pairs.push((0.95, i % 10 < 9));
        }
        let c = Calibration::fit(&pairs).expect("enough rows");
        assert_eq!(c.steps.len(), 2, "{:?}", c.steps);
        assert!((c.apply(0.6) - 0.65).abs() < 1e-12);
        assert!((c.apply(0.7) - 0.65).abs() < 1e-12);
        assert!((c.apply(0.95) - 0.9).abs() < 1e-12);
        let mut rng = keel_learn::rng::Rng::new(5);
        let many: Vec<(f64, bool)> = (0..5000)
            .map(|_| {
                let s = 0.5 + 0.5 * rng.next_f64();
                (s, rng.next_f64() < s * s)
            })
            .collect();
        let c = Calibration::fit(&many).expect("enough rows");
        assert!(c.steps.len() <= MAX_STEPS);
        let mut last = 0.0;
        for k in 0..=100 {
            let p = c.apply(0.5 + 0.005 * f64::from(k));
            assert!(p >= last - 1e-12, "decreases at {k}");
            last = p;
        }
    }

    #[test]
    fn too_few_rows_fit_nothing() {
        let pairs: Vec<(f64, bool)> = (0..MIN_CALIBRATION_ROWS - 1)
            .map(|i| (0.8, i % 2 == 0))
            .collect();
        assert!(Calibration::fit(&pairs).is_none());
    }
}
