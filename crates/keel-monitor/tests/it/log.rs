//! A served model's prediction and feedback logs (Parquet, as `keel serve`
//! writes them) cut into windows: drift per window, live accuracy from
//! late labels, the label-free estimate, and a change located in time.

use std::path::Path;
use std::sync::Arc;

use keel_learn::model::{Algorithm, Signature, TargetProfile, Task};
use keel_learn::rng::Rng;
use keel_monitor::profile::{ColumnKind, ColumnProfile, Profile};
use keel_monitor::service::{
    Evaluation, MAX_SUMMARY_BYTES, Reference, WatchOptions, WatchState, Watcher,
};
use keel_monitor::window::{LogOptions, windowed_report};
use keel_monitor::{DriftConfig, FindingKind};
use keel_predlog::{
    Feedback, Input, InputKind, Inputs, LogSettings, ModelSchema, Outputs, Prediction,
    PredictionLog,
};

/// One logged request: id, arrival, x, city, predicted label, its score.
pub(crate) struct Row {
    pub id: String,
    pub ts: i64,
    pub x: f64,
    pub city: &'static str,
    pub label: &'static str,
    pub score: f64,
}

/// Writes `rows` and `feedback` (id, label, arrival) through keel-predlog's
/// writer, as `keel serve` does.
pub(crate) fn write_log(logs: &Path, rows: &[Row], feedback: &[(String, String, i64)]) {
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
            inputs: vec![
                Input {
                    name: "x".into(),
                    kind: InputKind::Number,
                },
                Input {
                    name: "city".into(),
                    kind: InputKind::Text,
                },
            ],
            classes: Some(vec!["no".into(), "yes".into()]),
        });
        for row in rows {
            let x = [row.x];
            let city = [Some(row.city.to_string())];
            let labels = [row.label.to_string()];
            let probabilities = if row.label == "yes" {
                [1.0 - row.score, row.score]
            } else {
                [row.score, 1.0 - row.score]
            };
            log.log(
                &model,
                &Prediction {
                    request_id: &row.id,
                    ts_ms: row.ts,
                    role: "primary",
                    latency_us: 100,
                    rows: 1,
                    inputs: &[Inputs::Numbers(&x), Inputs::Texts(&city)],
                    outputs: Outputs::Classes {
                        labels: &labels,
                        probabilities: &probabilities,
                    },
                    flags: &[],
                },
            )
            .await
            .unwrap();
        }
        for (id, label, ts) in feedback {
            log.feedback(
                "risk",
                *ts,
                &[Feedback {
                    request_id: id.clone(),
                    row: 0,
                    label: Some(label.clone()),
                    value: None,
                }],
            )
            .await
            .unwrap();
        }
        log.shutdown();
    });
}

pub(crate) const HOUR: i64 = 3_600_000;

/// Hour windows over all of the log at `logs`, model `risk`.
pub(crate) fn hourly(logs: &Path) -> LogOptions {
    LogOptions {
        log_dir: logs.display().to_string(),
        model: "risk".into(),
        window_ms: HOUR,
        config: DriftConfig::default(),
        since_ms: None,
        until_ms: None,
    }
}

/// The signature of the logged model: a yes/no classifier of `default`.
pub(crate) fn signature() -> Signature {
    Signature {
        format: "keel-learn/1".into(),
        algorithm: Algorithm::Logistic,
        task: Task::Classification,
        target: "default".into(),
        classes: vec!["no".into(), "yes".into()],
        label_type: None,
        inputs: vec![],
        training: TargetProfile {
            rows: 20_000,
            rows_without_target: 0,
            class_frequencies: None,
            value_summary: None,
        },
    }
}

