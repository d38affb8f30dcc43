//! The drift benchmark's design (shared/reference/drift-bench/gen_data.py),
//! ported to a seeded Rust generator: 20 numeric + 5 categorical columns;
//! num_00..num_04 shifted by 0.2, 0.3, 0.5, 0.75 and 1.0 reference standard
//! deviations, num_05/num_06 by 0.02 sd (practically irrelevant), num_07
//! with 5 % NaN in the current data only, everything else unchanged
//! (including a 1000-category column). At 10k, 100k and 1M rows per side
//! exactly the five real shifts must be flagged, the NaN change must be a
//! quality finding, and profiles of two halves merged must give the same
//! verdicts as the profile of the whole.

use keel_learn::rng::Rng;
use keel_monitor::profile::{ColumnKind, ColumnProfile, Profile};
use keel_monitor::{DriftConfig, FindingKind, Status, compare};
use rayon::prelude::*;

const SHIFTS: [(usize, f64); 7] = [
    (0, 0.2),
    (1, 0.3),
    (2, 0.5),
    (3, 0.75),
    (4, 1.0),
    (5, 0.02),
    (6, 0.02),
];
const CARDINALITIES: [usize; 5] = [3, 8, 20, 100, 1000];
const NAN_COLUMN: usize = 7;

fn numeric_name(i: usize) -> String {
    format!("num_{i:02}")
}

/// One numeric column: the distribution kind cycles through normal,
/// lognormal, uniform, exponential and gamma, as in gen_data.py.
fn numeric_column(
    i: usize,
    rows: std::ops::Range<usize>,
    n: usize,
    current: bool,
    seed: u64,
) -> Vec<f64> {
    let stream = ((n as u64) << 16) | ((current as u64) << 8) | i as u64;
    let mut rng = Rng::derive(seed, stream);
    let exponential = |rng: &mut Rng| -(1.0 - rng.next_f64()).ln();
    // Skip to `rows.start` so halves are the same values as the whole.
    let mut values = Vec::with_capacity(rows.len());
    let sd = match i % 5 {
        0 => 1.0 + i as f64,
        1 => ((0.25f64.exp() - 1.0) * 0.25f64.exp()).sqrt(),
        2 => (1.0f64 / 12.0).sqrt(),
        3 => 2.0,
        _ => 2f64.sqrt() * 3.0,
    };
    let shift = if current {
        SHIFTS
            .iter()
            .find(|(c, _)| *c == i)
            .map_or(0.0, |(_, d)| d * sd)
    } else {
        0.0
    };
    for row in 0..rows.end {
        let x = match i % 5 {
            0 => 10.0 * i as f64 + sd * rng.normal(),
            1 => (0.5 * rng.normal()).exp(),
            2 => rng.next_f64(),
            3 => 2.0 * exponential(&mut rng),
            _ => 3.0 * (exponential(&mut rng) + exponential(&mut rng)),
        };
        let missing = current && i == NAN_COLUMN && rng.next_f64() < 0.05;
        if row >= rows.start {
            values.push(if missing { f64::NAN } else { x + shift });
        }
    }
    values
}

/// Zipf(1.1) category indices.
fn categorical_column(
    j: usize,
    rows: std::ops::Range<usize>,
    n: usize,
    current: bool,
    seed: u64,
) -> Vec<usize> {
    let k = CARDINALITIES[j];
    let weights: Vec<f64> = (1..=k).map(|r| 1.0 / (r as f64).powf(1.1)).collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::with_capacity(k);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cumulative.push(acc);
    }
    let stream = ((n as u64) << 16) | ((current as u64) << 8) | (100 + j as u64);
    let mut rng = Rng::derive(seed, stream);
    (0..rows.end)
        .map(|_| {
            let u = rng.next_f64();
            cumulative.partition_point(|&c| c < u).min(k - 1)
        })
        .skip(rows.start)
        .collect()
}

/// Profiles rows `rows` of one side, columns in parallel.
fn profile_side(
    n: usize,
    rows: std::ops::Range<usize>,
    current: bool,
    reference: Option<&Profile>,
) -> Profile {
    let seed = 42;
    let numeric = (0..20).into_par_iter().map(|i| {
        let name = numeric_name(i);
        let model = reference.and_then(|r| r.column(&name));
        let mut column = ColumnProfile::new(&name, ColumnKind::Numeric, model);
        for chunk in numeric_column(i, rows.clone(), n, current, seed).chunks(65_536) {
            column.push_numbers(chunk);
        }
        column.finish();
        column
    });
    let categorical = (0..5).into_par_iter().map(|j| {
        let name = format!("cat_{j}");
        let labels: Vec<String> = (0..CARDINALITIES[j])
            .map(|v| format!("{name}_v{v}"))
            .collect();
        let mut column = ColumnProfile::new(
            &name,
            ColumnKind::Categorical,
            reference.and_then(|r| r.column(&name)),
        );
        for index in categorical_column(j, rows.clone(), n, current, seed) {
            column.push_category(&labels[index]);
        }
        column
    });
    let columns: Vec<ColumnProfile> = numeric.chain(categorical).collect();
    let mut profile = Profile::empty(columns);
    profile.rows = rows.len() as u64;
    profile
}

