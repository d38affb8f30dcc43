//! The joint (multivariate) test on a seeded generator whose shifts change
//! only how columns vary together, every column's own distribution the
//! same: a correlation that flips sign (a, b: ρ 0.7 → −0.7), a correlation
//! that appears between independent columns (c, d: 0 → 0.6), and mass that
//! moves into two quadrants of a pair of uniforms (e, f: half of the rows
//! made concordant, each marginal still uniform on [−1, 1]). Each must be
//! found by the joint test and by no column's test, with the pair named as
//! its drivers; unchanged data (other seeds) must raise no alarm, joint or
//! marginal. Run at 1M rows per side through `Profile::from_table` (what
//! `keel train` profiles), and through the CSV and Parquet readers at 20k.
//!
//! Categorical columns take part as indicators of their categories: a
//! region and an income whose relation flips (same region shares, same
//! income mixture) is found by the joint test only, with `region` and
//! `income` as drivers and the pairs of income with each region's
//! indicator; unchanged data with categorical columns raises no alarm at
//! 10k and 1M rows; a numeric-only profile keeps its file and verdict.

use std::sync::Arc;

use keel_learn::rng::Rng;
use keel_monitor::profile::Profile;
use keel_monitor::{DriftConfig, DriftReport, compare, profile_file};
use keel_table::{Column, Table};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shift {
    None,
    Flip,
    Appear,
    Quadrants,
}

const NUMERIC: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

/// Rows of one side: `shift` applies to the current side only.
fn columns(n: usize, seed: u64, current: bool, shift: Shift) -> Vec<Vec<f64>> {
    let mut rng = Rng::derive(seed, u64::from(current));
    let mut out: Vec<Vec<f64>> = (0..NUMERIC.len()).map(|_| Vec::with_capacity(n)).collect();
    let shift = if current { shift } else { Shift::None };
    for _ in 0..n {
        let rho_ab = if shift == Shift::Flip { -0.7 } else { 0.7 };
        let rho_cd = if shift == Shift::Appear { 0.6 } else { 0.0 };
        let (z0, z1) = (rng.normal(), rng.normal());
        let a = 10.0 + 2.0 * z0;
        let b = -3.0 + 0.5 * (rho_ab * z0 + (1.0f64 - rho_ab * rho_ab).sqrt() * z1);
        let (z2, z3) = (rng.normal(), rng.normal());
        let c = z2;
        let d = 100.0 + 15.0 * (rho_cd * z2 + (1.0f64 - rho_cd * rho_cd).sqrt() * z3);
        let e = 2.0 * rng.next_f64() - 1.0;
        let u = 2.0 * rng.next_f64() - 1.0;
        let concordant = rng.next_f64() < 0.5;
        // |u| with e's sign is uniform on [−1, 1] too: the marginal stays.
        let f = if shift == Shift::Quadrants && concordant {
            u.abs() * e.signum()
        } else {
            u
        };
        let g = -(1.0 - rng.next_f64()).ln() * 3.0;
        let h = (0.5 * rng.normal()).exp();
        for (column, value) in out.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            column.push(value);
        }
    }
    out
}

fn table(n: usize, seed: u64, current: bool, shift: Shift) -> Table {
    let mut names: Vec<String> = NUMERIC.iter().map(|s| s.to_string()).collect();
    names.push("city".into());
    let mut data: Vec<Column> = columns(n, seed, current, shift)
        .into_iter()
        .map(Column::Numeric)
        .collect();
    data.push(Column::Categorical(
        (0..n)
            .map(|i| Some(["rome", "oslo", "lima"][i % 3].to_string()))
            .collect(),
    ));
    Table::new(names, data).unwrap()
}

fn drifted_columns(report: &DriftReport) -> Vec<&str> {
    report
        .columns
        .iter()
        .filter(|c| c.drifted)
        .map(|c| c.column.as_str())
        .collect()
}

fn expected_pair(shift: Shift) -> [&'static str; 2] {
    match shift {
        Shift::Flip => ["a", "b"],
        Shift::Appear => ["c", "d"],
        Shift::Quadrants => ["e", "f"],
        Shift::None => unreachable!(),
    }
}