/// Training profile: x ~ N(0, 1), city in {a, b}, the model's outputs.
pub(crate) fn training_reference(rng: &mut Rng) -> Profile {
    let mut x = ColumnProfile::new("x", ColumnKind::Numeric, None);
    let xs: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
    x.push_numbers(&xs);
    x.finish();
    let mut city = ColumnProfile::new("city", ColumnKind::Categorical, None);
    (0..20_000).for_each(|i| city.push_category(["a", "b"][i % 2]));
    let mut label = ColumnProfile::new("output.label", ColumnKind::Categorical, None);
    (0..20_000).for_each(|i| label.push_category(["no", "yes"][usize::from(xs[i] > 0.0)]));
    let mut score = ColumnProfile::new("output.score", ColumnKind::Numeric, None);
    score.push_numbers(
        &xs.iter()
            .map(|v| 0.5 + 0.4 * v.abs().min(1.0))
            .collect::<Vec<_>>(),
    );
    score.finish();
    let mut target = ColumnProfile::new("default", ColumnKind::Categorical, None);
    (0..20_000).for_each(|i| target.push_category(["no", "yes"][i % 2]));
    let mut reference = Profile::empty(vec![x, city, label, score, target]);
    reference.rows = 20_000;
    reference
}

#[test]
fn windows_report_drift_live_accuracy_and_a_change_point() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut rng = Rng::new(11);

    let reference = training_reference(&mut rng);
    let signature = signature();

    // Three hours of traffic; in the third, x shifts by +1 and the model errs more.
    let start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR;
    let mut rows = Vec::new();
    let mut feedback = Vec::new();
    for hour in 0..3i64 {
        let n = 2000;
        let shift = if hour == 2 { 1.0 } else { 0.0 };
        let error_rate = if hour == 2 { 0.45 } else { 0.1 };
        let xs: Vec<f64> = (0..n).map(|_| rng.normal() + shift).collect();
        for (i, x) in xs.into_iter().enumerate() {
            let label = ["no", "yes"][usize::from(x > 0.0)];
            rows.push(Row {
                id: format!("req-{hour}-{i}"),
                ts: start + hour * HOUR + i as i64 * 1000,
                x,
                city: ["a", "b"][i % 2],
                label,
                score: 0.5 + 0.4 * x.abs().min(1.0),
            });
        }
        // Labels arrive later, wrong for `error_rate` of rows.
        for row in &rows[rows.len() - n..] {
            let flip = rng.next_f64() < error_rate;
            let truth = match (flip, row.label) {
                (false, l) => l,
                (true, "yes") => "no",
                (true, _) => "yes",
            };
            feedback.push((
                row.id.clone(),
                truth.to_string(),
                start + hour * HOUR + 5 * HOUR,
            ));
        }
    }
    write_log(&logs, &rows, &feedback);
    let options = hourly(&logs);
    let (latest, report) = windowed_report(&options, &reference, Some(&signature), None).unwrap();
    assert_eq!(report.windows.len(), 3);
    assert!(!report.windows[0].drifted, "{:?}", report.windows[0]);
    assert!(!report.windows[1].drifted);
    assert!(report.windows[2].drifted);
    assert!(
        report.windows[2].drifted_columns.contains(&"x".to_string()),
        "{:?}",
        report.windows[2].drifted_columns
    );
    assert!(latest.dataset.drifted);
    let accuracy: Vec<f64> = report
        .windows
        .iter()
        .map(|w| w.performance.as_ref().unwrap().headline)
        .collect();
    assert!(
        (accuracy[0] - 0.9).abs() < 0.03 && (accuracy[2] - 0.55).abs() < 0.04,
        "{accuracy:?}"
    );
    assert!(
        report
            .windows
            .iter()
            .all(|w| w.estimated_accuracy.is_some())
    );
    let change = report
        .change_points
        .iter()
        .find(|c| c.stream == "error")
        .expect("error change point");
    assert!(
        change.detected_ms >= start + 2 * HOUR && change.detected_ms < start + 2 * HOUR + 600_000,
        "{change:?}"
    );
    // Rows come 1 s apart for 2000 s of each hour: the start estimate lies
    // within the last 200 rows before the change.
    assert!(change.started_ms >= start + HOUR + 1_800_000, "{change:?}");
    // The target is not an input; no input is missing from the log.
    assert!(
        !latest
            .quality
            .iter()
            .any(|f| f.kind == FindingKind::MissingColumn),
        "{:?}",
        latest.quality
    );

    // A watcher that restarts continues from the state its last verdict
    // recorded: the alerts still active do not fire again, the cool-down
    // of the on_drift action holds.
    let watch = WatchOptions {
        log_dir: logs.display().to_string(),
        model: "risk".into(),
        window: std::time::Duration::from_millis(HOUR as u64),
        history: 3,
        interval: std::time::Duration::from_secs(60),
        drift: DriftConfig::default(),
        sinks: vec![],
        action_cooldown: Some(std::time::Duration::from_secs(6 * 3600)),
        confirm: 1,
        once: true,
        quiet: true,
    };
    let watched = Reference {
        profile: reference.clone(),
        signature: Some(signature.clone()),
        evaluation: None,
    };
    let now = start + 3 * HOUR;
    let mut first = Watcher::new(watch.clone());
    let before = first.evaluate(now, &watched).unwrap();
    assert!(before.act, "drift and no earlier action: the action is due");
    assert!(
        before
            .events
            .iter()
            .any(|e| e.status == "firing" && e.key == "drift:x"),
        "{:?}",
        before.events
    );
    let recorded = before.verdict().summary.to_string();
    let state = WatchState::from_summary(&recorded).expect("the verdict records the state");
    assert_eq!(state, first.state());
    assert_eq!(state.last_action_ms, Some(now));
    let mut restarted = Watcher::new(watch.clone());
    restarted.restore(state);
    let after = restarted.evaluate(now + 60_000, &watched).unwrap();
    assert!(after.events.is_empty(), "{:?}", after.events);
    assert!(!after.act, "the cool-down holds across the restart");
    // Without the state, a new watcher fires again and acts again.
    let forgetful = Watcher::new(watch)
        .evaluate(now + 60_000, &watched)
        .unwrap();
    assert!(forgetful.act && !forgetful.events.is_empty());

    // The verdict the watcher records carries what the monitoring page
    // draws: each feature's reference and current shares, the findings,
    // and live accuracy beside the label-free estimate per window.
    let evaluation = Evaluation {
        report: latest.clone(),
        windows: report.clone(),
        events: vec![],
        since_ms: start,
        act: false,
        state: WatchState::default(),
    };
    let verdict = evaluation.verdict();
    assert!(verdict.drifted);
    let summary = &verdict.summary;
    let features = summary["features"].as_array().unwrap();
    assert_eq!(features[0]["column"], "x", "drifted first: {features:?}");
    assert_eq!(features[0]["drifted"], true);
    let bins = features[0]["bins"].as_array().unwrap();
    assert!(bins.len() >= 5, "{bins:?}");
    let share = |k: usize| -> f64 { bins.iter().map(|b| b[k].as_f64().unwrap()).sum() };
    assert!((share(1) - 1.0).abs() < 0.01 && (share(2) - 1.0).abs() < 0.01);
    let windows = summary["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 3);
    assert_eq!(windows[2]["metric"], "accuracy");
    assert!((windows[2]["live"].as_f64().unwrap() - accuracy[2]).abs() < 1e-3);
    assert!(windows[2]["estimated_accuracy"].as_f64().is_some());
    assert_eq!(
        summary["quality"].as_array().unwrap().len(),
        latest.quality.len()
    );
    assert!(summary.to_string().len() <= MAX_SUMMARY_BYTES);
    // A wide table still fits the store's limit: the lowest-ranked
    // features lose their bins first, the top ones keep them.
    let mut wide = latest.clone();
    let template = wide.columns[0].clone();
    wide.columns = (0..200)
        .map(|i| {
            let mut c = template.clone();
            c.column = format!("feature_{i:03}_{}", "n".repeat(40));
            c
        })
        .collect();
    wide.dataset.ranking = wide.columns.iter().map(|c| c.column.clone()).collect();
    let wide = Evaluation {
        report: wide,
        ..evaluation
    }
    .verdict();
    assert!(wide.summary.to_string().len() <= MAX_SUMMARY_BYTES);
    let features = wide.summary["features"].as_array().unwrap();
    assert_eq!(features.len(), 64);
    assert!(!features[0]["bins"].as_array().unwrap().is_empty());
    assert!(features[63]["bins"].as_array().unwrap().is_empty());

    // An empty log is reported as empty, not as an error.
    let empty = LogOptions {
        model: "nobody".into(),
        ..options
    };
    let (latest, report) = windowed_report(&empty, &reference, Some(&signature), None).unwrap();
    assert!(report.windows.is_empty());
    assert!(
        latest
            .quality
            .iter()
            .any(|f| f.kind == FindingKind::EmptyData)
    );
}

