//! Concept drift on a labelled stream: the Page–Hinkley detector on the
//! error stream finds an abrupt and a gradual rise of the error rate within
//! a stated number of labels and stays quiet on a stable stream; the
//! label-free (CBPE-style) estimate tracks realized accuracy when the
//! model's scores are calibrated, and says nothing of a concept drift (its
//! stated assumption).

use keel_learn::model::Signature;
use keel_learn::rng::Rng;
use keel_monitor::calibration::Calibration;
use keel_monitor::profile::{ColumnKind, ColumnProfile, Profile};
use keel_monitor::window::{WindowedReport, windowed_report};

use crate::log::{HOUR, Row, hourly, signature, write_log};

/// Labels after the change within which an abrupt rise (error 0.1 → 0.4)
/// must be detected.
const ABRUPT_WITHIN: i64 = 200;
/// Labels after the start of a gradual rise (0.1 → 0.4 over 2,000 labels)
/// within which it must be detected.
const GRADUAL_WITHIN: i64 = 1_200;
/// Rows (and labels) per stream: 3,000 before the change, 3,000 after.
const ROWS: usize = 6_000;

fn reference() -> (Profile, Signature) {
    let mut rng = Rng::new(5);
    let xs: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
    let mut x = ColumnProfile::new("x", ColumnKind::Numeric, None);
    x.push_numbers(&xs);
    x.finish();
    let mut city = ColumnProfile::new("city", ColumnKind::Categorical, None);
    (0..20_000).for_each(|i| city.push_category(["a", "b"][i % 2]));
    let mut target = ColumnProfile::new("default", ColumnKind::Categorical, None);
    (0..20_000).for_each(|i| target.push_category(["no", "yes"][i % 2]));
    let mut profile = Profile::empty(vec![x, city, target]);
    profile.rows = 20_000;
    (profile, signature())
}

/// A labelled stream of `ROWS` requests one second apart from `start`; the
/// prediction is right with probability `accuracy(i, score)` for row `i`.
fn stream(seed: u64, start: i64, accuracy: impl Fn(usize, f64) -> f64) -> WindowedReport {
    stream_calibrated(seed, start, accuracy, None)
}

/// [`stream`] against a reference that carries `calibration`.
fn stream_calibrated(
    seed: u64,
    start: i64,
    accuracy: impl Fn(usize, f64) -> f64,
    calibration: Option<Calibration>,
) -> WindowedReport {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut rng = Rng::new(seed);
    let mut rows = Vec::with_capacity(ROWS);
    let mut feedback = Vec::with_capacity(ROWS);
    for i in 0..ROWS {
        let x = rng.normal();
        let label = ["no", "yes"][usize::from(x > 0.0)];
        let score = 0.55 + 0.4 * x.abs().min(1.0);
        let right = rng.next_f64() < accuracy(i, score);
        let truth = match (right, label) {
            (true, l) => l,
            (false, "yes") => "no",
            (false, _) => "yes",
        };
        let id = format!("req-{i}");
        feedback.push((id.clone(), truth.to_string(), start + 10 * HOUR));
        rows.push(Row {
            id,
            ts: start + i as i64 * 1000,
            x,
            city: ["a", "b"][i % 2],
            label,
            score,
        });
    }
    write_log(&logs, &rows, &feedback);
    let (mut profile, signature) = reference();
    profile.calibration = calibration;
    windowed_report(&hourly(&logs), &profile, Some(&signature), None)
        .unwrap()
        .1
}

/// Labels between row `from` and the first error change point, if any.
fn detected_after(report: &WindowedReport, start: i64, from: usize) -> Option<i64> {
    report
        .change_points
        .iter()
        .filter(|c| c.stream == "error")
        .map(|c| (c.detected_ms - start) / 1000 - from as i64)
        .next()
}