/// The joint verdict finds the shift, names its pair first, and no
/// marginal test fires.
fn check_found(report: &DriftReport, shift: Shift) {
    let joint = report.multivariate.as_ref().expect("the joint test ran");
    assert!(
        drifted_columns(report).is_empty(),
        "{shift:?}: a marginal test fired: {:?}",
        drifted_columns(report)
    );
    assert!(joint.drifted, "{shift:?}: {joint:#?}");
    assert!(report.dataset.drifted, "{shift:?}: {}", report.dataset.rule);
    let pair = expected_pair(shift);
    let mut top: Vec<&str> = joint.drivers.iter().take(2).map(String::as_str).collect();
    top.sort();
    assert_eq!(top, pair, "{shift:?}: drivers {:?}", joint.drivers);
    assert!(joint.p_value.is_some_and(|p| p < 0.01), "{joint:#?}");
    let drifted_pairs: Vec<(&str, &str)> = joint
        .pairs
        .iter()
        .filter(|p| p.drifted)
        .map(|p| (p.a.as_str(), p.b.as_str()))
        .collect();
    assert_eq!(drifted_pairs, vec![(pair[0], pair[1])], "{shift:?}");
}

fn check_quiet(report: &DriftReport, label: &str) {
    let joint = report.multivariate.as_ref().expect("the joint test ran");
    assert!(!joint.drifted, "{label}: false alarm: {joint:#?}");
    assert!(drifted_columns(report).is_empty(), "{label}");
    assert!(!report.dataset.drifted, "{label}");
    assert!(joint.drivers.is_empty(), "{label}: {:?}", joint.drivers);
}

#[test]
fn joint_shifts_at_one_million_rows_are_found_only_by_the_joint_test() {
    let n = 1_000_000;
    let config = DriftConfig::default();
    let reference = Profile::from_table(&table(n, 7, false, Shift::None), None);
    let model = reference.multivariate.as_ref().expect("a fitted model");
    // The numeric columns, then the categorical column's indicators.
    assert_eq!(model.columns[..NUMERIC.len()], NUMERIC);
    assert_eq!(
        model.columns[NUMERIC.len()..],
        ["city=rome", "city=lima", "city=oslo"]
    );
    assert!(model.variance_kept >= 0.65 && model.components.len() < model.columns.len());
    assert!(model.sample_rows == 20_000 && model.error_std > 0.0);
    for shift in [Shift::Flip, Shift::Appear, Shift::Quadrants] {
        let current = Profile::from_table(&table(n, 7, true, shift), Some(&reference));
        let report = compare(&reference, &current, &config).unwrap();
        check_found(&report, shift);
    }
    // No shift: independent draws of the same distributions.
    let current = Profile::from_table(&table(n, 7, true, Shift::None), Some(&reference));
    check_quiet(&compare(&reference, &current, &config).unwrap(), "1M");
}

#[test]
fn unchanged_data_raises_no_joint_alarm_across_seeds_and_sizes() {
    let config = DriftConfig::default();
    for (seed, n) in [
        (1, 2_000),
        (2, 5_000),
        (3, 20_000),
        (4, 100_000),
        (5, 300_000),
    ] {
        let reference = Profile::from_table(&table(n, seed, false, Shift::None), None);
        for m in [n / 2, n] {
            let mut rng_seed = seed * 1000 + m as u64;
            rng_seed ^= 0x5bd1e995;
            let current =
                Profile::from_table(&table(m, rng_seed, true, Shift::None), Some(&reference));
            let report = compare(&reference, &current, &config).unwrap();
            check_quiet(&report, &format!("seed {seed}, {n} vs {m} rows"));
        }
    }
}

#[test]
fn the_pca_part_alone_finds_a_flipped_correlation() {
    // With the pairwise part out of reach (its threshold above any change)
    // the reconstruction error alone must carry the flip: NannyML's method.
    let mut config = DriftConfig::default();
    config.multivariate.min_correlation_change = 2.0;
    let n = 50_000;
    let reference = Profile::from_table(&table(n, 11, false, Shift::None), None);
    let current = Profile::from_table(&table(n, 11, true, Shift::Flip), Some(&reference));
    let report = compare(&reference, &current, &config).unwrap();
    let joint = report.multivariate.unwrap();
    assert!(joint.drifted, "{joint:#?}");
    assert!(joint.error_change > 0.1, "{}", joint.error_change);
    assert!(joint.pairs.iter().all(|p| !p.drifted));
    let mut top: Vec<&str> = joint.drivers.iter().take(2).map(String::as_str).collect();
    top.sort();
    assert_eq!(top, ["a", "b"], "{:?}", joint.column_errors);
}

fn write_csv(path: &std::path::Path, table: &Table) {
    table.write_csv(path).unwrap();
}

/// Writes the numeric columns as Parquet in two row groups, with a null
/// now and then in column h.
fn write_parquet(path: &std::path::Path, columns: &[Vec<f64>]) {
    let mut columns = columns.to_vec();
    for (i, value) in columns[7].iter_mut().enumerate() {
        if i.is_multiple_of(50) {
            *value = f64::NAN;
        }
    }
    let n = columns[0].len();
    let names = NUMERIC.iter().map(|s| s.to_string()).collect();
    let table = Table::new(names, columns.into_iter().map(Column::Numeric).collect()).unwrap();
    write_table_parquet(path, &table, &[n / 3, n - n / 3]);
}

