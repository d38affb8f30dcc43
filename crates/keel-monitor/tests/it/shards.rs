//! Sharded profiles: the merge of the N shard profiles of a file set is the
//! whole's profile (same counts, histograms, categories, distinct-count
//! registers, min/max, joint frame and the categorical column's joint
//! indicators; moments and joint sums equal up to float rounding; no joint
//! model), for a Parquet file of several row
//! groups and a set of CSV files, and reports against the merge give the
//! whole's verdicts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_monitor::profile::Profile;
use keel_monitor::read::{profile_files, profile_shard};
use keel_monitor::{DriftConfig, MonitorError, compare, profile_file};
use keel_table::shard::Shard;
use serde_json::Value;

/// Row-group sizes of the Parquet file and row counts of the CSV files:
/// the first CSV file is shorter than a chunk, the layout samples fill up
/// in the middle of the data, and one column never fills its sample.
const PIECES: [usize; 6] = [9_000, 30_000, 11_000, 25_000, 5_000, 20_384];

struct Row {
    x: Option<f64>,
    y: f64,
    n: i64,
    sparse: Option<f64>,
    city: &'static str,
}

fn rows(count: usize, seed: u64, shift: f64) -> Vec<Row> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64) / ((1u64 << 53) as f64)
    };
    (0..count)
        .map(|i| {
            let x = (next() + next() + next() - 1.5) * 2.0 + shift;
            let y = 0.5 * x + next() - 0.5;
            Row {
                x: (i % 7 != 3).then_some(x),
                y,
                n: (next() * 1000.0) as i64 - 200,
                sparse: (i % 10 == 0).then(|| next() * 50.0),
                city: ["rome", "oslo", "lima", "kyiv", "pune"][(next() * 5.0) as usize % 5],
            }
        })
        .collect()
}

fn csv_text(rows: &[Row], header: bool) -> String {
    let mut text = String::new();
    if header {
        text.push_str("x,y,n,sparse,city\n");
    }
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for row in rows {
        text.push_str(&format!(
            "{},{},{},{},{}\n",
            cell(row.x),
            row.y,
            row.n,
            cell(row.sparse),
            row.city
        ));
    }
    text
}

