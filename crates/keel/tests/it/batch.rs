//! Beyond one process: `keel predict` answers what `keel serve`'s
//! `/invocations` answers on the same rows (a missing value flagged and
//! scored, a wrong type refused with the same message), its shards
//! concatenate to the unsharded output, and `keel monitor profile --shard`
//! + `keel monitor merge` give the whole's profile and report verdict.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_learn::generate::{Dataset, GenerateOptions, generate};
use keel_table::{Column, Table};
use serde_json::Value;

use crate::serve::risk_model;
use crate::util::{self, Serve};

fn portfolio(rows: usize, seed: u64, shift: f64) -> Table {
    generate(
        Dataset::Portfolio,
        &GenerateOptions {
            rows,
            seed,
            covariate_shift: shift,
            concept_drift: 0.0,
        },
    )
    .unwrap()
}

/// `table`'s rows `range` as CSV text (a header row first).
fn csv_rows(table: &Table, range: std::ops::Range<usize>) -> String {
    let mut text = table.names().join(",");
    text.push('\n');
    for row in range {
        let cells: Vec<String> = table
            .names()
            .iter()
            .map(|name| match table.column(name).unwrap() {
                Column::Numeric(values) if values[row].is_nan() => String::new(),
                Column::Numeric(values) => values[row].to_string(),
                Column::Categorical(values) => values[row].clone().unwrap_or_default(),
            })
            .collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    text
}

/// `table` as Parquet with row groups of `group_rows` rows.
fn write_parquet(path: &Path, table: &Table, group_rows: usize) {
    use parquet::column::writer::ColumnWriter;
    use parquet::data_type::ByteArray;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let fields: String = table
        .names()
        .iter()
        .map(|name| match table.column(name).unwrap() {
            Column::Numeric(_) => format!("optional double {name}; "),
            Column::Categorical(_) => format!("optional binary {name} (UTF8); "),
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
    let n = table.n_rows();
    for start in (0..n).step_by(group_rows) {
        let range = start..(start + group_rows).min(n);
        let mut group = writer.next_row_group().unwrap();
        let mut k = 0;
        while let Some(mut column) = group.next_column().unwrap() {
            let name = &table.names()[k];
            match (column.untyped(), table.column(name).unwrap()) {
                (ColumnWriter::DoubleColumnWriter(typed), Column::Numeric(values)) => {
                    let part = &values[range.clone()];
                    let present: Vec<f64> = part.iter().copied().filter(|v| !v.is_nan()).collect();
                    let levels: Vec<i16> = part.iter().map(|v| i16::from(!v.is_nan())).collect();
                    typed.write_batch(&present, Some(&levels), None).unwrap();
                }
                (ColumnWriter::ByteArrayColumnWriter(typed), Column::Categorical(values)) => {
                    let part = &values[range.clone()];
                    let present: Vec<ByteArray> = part
                        .iter()
                        .flatten()
                        .map(|v| ByteArray::from(v.as_str()))
                        .collect();
                    let levels: Vec<i16> = part.iter().map(|v| i16::from(v.is_some())).collect();
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

/// A Parquet output's columns (numeric ones as f64, NaN for null).
fn read_output(path: &Path) -> Table {
    Table::read_parquet(path, &[]).unwrap()
}

fn numbers(table: &Table, name: &str) -> Vec<f64> {
    match table.column(name) {
        Some(Column::Numeric(values)) => values.clone(),
        other => panic!("column {name}: {other:?}"),
    }
}

/// `/invocations` on a CSV body: predictions and the probability rows.
fn invocations(address: &str, body: &str) -> util::Answer {
    util::request(
        "POST",
        &format!("http://{address}/invocations"),
        &[("content-type", "text/csv")],
        Some(body),
    )
    .expect("keel serve answers")
}

fn keel_predict(model: &Path, inputs: &[&Path], output: &Path, extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["predict".into(), model.display().to_string()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["--output".into(), output.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    util::ok(Path::new("."), &args)
}

#[test]
fn keel_predict_answers_what_invocations_answers() {
    let dir = tempfile::tempdir().unwrap();
    let model = risk_model(dir.path());
    let table = portfolio(900, 21, 0.0);
    // Three CSV files of 300 rows; the second has a missing value in row 5.
    let mut files: Vec<PathBuf> = Vec::new();
    let mut bodies = Vec::new();
    for k in 0..3 {
        let mut text = csv_rows(&table, k * 300..(k + 1) * 300);
        if k == 1 {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            let header: Vec<&str> = lines[0].split(',').collect();
            let at = header.iter().position(|n| *n == "income").unwrap();
            let mut cells: Vec<String> = lines[6].split(',').map(str::to_string).collect();
            cells[at] = String::new();
            lines[6] = cells.join(",");
            text = lines.join("\n") + "\n";
        }
        let path = dir.path().join(format!("part-{k}.csv"));
        std::fs::write(&path, &text).unwrap();
        files.push(path);
        bodies.push(text);
    }
    let serve = Serve::start(&model, &["--no-log"]);
    let mut served_predictions: Vec<f64> = Vec::new();
    let mut served_probabilities: Vec<Vec<f64>> = Vec::new();
    let mut classes: Vec<String> = Vec::new();
    for body in &bodies {
        let answer = invocations(&serve.address, body);
        assert_eq!(answer.status, 200, "{}", answer.body);
        let reply: Value = serde_json::from_str(&answer.body).unwrap();
        served_predictions.extend(
            reply["predictions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap()),
        );
        served_probabilities.extend(
            reply["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| {
                    row.as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p.as_f64().unwrap())
                        .collect::<Vec<f64>>()
                }),
        );
        classes = reply["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.to_string().trim_matches('"').to_string())
            .collect();
    }
    assert_eq!(served_predictions.len(), 900);

    // The same rows through keel predict: the same numbers, bit for bit
    // (the JSON answer prints every f64 exactly).
    let out = dir.path().join("all.parquet");
    let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    keel_predict(
        &model,
        &inputs,
        &out,
        &["--include-inputs", "--batch-rows", "128"],
    );
    let scored = read_output(&out);
    assert_eq!(scored.n_rows(), 900);
    assert_eq!(numbers(&scored, "predictions"), served_predictions);
    for (c, class) in classes.iter().enumerate() {
        let column = numbers(&scored, &format!("probabilities.{class}"));
        let served: Vec<f64> = served_probabilities.iter().map(|row| row[c]).collect();
        assert_eq!(column, served, "class {class}");
    }
    // The missing value is missing in the written inputs, and was scored.
    assert!(numbers(&scored, "income")[305].is_nan());

    // Shards (N = 3; auto/N reads JOB_COMPLETION_INDEX) concatenate to the whole.
    let mut concatenated: Vec<f64> = Vec::new();
    for index in 0..3 {
        let part = dir.path().join(format!("shard-{index}.parquet"));
        if index == 1 {
            let mut command = util::command(Path::new("."));
            let output = command
                .env("JOB_COMPLETION_INDEX", "1")
                .args(["predict", model.to_str().unwrap()])
                .args(files.iter().map(|p| p.to_str().unwrap()))
                .args(["--output", part.to_str().unwrap(), "--shard", "auto/3"])
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", util::text(&output));
        } else {
            let shard = format!("{index}/3");
            keel_predict(&model, &inputs, &part, &["--shard", &shard]);
        }
        concatenated.extend(numbers(&read_output(&part), "probabilities.1"));
    }
    assert_eq!(concatenated, numbers(&scored, "probabilities.1"));

    // The same rows as Parquet (row groups of 250: shards cut inside the
    // file) give the same predictions.
    let parquet = dir.path().join("rows.parquet");
    write_parquet(&parquet, &rows_as_served(&files), 250);
    let mut from_parquet: Vec<f64> = Vec::new();
    for index in 0..2 {
        let part = dir.path().join(format!("pq-{index}.parquet"));
        keel_predict(
            &model,
            &[&parquet],
            &part,
            &["--shard", &format!("{index}/2")],
        );
        from_parquet.extend(numbers(&read_output(&part), "probabilities.1"));
    }
    assert_eq!(from_parquet, numbers(&scored, "probabilities.1"));

    // A wrong type: /invocations refuses it with 400, keel predict fails
    // with the same message.
    let mut lines: Vec<String> = bodies[0].lines().map(str::to_string).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let at = header.iter().position(|n| *n == "credit_score").unwrap();
    let mut cells: Vec<String> = lines[3].split(',').map(str::to_string).collect();
    cells[at] = "excellent".into();
    lines[3] = cells.join(",");
    let bad_body = lines.join("\n") + "\n";
    let answer = invocations(&serve.address, &bad_body);
    assert_eq!(answer.status, 400, "{}", answer.body);
    let reply: Value = serde_json::from_str(&answer.body).unwrap();
    let message = reply["message"].as_str().unwrap().to_string();
    assert!(message.contains("credit_score"), "{message}");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, &bad_body).unwrap();
    let refused = dir.path().join("refused.parquet");
    let output = util::keel(
        Path::new("."),
        &[
            "predict",
            model.to_str().unwrap(),
            bad.to_str().unwrap(),
            "--output",
            refused.to_str().unwrap(),
        ],
    );
    assert_eq!(util::code(&output), 1, "{}", util::text(&output));
    assert!(
        util::text(&output).contains(&message),
        "{message}\n{}",
        util::text(&output)
    );
    assert!(!refused.exists(), "no output after a refused batch");
    serve.stop();
}

/// The CSV files' rows read back as one table (the missing value included).
fn rows_as_served(files: &[PathBuf]) -> Table {
    let mut text = String::new();
    for (k, file) in files.iter().enumerate() {
        let body = std::fs::read_to_string(file).unwrap();
        let skip = if k == 0 { 0 } else { 1 };
        for line in body.lines().skip(skip) {
            text.push_str(line);
            text.push('\n');
        }
    }
    Table::from_csv_reader(
        text.as_bytes(),
        &["home_ownership".into(), "purpose".into()],
    )
    .unwrap()
}

#[test]
fn sharded_profiles_merge_into_the_whole_and_report_the_same_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let reference = portfolio(6000, 31, 0.0);
    // Four CSV files, and the same rows as one file.
    let mut files = Vec::new();
    for k in 0..4 {
        let path = dir.path().join(format!("ref-{k}.csv"));
        std::fs::write(&path, csv_rows(&reference, k * 1500..(k + 1) * 1500)).unwrap();
        files.push(path.display().to_string());
    }
    let whole_csv = dir.path().join("whole.csv");
    std::fs::write(&whole_csv, csv_rows(&reference, 0..6000)).unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let here = Path::new(".");
    util::ok(
        here,
        &[
            "monitor",
            "profile",
            &whole_csv.display().to_string(),
            "--output",
            &path("whole.json"),
        ],
    );
    let mut shards = Vec::new();
    for index in 0..3 {
        let output = path(&format!("shard-{index}.json"));
        let mut args = vec!["monitor", "profile"];
        args.extend(files.iter().map(String::as_str));
        let shard = format!("{index}/3");
        args.extend(["--shard", &shard, "--output", &output]);
        util::ok(here, &args);
        shards.push(output);
    }
    let mut args = vec!["monitor", "merge"];
    args.extend(shards.iter().map(String::as_str));
    let merged = path("merged.json");
    args.extend(["--output", &merged]);
    util::ok(here, &args);
    let read = |p: &str| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let (whole, merged_json) = (read(&path("whole.json")), read(&merged));
    assert_eq!(whole["rows"], merged_json["rows"]);
    for (a, b) in whole["columns"]
        .as_array()
        .unwrap()
        .iter()
        .zip(merged_json["columns"].as_array().unwrap())
    {
        for key in [
            "name",
            "count",
            "nulls",
            "types",
            "histogram",
            "counts",
            "distinct",
            "min",
            "max",
        ] {
            assert_eq!(a[key], b[key], "{key} of {}", a["name"]);
        }
    }
    // Leaving out a shard is refused.
    let output = util::keel(
        here,
        &[
            "monitor",
            "merge",
            &shards[0],
            &shards[2],
            "--output",
            &path("partial.json"),
        ],
    );
    assert_eq!(util::code(&output), 1, "{}", util::text(&output));

    // The same verdicts against the whole and the merge.
    for (name, shift, drifted) in [("same.csv", 0.0, false), ("drifted.csv", 1.0, true)] {
        let current = portfolio(3000, 77, shift);
        std::fs::write(dir.path().join(name), csv_rows(&current, 0..3000)).unwrap();
        let mut verdicts = Vec::new();
        for reference in [path("whole.json"), merged.clone()] {
            let output = util::keel(
                here,
                &[
                    "monitor",
                    "report",
                    "--reference",
                    &reference,
                    "--current",
                    &path(name),
                    "--format",
                    "json",
                ],
            );
            let report: Value = serde_json::from_str(&util::lossy(&output.stdout)).unwrap();
            verdicts.push((util::code(&output), report["dataset"]["drifted"].clone()));
        }
        assert_eq!(verdicts[0], verdicts[1], "{name}");
        assert_eq!(verdicts[0].1, Value::Bool(drifted), "{name}");
    }
}

#[test]
fn keel_predict_reads_s3_objects_like_local_files() {
    let Some(endpoint) = util::s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = risk_model(dir.path());
    let table = portfolio(400, 41, 0.0);
    let bucket = format!("keel-predict-{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut local = Vec::new();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let created = client
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());
        for k in 0..2 {
            let text = csv_rows(&table, k * 200..(k + 1) * 200);
            let path = dir.path().join(format!("part-{k}.csv"));
            std::fs::write(&path, &text).unwrap();
            local.push(path);
            let put = client
                .put(format!("{endpoint}/{bucket}/in/part-{k}.csv"))
                .body(text)
                .send()
                .await
                .unwrap();
            assert!(put.status().is_success(), "{}", put.status());
        }
    });
    let from_disk = dir.path().join("disk.parquet");
    let inputs: Vec<&Path> = local.iter().map(PathBuf::as_path).collect();
    keel_predict(&model, &inputs, &from_disk, &[]);
    let from_s3 = dir.path().join("s3.parquet");
    let objects = [
        format!("s3://{bucket}/in/part-1.csv"),
        format!("s3://{bucket}/in/part-0.csv"),
    ];
    util::ok(
        Path::new("."),
        &[
            "predict",
            model.to_str().unwrap(),
            &objects[0],
            &objects[1],
            "--output",
            from_s3.to_str().unwrap(),
        ],
    );
    let (a, b) = (read_output(&from_disk), read_output(&from_s3));
    assert_eq!(a.n_rows(), 400);
    assert_eq!(
        numbers(&a, "probabilities.1"),
        numbers(&b, "probabilities.1")
    );
}