#[test]
fn csv_and_parquet_readers_carry_the_joint_test() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000;
    let config = DriftConfig::default();
    write_csv(
        &dir.path().join("ref.csv"),
        &table(n, 21, false, Shift::None),
    );
    write_csv(
        &dir.path().join("flip.csv"),
        &table(n, 21, true, Shift::Flip),
    );
    write_csv(
        &dir.path().join("same.csv"),
        &table(n, 21, true, Shift::None),
    );
    let reference = profile_file(&dir.path().join("ref.csv"), None).unwrap();
    assert!(reference.multivariate.is_some());
    // The sums and the model survive the profile's JSON file.
    let path = dir.path().join("profile.json");
    reference.write_json(&path).unwrap();
    let reference = Profile::read_json(&path).unwrap();
    let flip = profile_file(&dir.path().join("flip.csv"), Some(&reference)).unwrap();
    check_found(&compare(&reference, &flip, &config).unwrap(), Shift::Flip);
    let same = profile_file(&dir.path().join("same.csv"), Some(&reference)).unwrap();
    check_quiet(&compare(&reference, &same, &config).unwrap(), "csv");

    write_parquet(
        &dir.path().join("ref.parquet"),
        &columns(n, 22, false, Shift::None),
    );
    write_parquet(
        &dir.path().join("cd.parquet"),
        &columns(n, 22, true, Shift::Appear),
    );
    let reference = profile_file(&dir.path().join("ref.parquet"), None).unwrap();
    let model = reference.multivariate.as_ref().unwrap();
    assert_eq!(model.columns, NUMERIC);
    let current = profile_file(&dir.path().join("cd.parquet"), Some(&reference)).unwrap();
    let report = compare(&reference, &current, &config).unwrap();
    check_found(&report, Shift::Appear);
    // Reading the same file against itself: the same sums, no change.
    let itself = profile_file(&dir.path().join("ref.parquet"), Some(&reference)).unwrap();
    let joint = compare(&reference, &itself, &config)
        .unwrap()
        .multivariate
        .unwrap();
    assert!(joint.error_change.abs() < 1e-9, "{}", joint.error_change);
}

#[test]
fn a_profile_without_the_joint_model_still_loads_and_skips_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let reference = Profile::from_table(&table(5_000, 31, false, Shift::None), None);
    let mut json: serde_json::Value = serde_json::to_value(&reference).unwrap();
    let object = json.as_object_mut().unwrap();
    assert!(object.remove("multivariate").is_some());
    assert!(object.remove("joint").is_some());
    let path = dir.path().join("old.json");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let old = Profile::read_json(&path).unwrap();
    assert!(old.multivariate.is_none());
    let current = Profile::from_table(&table(5_000, 31, true, Shift::Flip), Some(&old));
    assert!(current.joint.is_none());
    let report = compare(&old, &current, &DriftConfig::default()).unwrap();
    assert!(report.multivariate.is_none());
    assert!(!report.dataset.drifted, "{}", report.dataset.rule);
}

#[test]
fn window_profiles_merge_into_the_same_joint_verdict() {
    // Two halves of the current data, profiled apart and merged, give the
    // verdict of the whole (the sums add exactly).
    let n = 40_000;
    let reference = Profile::from_table(&table(n, 41, false, Shift::None), None);
    let whole = table(n, 41, true, Shift::Quadrants);
    let half = |rows: std::ops::Range<usize>| {
        let indices: Vec<usize> = rows.collect();
        Profile::from_table(&whole.select_rows(&indices), Some(&reference))
    };
    let mut merged = half(0..n / 2);
    merged.merge(&half(n / 2..n)).unwrap();
    let config = DriftConfig::default();
    let a = compare(&reference, &merged, &config)
        .unwrap()
        .multivariate
        .unwrap();
    let b = compare(
        &reference,
        &Profile::from_table(&whole, Some(&reference)),
        &config,
    )
    .unwrap()
    .multivariate
    .unwrap();
    assert!((a.error_change - b.error_change).abs() < 1e-9);
    assert_eq!(a.drivers, b.drivers);
    assert!(a.drifted && b.drifted);
}

