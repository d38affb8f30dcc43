//! A served model's prediction and feedback logs (Parquet, as `keel serve`
//! writes them) cut into windows: drift per window, live accuracy from
//! late labels, the label-free estimate, and a change located in time.

use std::path::Path;
use std::sync::Arc;

use keel_learn::model::{Algorithm, Signature, TargetProfile, Task};
use keel_learn::rng::Rng;
use keel_monitor::profile::{ColumnKind, ColumnProfile, Profile};
use keel_monitor::window::{LogOptions, windowed_report};
use keel_monitor::{DriftConfig, FindingKind};
use parquet::basic::{Repetition, Type as Physical};
use parquet::data_type::ByteArray;
use parquet::schema::types::Type;

enum Col {
    Num(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Long(Vec<i64>),
}

fn write(path: &Path, columns: Vec<(&str, Col)>) {
    use parquet::column::writer::ColumnWriter;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let fields = columns
        .iter()
        .map(|(name, col)| {
            let (physical, repetition) = match col {
                Col::Num(_) => (Physical::DOUBLE, Repetition::OPTIONAL),
                Col::Text(_) => (Physical::BYTE_ARRAY, Repetition::OPTIONAL),
                Col::Long(_) => (Physical::INT64, Repetition::REQUIRED),
            };
            Arc::new(
                Type::primitive_type_builder(name, physical)
                    .with_repetition(repetition)
                    .build()
                    .unwrap(),
            )
        })
        .collect();
    let schema = Arc::new(
        Type::group_type_builder("schema")
            .with_fields(fields)
            .build()
            .unwrap(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))
            .unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut index = 0;
    while let Some(mut column) = group.next_column().unwrap() {
        match (column.untyped(), &columns[index].1) {
            (ColumnWriter::DoubleColumnWriter(w), Col::Num(v)) => {
                let values: Vec<f64> = v.iter().flatten().copied().collect();
                let levels: Vec<i16> = v.iter().map(|x| i16::from(x.is_some())).collect();
                w.write_batch(&values, Some(&levels), None).unwrap();
            }
            (ColumnWriter::ByteArrayColumnWriter(w), Col::Text(v)) => {
                let values: Vec<ByteArray> = v
                    .iter()
                    .flatten()
                    .map(|s| ByteArray::from(s.as_str()))
                    .collect();
                let levels: Vec<i16> = v.iter().map(|x| i16::from(x.is_some())).collect();
                w.write_batch(&values, Some(&levels), None).unwrap();
            }
            (ColumnWriter::Int64ColumnWriter(w), Col::Long(v)) => {
                w.write_batch(v, None, None).unwrap();
            }
            _ => unreachable!(),
        }
        column.close().unwrap();
        index += 1;
    }
    group.close().unwrap();
    writer.close().unwrap();
}

const HOUR: i64 = 3_600_000;

#[test]
fn windows_report_drift_live_accuracy_and_a_change_point() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(logs.join("risk/predictions")).unwrap();
    std::fs::create_dir_all(logs.join("risk/feedback")).unwrap();
    let mut rng = Rng::new(11);

    // Training profile: x ~ N(0, 1), city in {a, b}, the model's outputs.
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
    let signature = Signature {
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
    };

    // Three hours of traffic; in the third, x shifts by +1 and the model errs more.
    let start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR;
    for hour in 0..3i64 {
        let n = 2000;
        let shift = if hour == 2 { 1.0 } else { 0.0 };
        let error_rate = if hour == 2 { 0.45 } else { 0.1 };
        let ids: Vec<Option<String>> = (0..n).map(|i| Some(format!("req-{hour}-{i}"))).collect();
        let xs: Vec<Option<f64>> = (0..n).map(|_| Some(rng.normal() + shift)).collect();
        let labels: Vec<Option<String>> = xs
            .iter()
            .map(|v| Some(["no", "yes"][usize::from(v.unwrap() > 0.0)].to_string()))
            .collect();
        let scores: Vec<Option<f64>> = xs
            .iter()
            .map(|v| Some(0.5 + 0.4 * v.unwrap().abs().min(1.0)))
            .collect();
        let ts: Vec<i64> = (0..n)
            .map(|i| start + hour * HOUR + i as i64 * 1000)
            .collect();
        write(
            &logs.join(format!("risk/predictions/part-{}-1-{hour}.parquet", ts[0])),
            vec![
                ("request_id", Col::Text(ids.clone())),
                ("row", Col::Long(vec![0; n])),
                ("ts_ms", Col::Long(ts.clone())),
                ("input.x", Col::Num(xs)),
                (
                    "input.city",
                    Col::Text(
                        (0..n)
                            .map(|i| Some(["a", "b"][i % 2].to_string()))
                            .collect(),
                    ),
                ),
                ("output.label", Col::Text(labels.clone())),
                ("output.score", Col::Num(scores)),
            ],
        );
        // Labels arrive later, in a separate file: wrong for `error_rate` of rows.
        let truth: Vec<Option<String>> = labels
            .iter()
            .map(|l| {
                let l = l.clone().unwrap();
                let flip = rng.next_f64() < error_rate;
                Some(if flip {
                    if l == "yes" {
                        "no".into()
                    } else {
                        "yes".into()
                    }
                } else {
                    l
                })
            })
            .collect();
        write(
            &logs.join(format!(
                "risk/feedback/part-{}-1-{hour}.parquet",
                ts[0] + 5 * HOUR
            )),
            vec![
                ("request_id", Col::Text(ids)),
                ("row", Col::Long(vec![0; n])),
                ("ts_ms", Col::Long(vec![ts[0] + 5 * HOUR; n])),
                ("label", Col::Text(truth)),
            ],
        );
    }
    let options = LogOptions {
        log_dir: logs.clone(),
        model: "risk".into(),
        window_ms: HOUR,
        config: DriftConfig::default(),
        since_ms: None,
    };
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
