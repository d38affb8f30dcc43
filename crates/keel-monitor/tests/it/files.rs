//! Files in, reports out: CSV and Parquet give the same profile, bad input
//! gives errors that name the columns, empty and all-NaN data do not crash.

use std::path::Path;
use std::sync::Arc;

use keel_monitor::profile::Profile;
use keel_monitor::{DriftConfig, FindingKind, MonitorError, Status, compare, profile_file};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn csv_rows(n: usize, shift: f64, nan_every: usize) -> String {
    let mut text = String::from("x,city,flag\n");
    for i in 0..n {
        let x = (i % 97) as f64 / 10.0 + shift;
        let city = ["rome", "oslo", "lima"][i % 3];
        if nan_every > 0 && i % nan_every == 0 {
            text.push_str(&format!(",{city},{}\n", i % 2));
        } else {
            text.push_str(&format!("{x},{city},{}\n", i % 2));
        }
    }
    text
}

fn write_parquet(path: &Path, xs: &[Option<f64>], cities: &[&str], flags: &[i64]) {
    use parquet::column::writer::ColumnWriter;
    use parquet::data_type::ByteArray;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = parquet::schema::parser::parse_message_type(
        "message t { optional double x; optional binary city (UTF8); required int64 flag; }",
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(
        file,
        Arc::new(schema),
        Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    // Two row groups, to check that the reader goes through all of them.
    let half = xs.len() / 2;
    for range in [0..half, half..xs.len()] {
        let mut group = writer.next_row_group().unwrap();
        while let Some(mut column) = group.next_column().unwrap() {
            match column.untyped() {
                ColumnWriter::DoubleColumnWriter(typed) => {
                    let values: Vec<f64> = xs[range.clone()].iter().flatten().copied().collect();
                    let levels: Vec<i16> = xs[range.clone()]
                        .iter()
                        .map(|x| i16::from(x.is_some()))
                        .collect();
                    typed.write_batch(&values, Some(&levels), None).unwrap();
                }
                ColumnWriter::ByteArrayColumnWriter(typed) => {
                    let values: Vec<ByteArray> = cities[range.clone()]
                        .iter()
                        .map(|c| ByteArray::from(*c))
                        .collect();
                    let levels = vec![1i16; values.len()];
                    typed.write_batch(&values, Some(&levels), None).unwrap();
                }
                ColumnWriter::Int64ColumnWriter(typed) => {
                    typed
                        .write_batch(&flags[range.clone()], None, None)
                        .unwrap();
                }
                _ => unreachable!(),
            }
            column.close().unwrap();
        }
        group.close().unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn csv_and_parquet_give_the_same_profile() {
    let dir = tempfile::tempdir().unwrap();
    let n = 5000;
    write(&dir.path().join("a.csv"), &csv_rows(n, 0.0, 10));
    let xs: Vec<Option<f64>> = (0..n)
        .map(|i| (i % 10 != 0).then(|| (i % 97) as f64 / 10.0))
        .collect();
    let cities: Vec<&str> = (0..n).map(|i| ["rome", "oslo", "lima"][i % 3]).collect();
    let flags: Vec<i64> = (0..n).map(|i| (i % 2) as i64).collect();
    write_parquet(&dir.path().join("a.parquet"), &xs, &cities, &flags);
    let from_csv = profile_file(&dir.path().join("a.csv"), None).unwrap();
    let from_parquet = profile_file(&dir.path().join("a.parquet"), None).unwrap();
    assert_eq!(from_csv.rows, 5000);
    assert_eq!(from_parquet.rows, 5000);
    for (a, b) in from_csv.columns.iter().zip(&from_parquet.columns) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.kind(), b.kind(), "{}", a.name);
        assert_eq!((a.count, a.nulls), (b.count, b.nulls), "{}", a.name);
        assert_eq!(
            a.numeric().map(|s| &s.histogram),
            b.numeric().map(|s| &s.histogram),
            "{}",
            a.name
        );
        assert_eq!(
            a.categorical().map(|s| &s.counts),
            b.categorical().map(|s| &s.counts),
            "{}",
            a.name
        );
    }
    assert_eq!(from_csv.column("x").unwrap().nulls, 500);
    // The profile survives a JSON round trip through a file.
    let path = dir.path().join("p.json");
    from_parquet.write_json(&path).unwrap();
    assert_eq!(Profile::read_json(&path).unwrap(), from_parquet);
    let report = compare(
        &from_csv,
        &profile_file(&dir.path().join("a.parquet"), Some(&from_csv)).unwrap(),
        &DriftConfig::default(),
    )
    .unwrap();
    assert!(!report.dataset.drifted);
    assert!(report.quality.is_empty(), "{:?}", report.quality);
}

#[test]
fn schema_mismatch_names_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("ref.csv"), &csv_rows(100, 0.0, 0));
    write(
        &dir.path().join("cur.csv"),
        "x,town,flag\nabc,rome,1\ndef,oslo,0\n",
    );
    let reference = profile_file(&dir.path().join("ref.csv"), None).unwrap();
    let current = profile_file(&dir.path().join("cur.csv"), Some(&reference)).unwrap();
    let error = compare(&reference, &current, &DriftConfig::default()).unwrap_err();
    assert!(matches!(error, MonitorError::SchemaMismatch { .. }));
    let text = error.to_string();
    assert!(text.contains("missing columns: city"), "{text}");
    assert!(text.contains("unexpected columns: town"), "{text}");
    assert!(text.contains("x (numeric -> text)"), "{text}");
}