/// Writes a log of two numeric inputs `x`, `y` (no outputs checked) through
/// keel-predlog's writer, as `keel serve` does.
fn write_xy_log(logs: &std::path::Path, rows: &[(i64, f64, f64)]) {
    use keel_predlog::{
        Input, InputKind, Inputs, LogSettings, ModelSchema, Outputs, Prediction, PredictionLog,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut settings = LogSettings::new(logs.display().to_string(), "test-1");
        settings.flush_interval = std::time::Duration::from_secs(3600);
        let log = PredictionLog::start(settings, Arc::default()).unwrap();
        let model = log.register(ModelSchema {
            name: "risk".into(),
            version: "1".into(),
            inputs: ["x", "y"]
                .iter()
                .map(|name| Input {
                    name: name.to_string(),
                    kind: InputKind::Number,
                })
                .collect(),
            classes: None,
        });
        for (i, &(ts, x, y)) in rows.iter().enumerate() {
            let (x, y) = ([x], [y]);
            log.log(
                &model,
                &Prediction {
                    request_id: &format!("req-{i}"),
                    ts_ms: ts,
                    role: "primary",
                    latency_us: 100,
                    rows: 1,
                    inputs: &[Inputs::Numbers(&x), Inputs::Numbers(&y)],
                    outputs: Outputs::Values(&[x[0] + y[0]]),
                    flags: &[],
                },
            )
            .await
            .unwrap();
        }
        log.shutdown();
    });
}

#[test]
fn the_watcher_records_the_joint_verdict_in_the_summary_shape_the_ui_reads() {
    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut rng = Rng::new(5);
    let mut pair = |rho: f64| {
        let (z0, z1) = (rng.normal(), rng.normal());
        (z0, rho * z0 + (1.0f64 - rho * rho).sqrt() * z1)
    };
    // Reference: x, y with correlation 0.8.
    let (xs, ys): (Vec<f64>, Vec<f64>) = (0..20_000).map(|_| pair(0.8)).unzip();
    let reference = Profile::from_table(
        &Table::new(
            vec!["x".into(), "y".into()],
            vec![Column::Numeric(xs), Column::Numeric(ys)],
        )
        .unwrap(),
        None,
    );
    // Three hours of traffic; in the third the correlation flips.
    let start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR;
    let mut rows = Vec::new();
    for hour in 0..3i64 {
        let rho = if hour == 2 { -0.8 } else { 0.8 };
        for i in 0..3000i64 {
            let (x, y) = pair(rho);
            rows.push((start + hour * HOUR + i * 1000, x, y));
        }
    }
    write_xy_log(&logs, &rows);
    let (watcher, evaluation) = watch_once(&logs, reference, start + 3 * HOUR);
    let windows = &evaluation.windows.windows;
    assert_eq!(windows.len(), 3);
    assert!(!windows[0].drifted && !windows[1].drifted, "{windows:?}");
    assert!(windows[2].drifted, "{:?}", windows[2]);
    assert!(windows[2].drifted_columns.is_empty(), "marginals unchanged");
    // Every window carries its own joint figures.
    for window in &windows[..2] {
        let joint = window
            .joint
            .as_ref()
            .expect("the joint test ran on the window");
        assert!(!joint.drifted && joint.drivers.is_empty(), "{joint:?}");
    }
    let flipped = windows[2].joint.as_ref().expect("the joint test ran");
    assert!(flipped.drifted && flipped.error_change > 0.1, "{flipped:?}");
    assert!(flipped.p_value.is_some_and(|p| p < 0.01), "{flipped:?}");
    let mut top = flipped.drivers.clone();
    top.sort();
    assert_eq!(top, ["x", "y"]);
    assert!(
        evaluation.events.iter().any(|e| e.key == "drift:joint"),
        "{:?}",
        evaluation.events
    );
    let gauges = watcher.gauges.text();
    assert!(
        gauges.contains("keel_monitor_joint_drift{model=\"risk\"} 1"),
        "{gauges}"
    );
    let verdict = evaluation.verdict();
    assert!(verdict.drifted);
    let joint = &verdict.summary["multivariate"];
    assert_eq!(joint["drifted"], serde_json::json!(true), "{joint}");
    assert!(joint["error_change"].as_f64().unwrap() > 0.1, "{joint}");
    assert!(joint["p_value"].as_f64().unwrap() < 0.01, "{joint}");
    let mut drivers: Vec<&str> = joint["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    drivers.sort();
    assert_eq!(drivers, ["x", "y"]);
    // ... and so does each window of the summary.
    let recorded = verdict.summary["windows"].as_array().unwrap();
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[0]["joint"]["drifted"], serde_json::json!(false));
    assert_eq!(recorded[2]["joint"]["drifted"], serde_json::json!(true));
    assert!(recorded[2]["joint"]["error_change"].as_f64().unwrap() > 0.1);
    assert_eq!(recorded[2]["joint"]["drivers"].as_array().unwrap().len(), 2);
    assert!(serde_json::to_string(&verdict.summary).unwrap().len() < 4096);
}

