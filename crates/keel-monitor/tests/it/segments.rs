//! Segments: drift per value of a column with Bonferroni control across
//! segments (two files), and live metrics per value over a prediction log.

use std::collections::BTreeMap;
use std::path::Path;

use keel_learn::rng::Rng;
use keel_monitor::segments::{SegmentRule, SegmentsReport, compare_segments, log_segments};
use keel_monitor::{DriftConfig, compare, profile_file};

use crate::log::{Row, signature, write_log};

/// Writes `rows_per_region` rows of each of `regions` regions: income ~
/// N(50 000, 10 000) (+ `shift` in region `shifted`), age ~ N(40, 10), a
/// categorical plan.
fn write_regions(
    path: &Path,
    seed: u64,
    regions: usize,
    rows_per_region: usize,
    shifted: Option<(usize, f64)>,
) {
    let mut rng = Rng::new(seed);
    let mut text = String::from("region,income,age,plan\n");
    for i in 0..regions * rows_per_region {
        let region = i % regions;
        let shift = match shifted {
            Some((r, s)) if r == region => s,
            _ => 0.0,
        };
        let income = 50_000.0 + 10_000.0 * rng.normal() + shift;
        let age = 40.0 + 10.0 * rng.normal();
        let plan = ["basic", "plus", "pro"][rng.below(3)];
        text.push_str(&format!("r{region:02},{income:.2},{age:.2},{plan}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// The values of the segments that drifted.
fn drifted(report: &SegmentsReport) -> Vec<&str> {
    report
        .segments
        .iter()
        .filter(|s| s.drifted)
        .map(|s| s.value.as_str())
        .collect()
}

#[test]
fn only_the_shifted_region_drifts() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    let current = dir.path().join("current.csv");
    write_regions(&reference, 1, 5, 2000, None);
    // Region r02's income rises by one standard deviation.
    write_regions(&current, 2, 5, 2000, Some((2, 10_000.0)));
    let config = DriftConfig::default();
    let report =
        compare_segments(&reference, &current, &SegmentRule::new("region"), &config).unwrap();
    assert_eq!(report.tested, 5);
    assert!((report.segment_alpha - config.alpha / 5.0).abs() < 1e-15);
    assert_eq!(drifted(&report), vec!["r02"], "{report:#?}");
    let r02 = report.segments.iter().find(|s| s.value == "r02").unwrap();
    assert_eq!((r02.reference_rows, r02.current_rows), (2000, 2000));
    let columns: Vec<&str> = r02
        .drifted_columns
        .iter()
        .map(|c| c.column.as_str())
        .collect();
    assert_eq!(columns, vec!["income"]);
    // W1 / σ of a one-σ location shift is about 1.
    let effect = r02.drifted_columns[0].effect_size.unwrap();
    assert!((0.8..1.2).contains(&effect), "{effect}");
    // The whole data: a fifth of the rows moved by one σ of the region
    // (about 0.2 of the whole's σ) — reported, not asserted either way.
    let whole_reference = profile_file(&reference, None).unwrap();
    let whole_current = profile_file(&current, Some(&whole_reference)).unwrap();
    let whole = compare(&whole_reference, &whole_current, &config).unwrap();
    eprintln!("whole data: {}", whole.dataset.rule);
    let text = report.table();
    assert!(text.contains("r02") && text.contains("income ("), "{text}");
}

#[test]
fn no_segment_drifts_without_a_shift() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    let current = dir.path().join("current.csv");
    write_regions(&reference, 3, 20, 3000, None);
    write_regions(&current, 4, 20, 3000, None);
    let rule = SegmentRule::new("region");
    // At the default policy, and with the effect threshold off so that
    // significance alone decides (where the correction across segments is
    // what keeps the family's false-alarm rate at alpha).
    for min_effect in [None, Some(0.0)] {
        let config = DriftConfig {
            min_effect,
            ..DriftConfig::default()
        };
        let report = compare_segments(&reference, &current, &rule, &config).unwrap();
        assert_eq!(report.tested, 20);
        assert!((report.segment_alpha - config.alpha / 20.0).abs() < 1e-15);
        let drifted = drifted(&report);
        assert!(drifted.is_empty(), "{min_effect:?}: {drifted:?}");
    }
}

#[test]
fn small_and_surplus_values_are_skipped_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    let current = dir.path().join("current.csv");
    write_regions(&reference, 5, 4, 300, None);
    write_regions(&current, 6, 4, 300, None);
    // A region with too few current rows.
    let mut text = std::fs::read_to_string(&current).unwrap();
    text.push_str("tiny,50000,40,basic\n,50000,40,basic\n");
    std::fs::write(&current, text).unwrap();
    let rule = SegmentRule {
        column: "region".into(),
        min_rows: 100,
        max_segments: 3,
    };
    let report = compare_segments(&reference, &current, &rule, &DriftConfig::default()).unwrap();
    assert_eq!(report.tested, 3);
    assert_eq!(report.skipped.count, 2);
    assert_eq!(report.skipped.listed[0].value, "r03");
    assert_eq!(report.skipped.listed[1].value, "tiny");
    assert_eq!(report.missing_rows, [0, 1]);
    // A column that is not there is an error naming it.
    let rule = SegmentRule::new("country");
    let error = compare_segments(&reference, &current, &rule, &DriftConfig::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("country"), "{error}");
}

#[test]
fn live_accuracy_per_segment_matches_the_labelled_rows() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut rng = Rng::new(21);
    let start = 1_700_000_000_000;
    let cities = ["a", "b", "c", "d"];
    // Per city its own error rate; city d has too few labels to report.
    let error_rates = [0.1, 0.3, 0.5, 0.2];
    let mut rows = Vec::new();
    let mut feedback = Vec::new();
    let mut hand: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for i in 0..3000usize {
        let city = if i % 100 == 0 { 3 } else { i % 3 };
        let x = rng.normal();
        let label = ["no", "yes"][usize::from(x > 0.0)];
        let id = format!("req-{i}");
        // Four rows in five get a label.
        if i % 5 != 1 || city == 3 {
            let wrong = rng.next_f64() < error_rates[city];
            let truth = match (wrong, label) {
                (false, l) => l,
                (true, "yes") => "no",
                (true, _) => "yes",
            };
            feedback.push((id.clone(), truth.to_string(), start + 10_000_000));
            let counts = hand.entry(cities[city]).or_default();
            counts.0 += u64::from(!wrong);
            counts.1 += 1;
        }
        rows.push(Row {
            id,
            ts: start + i as i64 * 1000,
            x,
            city: cities[city],
            label,
            score: 0.5 + 0.4 * x.abs().min(1.0),
        });
    }
    write_log(&logs, &rows, &feedback);
    let rule = SegmentRule {
        column: "city".into(),
        min_rows: 100,
        max_segments: 50,
    };
    let report = log_segments(
        &logs.display().to_string(),
        "risk",
        Some(&signature()),
        &rule,
    )
    .unwrap();
    let values: Vec<&str> = report.segments.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(values.len(), 3, "{report:#?}");
    for segment in &report.segments {
        let (right, labelled) = hand[segment.value.as_str()];
        let performance = segment.performance.as_ref().unwrap();
        assert_eq!(performance.labeled, labelled);
        assert_eq!(performance.headline_name, "accuracy");
        let expected = right as f64 / labelled as f64;
        assert!(
            (performance.headline - expected).abs() < 1e-12,
            "{}: {} vs {expected}",
            segment.value,
            performance.headline
        );
    }
    assert_eq!(report.skipped.count, 1);
    assert_eq!(report.skipped.listed[0].value, "d");
    let all_right: u64 = hand.values().map(|c| c.0).sum();
    let all_labelled: u64 = hand.values().map(|c| c.1).sum();
    let overall = report.overall.as_ref().unwrap();
    assert_eq!(overall.labeled, all_labelled);
    assert!((overall.headline - all_right as f64 / all_labelled as f64).abs() < 1e-12);
}
