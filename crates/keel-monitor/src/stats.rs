//! Tests and corrections: the G-test of homogeneity on a 2×B table,
//! two-proportion tests, Holm and Benjamini–Hochberg adjustments.
//! Distributions come from `statrs`.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// Result of a homogeneity test on two rows of counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Homogeneity {
    /// The G statistic (likelihood ratio, `2 Σ O ln(O/E)`).
    pub g: f64,
    /// Degrees of freedom (bins − 1).
    pub df: usize,
    /// Upper tail of χ²(df) at `g`.
    pub p_value: f64,
    /// Per bin: `Σ (O − E)² / E` over the two rows (what moved most).
    pub contributions: Vec<f64>,
}

/// G-test of homogeneity of `reference` and `current` counts over the same
/// bins (a test of two samples, not goodness of fit to fixed proportions).
/// Bins empty in both rows are ignored. `None` with fewer than two bins.
pub fn g_test(reference: &[u64], current: &[u64]) -> Option<Homogeneity> {
    let n_ref: u64 = reference.iter().sum();
    let n_cur: u64 = current.iter().sum();
    let total = (n_ref + n_cur) as f64;
    let used = reference
        .iter()
        .zip(current)
        .filter(|(r, c)| **r + **c > 0)
        .count();
    if n_ref == 0 || n_cur == 0 || used < 2 {
        return None;
    }
    let mut g = 0.0;
    let mut contributions = Vec::with_capacity(reference.len());
    for (&r, &c) in reference.iter().zip(current) {
        let column = (r + c) as f64;
        let mut contribution = 0.0;
        for (observed, row_total) in [(r, n_ref), (c, n_cur)] {
            let expected = column * row_total as f64 / total;
            if expected > 0.0 {
                let o = observed as f64;
                if o > 0.0 {
                    g += 2.0 * o * (o / expected).ln();
                }
                contribution += (o - expected).powi(2) / expected;
            }
        }
        contributions.push(contribution);
    }
    let df = used - 1;
    let g = g.max(0.0);
    Some(Homogeneity {
        g,
        df,
        p_value: chi_squared_sf(g, df as f64),
        contributions,
    })
}

/// Upper tail of χ²(df).
pub fn chi_squared_sf(x: f64, df: f64) -> f64 {
    match ChiSquared::new(df) {
        Ok(distribution) => distribution.sf(x).clamp(0.0, 1.0),
        Err(_) => f64::NAN,
    }
}

/// Two-sided two-proportion z-test (pooled) for `k1/n1` vs `k2/n2`.
pub fn two_proportion_p(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let pooled = (k1 + k2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return if p1 == p2 { 1.0 } else { 0.0 };
    }
    let z = ((p1 - p2) / se).abs();
    let normal = Normal::new(0.0, 1.0).expect("standard normal");
    (2.0 * normal.sf(z)).clamp(0.0, 1.0)
}

/// How p-values are corrected across the columns of one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// Holm's step-down (controls the family-wise error rate).
    #[default]
    Holm,
    /// Benjamini–Hochberg (controls the false discovery rate).
    Bh,
    /// No correction.
    None,
}

/// Adjusted p-values, in the input order.
pub fn adjust(p_values: &[f64], correction: Correction) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    match correction {
        Correction::None => adjusted.copy_from_slice(p_values),
        Correction::Holm => {
            let mut running: f64 = 0.0;
            for (rank, &i) in order.iter().enumerate() {
                let value = ((m - rank) as f64 * p_values[i]).min(1.0);
                running = running.max(value);
                adjusted[i] = running;
            }
        }
        Correction::Bh => {
            let mut running: f64 = 1.0;
            for (rank, &i) in order.iter().enumerate().rev() {
                let value = (m as f64 / (rank + 1) as f64 * p_values[i]).min(1.0);
                running = running.min(value);
                adjusted[i] = running;
            }
        }
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_test_matches_known_values() {
        // Identical proportions at different sizes: G = 0, p = 1.
        let same = g_test(&[10, 20, 30], &[20, 40, 60]).unwrap();
        assert!(same.g.abs() < 1e-9 && (same.p_value - 1.0).abs() < 1e-9);
        // 2x2 table [[30, 10], [10, 30]]: G = 20.93 (computed by hand), df 1.
        let table = g_test(&[30, 10], &[10, 30]).unwrap();
        assert!((table.g - 20.9294).abs() < 1e-3, "{}", table.g);
        assert_eq!(table.df, 1);
        assert!(table.p_value < 1e-4);
        assert!(g_test(&[5, 0], &[7, 0]).is_none());
        assert!(g_test(&[0, 0], &[1, 2]).is_none());
    }

    #[test]
    fn holm_and_bh_adjustments() {
        let p = [0.01, 0.04, 0.03, 0.005];
        let holm = adjust(&p, Correction::Holm);
        for (a, b) in holm.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            assert!((a - b).abs() < 1e-12, "{holm:?}");
        }
        let bh = adjust(&p, Correction::Bh);
        let expected = [0.02, 0.04, 0.04, 0.02];
        for (a, b) in bh.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{bh:?}");
        }
    }

    #[test]
    fn two_proportions() {
        assert!(two_proportion_p(0, 10_000, 500, 10_000) < 1e-50);
        assert!(two_proportion_p(50, 1000, 52, 1000) > 0.5);
        assert_eq!(two_proportion_p(0, 100, 0, 100), 1.0);
    }
}