#[test]
fn the_generated_stories_raise_no_joint_alarm_between_seeds() {
    // keel's own generated tables (skewed incomes, ratios, counts, codes):
    // two seeds of the same story are the same joint distribution. The
    // reference is what `keel train` writes (target left out of the sums).
    use keel_learn::generate::{Dataset, GenerateOptions, generate};
    let config = DriftConfig::default();
    for dataset in [Dataset::Portfolio, Dataset::Retail] {
        for rows in [1_000, 20_000] {
            for seed in 0..10u64 {
                let table = |seed| {
                    generate(
                        dataset,
                        &GenerateOptions {
                            rows,
                            seed,
                            covariate_shift: 0.0,
                            concept_drift: 0.0,
                        },
                    )
                    .unwrap()
                };
                let mut reference = Profile::from_table_without_joint_fit(&table(seed));
                reference.drop_from_joint(&[dataset.target()]);
                let model = reference.multivariate.as_ref().expect("a model");
                // The target is out, a categorical one with all its indicators.
                assert!((0..model.columns.len()).all(|i| model.source(i) != dataset.target()));
                let current = Profile::from_table(&table(seed + 1000), Some(&reference));
                let report = compare(&reference, &current, &config).unwrap();
                let label = format!("{dataset:?}, {rows} rows, seed {seed}");
                check_quiet(&report, &label);
            }
        }
    }
}

#[test]
fn a_reference_with_a_nearly_empty_column_round_trips_through_json() {
    // A column with two present values has no usable correlation with the
    // others (null in the file, not NaN); the file must load back equal.
    let n = 3_000;
    let mut data = columns(n, 51, false, Shift::None);
    data[7] = (0..n)
        .map(|i| if i < 2 { i as f64 } else { f64::NAN })
        .collect();
    let names: Vec<String> = NUMERIC.iter().map(|s| s.to_string()).collect();
    let table = Table::new(names, data.into_iter().map(Column::Numeric).collect()).unwrap();
    let reference = Profile::from_table(&table, None);
    let model = reference.multivariate.as_ref().unwrap();
    assert!(model.correlations.iter().any(Option::is_none));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.json");
    reference.write_json(&path).unwrap();
    assert_eq!(Profile::read_json(&path).unwrap(), reference);
    let current = Profile::from_table(&table, Some(&reference));
    let report = compare(&reference, &current, &DriftConfig::default()).unwrap();
    check_quiet(&report, "itself");
}

// Categorical columns in the joint test: each takes part as indicator
// columns of its most frequent categories in the reference.

/// Codes of `code` and their shares: more categories than get indicators,
/// two of them under the 1 % a category needs.
const CODES: [(&str, f64); 11] = [
    ("c01", 0.24),
    ("c02", 0.18),
    ("c03", 0.15),
    ("c04", 0.12),
    ("c05", 0.09),
    ("c06", 0.075),
    ("c07", 0.06),
    ("c08", 0.045),
    ("c09", 0.03),
    ("c10", 0.007),
    ("c11", 0.003),
];

/// A table of a region (north/south, half each), a sales channel, a code,
/// income, age and tenure. In the reference northern incomes are high and
/// southern ones low; with `flip` (current side only) the relation is the
/// other way round: the same region shares and the same income mixture
/// (½·N(60, 8²) + ½·N(40, 8²)), only the joint distribution changes.
fn regional(n: usize, seed: u64, current: bool, flip: bool) -> Table {
    let mut rng = Rng::derive(seed, 100 + u64::from(current));
    let flip = current && flip;
    let (mut region, mut channel, mut code) = (Vec::new(), Vec::new(), Vec::new());
    let (mut income, mut age, mut tenure) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let north = rng.next_f64() < 0.5;
        let high = north != flip;
        income.push(if high { 60.0 } else { 40.0 } + 8.0 * rng.normal());
        region.push(Some(if north { "north" } else { "south" }.to_string()));
        let c = rng.next_f64();
        channel.push((i % 97 != 5).then(|| {
            if c < 0.5 {
                "web"
            } else if c < 0.8 {
                "shop"
            } else {
                "phone"
            }
            .to_string()
        }));
        let mut u = rng.next_f64();
        let mut picked = CODES[CODES.len() - 1].0;
        for (name, share) in CODES {
            if u < share {
                picked = name;
                break;
            }
            u -= share;
        }
        code.push(Some(picked.to_string()));
        age.push(40.0 + 10.0 * rng.normal());
        tenure.push(-(1.0 - rng.next_f64()).ln() * 4.0);
    }
    Table::new(
        ["region", "income", "channel", "age", "code", "tenure"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        vec![
            Column::Categorical(region),
            Column::Numeric(income),
            Column::Categorical(channel),
            Column::Numeric(age),
            Column::Categorical(code),
            Column::Numeric(tenure),
        ],
    )
    .unwrap()
}