fn write_parquet(path: &Path, rows: &[Row], groups: &[usize]) {
    use parquet::column::writer::ColumnWriter;
    use parquet::data_type::ByteArray;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = parquet::schema::parser::parse_message_type(
        "message t { optional double x; required double y; required int64 n; \
         optional double sparse; required binary city (UTF8); }",
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(
        file,
        Arc::new(schema),
        Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    let mut start = 0;
    for &size in groups {
        let part = &rows[start..start + size];
        start += size;
        let mut group = writer.next_row_group().unwrap();
        let mut k = 0;
        while let Some(mut column) = group.next_column().unwrap() {
            let optional = |values: Vec<Option<f64>>| {
                let present: Vec<f64> = values.iter().flatten().copied().collect();
                let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
                (present, levels)
            };
            match (k, column.untyped()) {
                (0, ColumnWriter::DoubleColumnWriter(typed)) => {
                    let (values, levels) = optional(part.iter().map(|r| r.x).collect());
                    typed.write_batch(&values, Some(&levels), None).unwrap();
                }
                (1, ColumnWriter::DoubleColumnWriter(typed)) => {
                    let values: Vec<f64> = part.iter().map(|r| r.y).collect();
                    typed.write_batch(&values, None, None).unwrap();
                }
                (2, ColumnWriter::Int64ColumnWriter(typed)) => {
                    let values: Vec<i64> = part.iter().map(|r| r.n).collect();
                    typed.write_batch(&values, None, None).unwrap();
                }
                (3, ColumnWriter::DoubleColumnWriter(typed)) => {
                    let (values, levels) = optional(part.iter().map(|r| r.sparse).collect());
                    typed.write_batch(&values, Some(&levels), None).unwrap();
                }
                (4, ColumnWriter::ByteArrayColumnWriter(typed)) => {
                    let values: Vec<ByteArray> =
                        part.iter().map(|r| ByteArray::from(r.city)).collect();
                    typed.write_batch(&values, None, None).unwrap();
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

/// The CSV file set (one file per piece) and the same rows as one file.
fn write_csv_set(dir: &Path, rows: &[Row]) -> (Vec<PathBuf>, PathBuf) {
    let mut files = Vec::new();
    let mut start = 0;
    for (k, &size) in PIECES.iter().enumerate() {
        let path = dir.join(format!("part-{k:02}.csv"));
        std::fs::write(&path, csv_text(&rows[start..start + size], true)).unwrap();
        start += size;
        files.push(path);
    }
    let whole = dir.join("whole.csv");
    let mut file = std::fs::File::create(&whole).unwrap();
    file.write_all(csv_text(rows, true).as_bytes()).unwrap();
    (files, whole)
}

/// Keys whose numbers are float sums: equal up to rounding, not bit for bit.
const ROUNDED: [&str; 4] = ["mean", "m2", "s", "q"];

/// Walks two profiles' JSON: every key and every value the same, numbers
/// under [`ROUNDED`] keys within 1e-9 (relative).
fn same_json(whole: &Value, merged: &Value, at: &str, rounded: bool) -> Result<(), String> {
    match (whole, merged) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = |o: &serde_json::Map<String, Value>| o.keys().cloned().collect::<Vec<_>>();
            if keys(a) != keys(b) {
                return Err(format!("{at}: keys {:?} vs {:?}", keys(a), keys(b)));
            }
            for (key, value) in a {
                let rounded = ROUNDED.contains(&key.as_str());
                same_json(value, &b[key], &format!("{at}.{key}"), rounded)?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!("{at}: {} vs {} items", a.len(), b.len()));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same_json(x, y, &format!("{at}[{i}]"), rounded)?;
            }
            Ok(())
        }
        (Value::Number(a), Value::Number(b)) if rounded => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            let close = (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
            close
                .then_some(())
                .ok_or_else(|| format!("{at}: {a} vs {b}"))
        }
        _ if whole == merged => Ok(()),
        _ => Err(format!("{at}: {whole} vs {merged}")),
    }
}

/// Merges the `count` shard profiles of `files` (through their JSON files,
/// in reverse order to show the order does not matter).
fn merged(files: &[PathBuf], count: usize, dir: &Path) -> Profile {
    let mut parts = Vec::new();
    for index in (0..count).rev() {
        let shard = profile_shard(files, Shard { index, count }, None).unwrap();
        assert_eq!(
            shard.shard.map(|s| (s.index, s.count)),
            Some((index, count))
        );
        let path = dir.join(format!("shard-{index}-of-{count}.json"));
        shard.write_json(&path).unwrap();
        parts.push(Profile::read_json(&path).unwrap());
    }
    Profile::merge_shards(parts).unwrap()
}

/// The whole's profile as JSON, without the joint model a merge cannot
/// rebuild (it needs the reference's rows).
fn whole_json(whole: &Profile) -> Value {
    assert!(whole.multivariate.is_some(), "the data has a joint model");
    // The categorical column takes part through its indicators, which the
    // shards and the merge must carry too.
    let joint = whole.joint.as_ref().unwrap();
    let cities = (0..joint.dim())
        .filter(|&i| joint.source(i) == "city")
        .count();
    assert_eq!(cities, 5, "{:?}", joint.columns);
    let mut whole = whole.clone();
    whole.multivariate = None;
    serde_json::to_value(&whole).unwrap()
}

fn check_merges(files: &[PathBuf], whole: &Profile, dir: &Path, counts: &[usize]) {
    let expected = whole_json(whole);
    for &count in counts {
        let merged = merged(files, count, dir);
        assert_eq!(merged.rows, whole.rows);
        assert!(merged.shard.is_none() && merged.multivariate.is_none());
        let json = serde_json::to_value(&merged).unwrap();
        if let Err(difference) = same_json(&expected, &json, "profile", false) {
            panic!("{count} shards: {difference}");
        }
    }
}

#[test]
fn merged_parquet_row_group_shards_are_the_whole_profile() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(PIECES.iter().sum(), 7, 0.0);
    let path = dir.path().join("data.parquet");
    write_parquet(&path, &data, &PIECES);
    let whole = profile_file(&path, None).unwrap();
    assert_eq!(whole.rows, PIECES.iter().sum::<usize>() as u64);
    // Six row groups as 1 to 4 shards, and more shards than row groups.
    check_merges(
        std::slice::from_ref(&path),
        &whole,
        dir.path(),
        &[1, 2, 3, 4, 8],
    );

    // Drift verdicts against the merge are the whole's.
    let same = dir.path().join("same.parquet");
    write_parquet(&same, &rows(30_000, 11, 0.0), &[30_000]);
    let drifted = dir.path().join("drifted.parquet");
    write_parquet(&drifted, &rows(30_000, 13, 0.4), &[9_000, 12_000, 9_000]);
    let merged = merged(&[path], 3, dir.path());
    let config = DriftConfig::default();
    let mut verdicts = Vec::new();
    for current in [&same, &drifted] {
        let against_whole = compare(
            &whole,
            &profile_file(current, Some(&whole)).unwrap(),
            &config,
        )
        .unwrap();
        let against_merged = compare(
            &merged,
            &profile_file(current, Some(&merged)).unwrap(),
            &config,
        )
        .unwrap();
        assert_eq!(
            against_whole.dataset.drifted,
            against_merged.dataset.drifted,
            "{}",
            current.display()
        );
        for (a, b) in against_whole.columns.iter().zip(&against_merged.columns) {
            assert_eq!((&a.column, a.drifted), (&b.column, b.drifted));
            assert_eq!(a.n_ref, b.n_ref);
            assert_eq!(a.statistic.is_some(), b.statistic.is_some());
            if let (Some(p), Some(q)) = (a.p_value, b.p_value) {
                assert!((p - q).abs() <= 1e-9 * p.max(q).max(1e-300), "{p} vs {q}");
            }
        }
        verdicts.push(against_whole.dataset.drifted);
    }
    assert_eq!(verdicts, [false, true], "the data shows both verdicts");

    // Current data sharded against a reference profile merges into the
    // profile built against it in one pass (ranges and out-of-range counts too).
    let against = profile_file(&drifted, Some(&whole)).unwrap();
    let parts: Vec<Profile> = (0..2)
        .map(|index| {
            let shard = Shard { index, count: 2 };
            profile_shard(std::slice::from_ref(&drifted), shard, Some(&whole))
        })
        .collect::<Result<_, _>>()
        .unwrap();
    let merged = Profile::merge_shards(parts).unwrap();
    let (a, b) = (
        serde_json::to_value(&against).unwrap(),
        serde_json::to_value(&merged).unwrap(),
    );
    same_json(&a, &b, "current", false).unwrap();
    assert!(a.to_string().contains("\"below\""), "built with ranges");
}

#[test]
fn merged_csv_file_shards_are_the_whole_profile() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(PIECES.iter().sum(), 5, 0.0);
    let (files, concatenated) = write_csv_set(dir.path(), &data);
    let whole = profile_file(&concatenated, None).unwrap();
    // The file set profiled in one pass is the concatenated file's profile.
    assert_eq!(profile_files(&files, None).unwrap(), whole);
    check_merges(&files, &whole, dir.path(), &[1, 2, 3, 4, 9]);
}

#[test]
fn merging_checks_that_every_shard_is_there_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(PIECES.iter().sum(), 3, 0.0);
    let (files, _) = write_csv_set(dir.path(), &data);
    let shard = |index, count| profile_shard(&files, Shard { index, count }, None).unwrap();
    let missing = Profile::merge_shards(vec![shard(0, 3), shard(2, 3)]);
    assert!(
        matches!(missing, Err(MonitorError::Shards(_))),
        "{missing:?}"
    );
    let twice = Profile::merge_shards(vec![shard(0, 2), shard(0, 2), shard(1, 2)]);
    assert!(matches!(twice, Err(MonitorError::Shards(_))), "{twice:?}");
    let mixed = Profile::merge_shards(vec![shard(0, 2), shard(1, 3)]);
    assert!(matches!(mixed, Err(MonitorError::Shards(_))), "{mixed:?}");
    let whole = profile_files(&files, None).unwrap();
    let unsharded = Profile::merge_shards(vec![shard(0, 2), whole]);
    assert!(matches!(unsharded, Err(MonitorError::Shards(_))));

    // A file with another header is not part of the set.
    let other = dir.path().join("part-99.csv");
    std::fs::write(&other, "x,y,other\n1,2,3\n").unwrap();
    let mut with_other = files.clone();
    with_other.push(other);
    let error = profile_shard(&with_other, Shard { index: 0, count: 1 }, None).unwrap_err();
    assert!(error.to_string().contains("header"), "{error}");
}