#[test]
fn a_drift_alert_holds_when_a_calendar_window_has_just_begun() {
    // One request a second; x shifts by +1 half an hour before the hour
    // and stays shifted. Five seconds into the next hour, a calendar window
    // would hold five rows (too few to confirm drift) and resolve the
    // alert, to fire it again minutes later; the watcher's windows end at
    // its evaluation time, so the alert holds and nothing is sent.
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut rng = Rng::new(12);
    let reference = training_reference(&mut rng);
    let start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR;
    let rows: Vec<Row> = (0..3_605i64)
        .map(|i| {
            let x = rng.normal() + if i >= 1_800 { 1.0 } else { 0.0 };
            Row {
                id: format!("req-{i}"),
                ts: start + i * 1000,
                x,
                city: ["a", "b"][i as usize % 2],
                label: ["no", "yes"][usize::from(x > 0.0)],
                score: 0.5 + 0.4 * x.abs().min(1.0),
            }
        })
        .collect();
    // The log as it stood a minute before the hour, and five seconds after.
    let earlier = dir.path().join("earlier");
    write_log(&earlier, &rows[..3_540], &[]);
    write_log(&logs, &rows, &[]);
    let watched = Reference {
        profile: reference,
        signature: Some(signature()),
        evaluation: None,
    };
    let mut watcher = Watcher::new(WatchOptions {
        log_dir: earlier.display().to_string(),
        model: "risk".into(),
        window: std::time::Duration::from_millis(HOUR as u64),
        history: 2,
        interval: std::time::Duration::from_secs(60),
        drift: DriftConfig::default(),
        sinks: vec![],
        action_cooldown: None,
        confirm: 1,
        once: true,
        quiet: true,
    });
    let before = watcher.evaluate(start + HOUR - 60_000, &watched).unwrap();
    assert!(before.report.dataset.drifted);
    assert!(
        before
            .events
            .iter()
            .any(|e| e.status == "firing" && e.key == "drift:dataset"),
        "{:?}",
        before.events
    );
    let now = start + HOUR + 5_000;
    watcher.options.log_dir = logs.display().to_string();
    let after = watcher.evaluate(now, &watched).unwrap();
    assert!(
        after.events.is_empty(),
        "the alert flapped: {:?}",
        after.events
    );
    assert!(after.report.dataset.drifted);
    let newest = after.windows.windows.last().unwrap();
    assert_eq!((newest.start_ms, newest.end_ms), (now - HOUR, now));
    assert_eq!(newest.rows, 3_600, "a whole window of rows");
    // What a calendar window would have decided on: the hour's five rows.
    let calendar = LogOptions {
        since_ms: Some(start),
        ..hourly(&logs)
    };
    let (latest, windows) =
        windowed_report(&calendar, &watched.profile, Some(&signature()), None).unwrap();
    assert_eq!(windows.windows.last().unwrap().rows, 5);
    assert!(!latest.dataset.drifted, "five rows do not show the drift");
}