/// The joint columns a `regional` reference gets: numeric columns first,
/// then each categorical column's indicators (codes above 1 %, at most 8).
fn regional_columns() -> Vec<String> {
    let mut columns: Vec<String> = ["income", "age", "tenure", "region=north", "region=south"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    columns.extend(["web", "shop", "phone"].map(|c| format!("channel={c}")));
    columns.extend(CODES[..8].iter().map(|(c, _)| format!("code={c}")));
    columns
}

/// `columns` are [`regional_columns`]: the numeric columns first, then the
/// indicators (in the order of their counts, which two categories of equal
/// share can take either way).
fn check_regional_columns(columns: &[String]) {
    let expected = regional_columns();
    assert_eq!(columns[..3], expected[..3], "{columns:?}");
    let mut indicators = columns[3..].to_vec();
    let mut expected_indicators = expected[3..].to_vec();
    indicators.sort();
    expected_indicators.sort();
    assert_eq!(indicators, expected_indicators, "{columns:?}");
}

/// The flip is found by the joint test alone, region and income named.
fn check_region_flip(report: &DriftReport, label: &str) {
    let joint = report.multivariate.as_ref().expect("the joint test ran");
    assert!(
        drifted_columns(report).is_empty(),
        "{label}: a marginal test fired: {:?}",
        drifted_columns(report)
    );
    assert!(
        joint.drifted && report.dataset.drifted,
        "{label}: {joint:#?}"
    );
    assert!(
        joint.p_value.is_some_and(|p| p < 0.01),
        "{label}: {joint:#?}"
    );
    // Drivers by data column: the categorical column's name, not its indicators'.
    let mut top: Vec<&str> = joint.drivers.iter().take(2).map(String::as_str).collect();
    top.sort();
    assert_eq!(top, ["income", "region"], "{label}: {:?}", joint.drivers);
    // The pairs keep the category: income with each region's indicator.
    let mut drifted: Vec<(&str, &str)> = joint
        .pairs
        .iter()
        .filter(|p| p.drifted)
        .map(|p| (p.a.as_str(), p.b.as_str()))
        .collect();
    drifted.sort();
    assert_eq!(
        drifted,
        [("income", "region=north"), ("income", "region=south")],
        "{label}"
    );
    // No pair of two categories of one column is tested.
    assert!(
        joint.pairs.iter().all(|p| {
            let column = |name: &str| name.split('=').next().unwrap_or("").to_string();
            !(p.a.contains('=') && p.b.contains('=') && column(&p.a) == column(&p.b))
        }),
        "{label}: {:?}",
        joint.pairs
    );
    // One row per data column in the error table.
    assert!(joint.column_errors.iter().any(|c| c.column == "region"));
    assert!(!joint.column_errors.iter().any(|c| c.column.contains('=')));
    let north = joint
        .pairs
        .iter()
        .find(|p| p.b == "region=north")
        .expect("the pair is reported");
    eprintln!(
        "{label}: error {:+.1}% (p {:?}), income~region=north {:.3} -> {:.3} (Holm p {:.2e}), joint p {:?}, drivers {:?}",
        joint.error_change * 100.0,
        joint.error_p_value,
        north.reference,
        north.current,
        north.p_value_adjusted,
        joint.p_value,
        joint.drivers
    );
}

#[test]
fn a_categorical_and_a_numeric_column_changing_together_are_found_by_the_joint_test_only() {
    let config = DriftConfig::default();
    let n = 100_000;
    let reference = Profile::from_table(&regional(n, 61, false, false), None);
    let model = reference.multivariate.as_ref().expect("a fitted model");
    check_regional_columns(&model.columns);
    let sums = reference.joint.as_ref().unwrap();
    assert_eq!((sums.source(3), sums.source(4)), ("region", "region"));
    let current = Profile::from_table(&regional(n, 61, true, true), Some(&reference));
    check_region_flip(
        &compare(&reference, &current, &config).unwrap(),
        "100k in memory",
    );
    let same = Profile::from_table(&regional(n, 61, true, false), Some(&reference));
    check_quiet(
        &compare(&reference, &same, &config).unwrap(),
        "100k unchanged",
    );

    // Through the CSV reader (indicators chosen from its first chunk), and
    // through the profile's JSON file.
    let dir = tempfile::tempdir().unwrap();
    let n = 30_000;
    regional(n, 62, false, false)
        .write_csv(&dir.path().join("ref.csv"))
        .unwrap();
    regional(n, 62, true, true)
        .write_csv(&dir.path().join("flip.csv"))
        .unwrap();
    let reference = profile_file(&dir.path().join("ref.csv"), None).unwrap();
    check_regional_columns(&reference.multivariate.as_ref().unwrap().columns);
    let path = dir.path().join("profile.json");
    reference.write_json(&path).unwrap();
    let reference = Profile::read_json(&path).unwrap();
    let flip = profile_file(&dir.path().join("flip.csv"), Some(&reference)).unwrap();
    check_region_flip(&compare(&reference, &flip, &config).unwrap(), "30k csv");
    // The same file against itself: the same sums, no change.
    let itself = profile_file(&dir.path().join("ref.csv"), Some(&reference)).unwrap();
    let joint = compare(&reference, &itself, &config)
        .unwrap()
        .multivariate
        .unwrap();
    assert!(
        joint.error_change.abs() < 1e-9 && !joint.drifted,
        "{joint:?}"
    );

    // Through the Parquet reader (text columns read row-aligned with the
    // numbers, indicators chosen from the first batch, nulls missing).
    let groups = [8_000, 8_000, 8_000, 6_000];
    write_table_parquet(
        &dir.path().join("ref.parquet"),
        &regional(n, 63, false, false),
        &groups,
    );
    write_table_parquet(
        &dir.path().join("flip.parquet"),
        &regional(n, 63, true, true),
        &groups,
    );
    let reference = profile_file(&dir.path().join("ref.parquet"), None).unwrap();
    check_regional_columns(&reference.multivariate.as_ref().unwrap().columns);
    let flip = profile_file(&dir.path().join("flip.parquet"), Some(&reference)).unwrap();
    check_region_flip(&compare(&reference, &flip, &config).unwrap(), "30k parquet");
}

/// Writes a table as Parquet in row groups of `groups` rows: numbers as
/// optional doubles (NaN as null), categories as optional UTF-8 strings.
fn write_table_parquet(path: &std::path::Path, table: &Table, groups: &[usize]) {
    use parquet::column::writer::ColumnWriter;
    use parquet::data_type::ByteArray;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let fields: String = table
        .names()
        .iter()
        .map(|name| match table.column(name) {
            Some(Column::Numeric(_)) => format!("optional double {name}; "),
            _ => format!("optional binary {name} (UTF8); "),
        })
        .collect();
    let schema =
        parquet::schema::parser::parse_message_type(&format!("message t {{ {fields}}}")).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(
        file,
        Arc::new(schema),
        Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    let mut start = 0;
    for &size in groups {
        let range = start..start + size;
        start += size;
        let mut group = writer.next_row_group().unwrap();
        let mut k = 0;
        while let Some(mut column) = group.next_column().unwrap() {
            match (table.column(&table.names()[k]), column.untyped()) {
                (Some(Column::Numeric(values)), ColumnWriter::DoubleColumnWriter(typed)) => {
                    let cells = &values[range.clone()];
                    let present: Vec<f64> = cells.iter().copied().filter(|v| !v.is_nan()).collect();
                    let levels: Vec<i16> = cells.iter().map(|v| i16::from(!v.is_nan())).collect();
                    typed.write_batch(&present, Some(&levels), None).unwrap();
                }
                (Some(Column::Categorical(values)), ColumnWriter::ByteArrayColumnWriter(typed)) => {
                    let cells = &values[range.clone()];
                    let present: Vec<ByteArray> = cells
                        .iter()
                        .flatten()
                        .map(|v| ByteArray::from(v.as_str()))
                        .collect();
                    let levels: Vec<i16> = cells.iter().map(|v| i16::from(v.is_some())).collect();
                    typed.write_batch(&present, Some(&levels), None).unwrap();
                }
                _ => unreachable!(),
            }
            column.close().unwrap();
            k += 1;
        }
        group.close().unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn unchanged_data_with_categorical_columns_raises_no_joint_alarm() {
    let config = DriftConfig::default();
    for n in [10_000, 1_000_000] {
        for seed in [71, 72] {
            let reference = Profile::from_table(&regional(n, seed, false, false), None);
            let current = Profile::from_table(&regional(n, seed, true, false), Some(&reference));
            let report = compare(&reference, &current, &config).unwrap();
            let joint = report.multivariate.as_ref().expect("the joint test ran");
            check_regional_columns(&joint.columns);
            let largest = joint
                .pairs
                .first()
                .map_or(0.0, |p| (p.current - p.reference).abs());
            eprintln!(
                "control {n} rows, seed {seed}: error {:+.2}% (p {:?}), largest |Δρ| {largest:.4}, joint p {:?}",
                joint.error_change * 100.0,
                joint.error_p_value,
                joint.p_value
            );
            check_quiet(&report, &format!("{n} rows, seed {seed}"));
        }
    }
}

#[test]
fn a_numeric_only_profile_keeps_its_format_and_verdict_with_categorical_data() {
    // A reference whose joint sums hold numeric columns only (as every
    // profile written before categorical columns took part): no new field
    // in its file, and current data with categorical columns is compared
    // on the numeric columns alone.
    let mut reference = Profile::from_table_without_joint_fit(&regional(20_000, 81, false, false));
    reference.drop_from_joint(&["region", "channel", "code"]);
    let model = reference.multivariate.as_ref().unwrap();
    assert_eq!(model.columns, ["income", "age", "tenure"]);
    let text = serde_json::to_string(&reference).unwrap();
    assert!(
        !text.contains("indicators"),
        "numeric-only sums add no field"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.json");
    std::fs::write(&path, &text).unwrap();
    let old = Profile::read_json(&path).unwrap();
    assert_eq!(old.multivariate, reference.multivariate);
    let current = Profile::from_table(&regional(20_000, 81, true, true), Some(&old));
    let sums = current.joint.as_ref().unwrap();
    assert_eq!(sums.columns, ["income", "age", "tenure"]);
    assert!(sums.indicators.is_empty());
    // Without the categorical column the flip is invisible, as before.
    let report = compare(&old, &current, &DriftConfig::default()).unwrap();
    let joint = report.multivariate.unwrap();
    assert!(!joint.drifted, "{joint:#?}");
}

#[test]
fn prediction_log_windows_carry_categorical_joint_columns() {
    // The log of `log.rs`: a numeric input `x` (here an income) and a
    // categorical `city` (here a region, north or south).
    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut rng = Rng::new(9);
    let mut draw = |flip: bool| {
        let north = rng.next_f64() < 0.5;
        let income = if north != flip { 60.0 } else { 40.0 } + 8.0 * rng.normal();
        (if north { "north" } else { "south" }, income)
    };
    let (regions, incomes): (Vec<Option<String>>, Vec<f64>) = (0..20_000)
        .map(|_| {
            let (region, income) = draw(false);
            (Some(region.to_string()), income)
        })
        .unzip();
    let reference = Profile::from_table(
        &Table::new(
            vec!["x".into(), "city".into()],
            vec![Column::Numeric(incomes), Column::Categorical(regions)],
        )
        .unwrap(),
        None,
    );
    let model = reference.multivariate.as_ref().unwrap();
    assert_eq!(model.columns.len(), 3, "x and two indicators");
    // Three hours of traffic; in the third the relation flips.
    let start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR;
    let mut rows = Vec::new();
    for hour in 0..3i64 {
        for i in 0..3000i64 {
            let (city, x) = draw(hour == 2);
            rows.push(crate::log::Row {
                id: format!("req-{hour}-{i}"),
                ts: start + hour * HOUR + i * 1000,
                x,
                city,
                label: "no",
                score: 0.9,
            });
        }
    }
    crate::log::write_log(&logs, &rows, &[]);
    let (_, evaluation) = watch_once(&logs, reference, start + 3 * HOUR);
    let windows = &evaluation.windows.windows;
    assert_eq!(windows.len(), 3);
    for window in &windows[..2] {
        let joint = window.joint.as_ref().expect("the joint test ran");
        assert!(!joint.drifted && !window.drifted, "{window:?}");
    }
    assert!(windows[2].drifted_columns.is_empty(), "marginals unchanged");
    let flipped = windows[2].joint.as_ref().expect("the joint test ran");
    assert!(flipped.drifted, "{flipped:?}");
    let mut drivers = flipped.drivers.clone();
    drivers.sort();
    assert_eq!(drivers, ["city", "x"]);
}

/// One evaluation of hourly windows (the newest three) of the model
/// `risk`'s log at `at`, against `reference`.
fn watch_once(
    logs: &std::path::Path,
    reference: Profile,
    at: i64,
) -> (
    keel_monitor::service::Watcher,
    keel_monitor::service::Evaluation,
) {
    use keel_monitor::service::{Reference, WatchOptions, Watcher};
    let mut watcher = Watcher::new(WatchOptions {
        log_dir: logs.display().to_string(),
        model: "risk".into(),
        window: std::time::Duration::from_secs(3600),
        history: 3,
        interval: std::time::Duration::from_secs(60),
        drift: DriftConfig::default(),
        sinks: Vec::new(),
        action_cooldown: None,
        confirm: 1,
        once: true,
        quiet: true,
    });
    let evaluation = watcher
        .evaluate(
            at,
            &Reference {
                profile: reference,
                signature: None,
                evaluation: None,
            },
        )
        .unwrap();
    (watcher, evaluation)
}