#[test]
fn empty_and_all_missing_data_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("ref.csv"), &csv_rows(2000, 0.0, 0));
    write(&dir.path().join("empty.csv"), "x,city,flag\n");
    let mut all_nan = String::from("x,city,flag\n");
    for i in 0..500 {
        all_nan.push_str(&format!("NaN,{},1\n", ["rome", "oslo"][i % 2]));
    }
    write(&dir.path().join("nan.csv"), &all_nan);
    let reference = profile_file(&dir.path().join("ref.csv"), None).unwrap();
    let empty = profile_file(&dir.path().join("empty.csv"), Some(&reference)).unwrap();
    let report = compare(&reference, &empty, &DriftConfig::default()).unwrap();
    assert_eq!(report.current_rows, 0);
    assert!(!report.dataset.drifted);
    assert!(report.columns.iter().all(|c| c.status == Status::NotTested));
    assert_eq!(report.quality[0].kind, FindingKind::EmptyData);

    let nan = profile_file(&dir.path().join("nan.csv"), Some(&reference)).unwrap();
    let report = compare(&reference, &nan, &DriftConfig::default()).unwrap();
    let x = report.columns.iter().find(|c| c.column == "x").unwrap();
    assert_eq!(x.status, Status::NotTested);
    assert!(x.rule.contains("no finite current values"), "{}", x.rule);
    assert!(
        report
            .quality
            .iter()
            .any(|f| f.kind == FindingKind::AllMissing && f.column.as_deref() == Some("x"))
    );
    // The reference itself all-NaN: profiled and compared without a crash.
    let nan_reference = profile_file(&dir.path().join("nan.csv"), None).unwrap();
    let report = compare(
        &nan_reference,
        &profile_file(&dir.path().join("nan.csv"), Some(&nan_reference)).unwrap(),
        &DriftConfig::default(),
    )
    .unwrap();
    assert!(!report.dataset.drifted);
}

#[test]
fn unknown_categories_and_out_of_range_are_quality_findings() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("ref.csv"), &csv_rows(3000, 0.0, 0));
    let mut current = String::from("x,city,flag\n");
    for i in 0..3000 {
        let city = if i % 5 == 0 {
            "paris"
        } else {
            ["rome", "oslo", "lima"][i % 3]
        };
        let x = if i % 20 == 0 {
            50.0
        } else {
            (i % 97) as f64 / 10.0
        };
        current.push_str(&format!("{x},{city},{}\n", i % 2));
    }
    write(&dir.path().join("cur.csv"), &current);
    let reference = profile_file(&dir.path().join("ref.csv"), None).unwrap();
    let current = profile_file(&dir.path().join("cur.csv"), Some(&reference)).unwrap();
    let report = compare(&reference, &current, &DriftConfig::default()).unwrap();
    let kinds: Vec<(FindingKind, Option<&str>)> = report
        .quality
        .iter()
        .map(|f| (f.kind, f.column.as_deref()))
        .collect();
    assert!(
        kinds.contains(&(FindingKind::UnknownCategories, Some("city"))),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(FindingKind::OutOfRange, Some("x"))),
        "{kinds:?}"
    );
    let city = report.columns.iter().find(|c| c.column == "city").unwrap();
    assert!(city.drifted, "{city:?}");
    // A new category common enough to test is a bin of its own, named.
    assert_eq!(city.top_contributors[0].label, "paris");
}