fn flagged(report: &keel_monitor::DriftReport) -> Vec<String> {
    report
        .columns
        .iter()
        .filter(|c| c.drifted)
        .map(|c| c.column.clone())
        .collect()
}

fn check_size(n: usize) {
    let reference = profile_side(n, 0..n, false, None);
    let current = profile_side(n, 0..n, true, Some(&reference));
    let config = DriftConfig::default();
    let report = compare(&reference, &current, &config).unwrap();
    let expected: Vec<String> = (0..5).map(numeric_name).collect();
    let summary: Vec<String> = report
        .columns
        .iter()
        .map(|c| {
            format!(
                "{} effect={:?} p={:?} {}",
                c.column, c.effect_size, c.p_value_adjusted, c.rule
            )
        })
        .collect();
    assert_eq!(flagged(&report), expected, "n={n}:\n{}", summary.join("\n"));
    assert!(
        report.columns.iter().all(|c| c.status != Status::NotTested),
        "n={n}"
    );
    assert!(report.dataset.drifted);
    assert_eq!(report.dataset.ranking[..5].to_vec(), {
        let mut strongest = expected.clone();
        strongest.reverse();
        strongest
    });
    // The 0.02-sd shifts are statistically detectable at large n but below the
    // minimum relevant effect: the effect rule, not the p-value, keeps them out.
    for column in ["num_05", "num_06"] {
        let verdict = report.columns.iter().find(|c| c.column == column).unwrap();
        assert!(
            verdict.effect_size.unwrap() < 0.05,
            "n={n} {column}: {verdict:?}"
        );
    }
    let nan_findings: Vec<_> = report
        .quality
        .iter()
        .filter(|f| f.kind == FindingKind::MissingRateChange)
        .collect();
    assert_eq!(nan_findings.len(), 1, "n={n}: {:?}", report.quality);
    assert_eq!(nan_findings[0].column.as_deref(), Some("num_07"));
    let share = nan_findings[0].current.unwrap();
    assert!((share - 0.05).abs() < 0.01, "{share}");
    // Out-of-range only where the shift is large; nothing else to report.
    assert!(
        report.quality.iter().all(|f| matches!(
            f.kind,
            FindingKind::MissingRateChange | FindingKind::OutOfRange
        )),
        "{:?}",
        report.quality
    );

    // Two halves of the current data, profiled separately against the same
    // reference and merged, are the profile of the whole.
    let half = n / 2;
    let mut merged = profile_side(n, 0..half, true, Some(&reference));
    merged
        .merge(&profile_side(n, half..n, true, Some(&reference)))
        .unwrap();
    for (a, b) in merged.columns.iter().zip(&current.columns) {
        assert_eq!(a.count, b.count);
        assert_eq!(a.nulls, b.nulls);
        match (a.numeric(), b.numeric()) {
            (Some(x), Some(y)) => {
                assert_eq!(x.histogram, y.histogram, "{}", a.name);
                assert_eq!(
                    (x.nan, x.min, x.max, x.bounds),
                    (y.nan, y.min, y.max, y.bounds)
                );
                assert!(
                    (x.moments.mean - y.moments.mean).abs() <= 1e-9 * y.moments.mean.abs().max(1.0)
                );
            }
            _ => assert_eq!(a.categorical(), b.categorical(), "{}", a.name),
        }
    }
    let from_halves = compare(&reference, &merged, &config).unwrap();
    assert_eq!(flagged(&from_halves), flagged(&report));
    for (a, b) in from_halves.columns.iter().zip(&report.columns) {
        assert_eq!(a.statistic, b.statistic, "{}", a.column);
        assert_eq!(a.effect_size, b.effect_size, "{}", a.column);
    }

    // The same for the reference: halves sharing the first half's layouts
    // (checked up to 100k rows to keep the test short; the code path is the same).
    if n <= 100_000 {
        let mut reference_halves = profile_side(n, 0..half, false, None);
        let layouts = reference_halves.layout_template();
        reference_halves
            .merge(&profile_side(n, half..n, false, Some(&layouts)))
            .unwrap();
        let current_again = profile_side(n, 0..n, true, Some(&reference_halves));
        let report_halves = compare(&reference_halves, &current_again, &config).unwrap();
        assert_eq!(flagged(&report_halves), expected);
    }

    // Serialized and read back, the profiles give the same report.
    let json = serde_json::to_string(&reference).unwrap();
    let back: Profile = serde_json::from_str(&json).unwrap();
    let current_json: Profile =
        serde_json::from_str(&serde_json::to_string(&current).unwrap()).unwrap();
    let again = compare(&back, &current_json, &config).unwrap();
    assert_eq!(flagged(&again), expected);
}

#[test]
fn synthetic_benchmark_10k() {
    check_size(10_000);
}

#[test]
fn synthetic_benchmark_100k() {
    check_size(100_000);
}

#[test]
fn synthetic_benchmark_1m() {
    check_size(1_000_000);
}