#[test]
fn abrupt_and_gradual_concept_drift_are_found_within_the_stated_labels_and_a_stable_stream_is_quiet()
 {
    let start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR;
    let change = ROWS / 2;
    for seed in [1, 2, 3] {
        let stable = stream(seed, start, |_, _| 0.9);
        assert!(
            stable.change_points.iter().all(|c| c.stream != "error"),
            "seed {seed}: alarm on a stable stream: {:?}",
            stable.change_points
        );
        let abrupt = stream(seed, start, |i, _| if i < change { 0.9 } else { 0.6 });
        let delay = detected_after(&abrupt, start, change)
            .unwrap_or_else(|| panic!("seed {seed}: abrupt drift missed"));
        eprintln!("seed {seed}: abrupt drift detected after {delay} labels");
        assert!(
            (0..=ABRUPT_WITHIN).contains(&delay),
            "seed {seed}: abrupt drift detected {delay} labels after it began"
        );
        let gradual = stream(seed, start, |i, _| {
            let t = (i.saturating_sub(change) as f64 / 2_000.0).min(1.0);
            0.9 - 0.3 * t
        });
        let delay = detected_after(&gradual, start, change)
            .unwrap_or_else(|| panic!("seed {seed}: gradual drift missed"));
        eprintln!("seed {seed}: gradual drift detected after {delay} labels");
        assert!(
            (0..=GRADUAL_WITHIN).contains(&delay),
            "seed {seed}: gradual drift detected {delay} labels after it began"
        );
    }
}

#[test]
fn the_label_free_estimate_tracks_realized_accuracy_when_scores_are_calibrated() {
    let start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR;
    // Calibrated: a prediction with score s is right with probability s.
    let calibrated = stream(7, start, |_, score| score);
    assert!(calibrated.windows.len() >= 2);
    for window in &calibrated.windows {
        let performance = window.performance.as_ref().unwrap();
        assert_eq!(performance.headline_name, "accuracy");
        let realized = performance.headline;
        let estimated = window.estimated_accuracy.unwrap();
        eprintln!("estimated {estimated:.4}, realized {realized:.4}");
        assert!(
            (realized - estimated).abs() < 0.03,
            "window {}: estimated {estimated:.3}, realized {realized:.3}",
            window.start_ms
        );
    }
    // A concept drift (same inputs, same scores, more errors) is outside
    // the estimate's assumption: realized accuracy falls, the estimate not.
    let drifted = stream(
        7,
        start,
        |i, score| if i < ROWS / 2 { score } else { score - 0.3 },
    );
    let last = drifted.windows.last().unwrap();
    let realized = last.performance.as_ref().unwrap().headline;
    let estimated = last.estimated_accuracy.unwrap();
    assert!(
        estimated - realized > 0.2,
        "estimated {estimated:.3}, realized {realized:.3}"
    );
}

#[test]
fn the_calibrated_estimate_tracks_realized_accuracy_of_an_overconfident_model() {
    let start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR;
    // Overconfident: a prediction with score s is right with probability
    // 0.5 + 0.6 (s - 0.5) (0.95 says 0.95, is right 0.77 of the time).
    let right = |score: f64| 0.5 + 0.6 * (score - 0.5);
    // The reference's held-out labelled predictions, drawn as the stream's.
    let mut rng = Rng::new(11);
    let holdout: Vec<(f64, bool)> = (0..5_000)
        .map(|_| {
            let score = 0.55 + 0.4 * rng.normal().abs().min(1.0);
            (score, rng.next_f64() < right(score))
        })
        .collect();
    let calibration = Calibration::fit(&holdout).expect("5,000 labelled predictions");
    let calibrated = stream_calibrated(7, start, |_, score| right(score), Some(calibration));
    let raw = stream(7, start, |_, score| right(score));
    assert!(
        calibrated
            .cbpe_assumption
            .contains("calibrated on the reference")
    );
    assert!(calibrated.windows.len() >= 2);
    for (window, uncalibrated) in calibrated.windows.iter().zip(&raw.windows) {
        let realized = window.performance.as_ref().unwrap().headline;
        let estimated = window.estimated_accuracy.unwrap();
        let naive = uncalibrated.estimated_accuracy.unwrap();
        eprintln!("calibrated {estimated:.4}, uncalibrated {naive:.4}, realized {realized:.4}");
        assert!(
            (realized - estimated).abs() < 0.03,
            "window {}: calibrated estimate {estimated:.3}, realized {realized:.3}",
            window.start_ms
        );
        assert!(
            naive - realized > 0.08,
            "window {}: the uncalibrated estimate {naive:.3} should overstate {realized:.3}",
            window.start_ms
        );
    }
    // Every label came at start + 10 h: the first window's rows (one a
    // second from `start`) waited 10 h minus their offset, 1,799.5 s on average.
    let first = &calibrated.windows[0];
    let labeled = first.performance.as_ref().unwrap().labeled;
    assert_eq!(labeled, 3_600);
    let lag = first.label_lag_ms.unwrap();
    assert!(
        (lag - (10 * HOUR) as f64 + 1_799_500.0).abs() < 1e-6,
        "{lag}"
    );
    assert_eq!(first.label_lag_max_ms, Some(10 * HOUR));
}
