//! keel-exported ONNX models give the same outputs in onnxruntime as keel's
//! native predictions (to 1e-5), for every learner on both stories' data
//! (categorical inputs, missing values, binary, multiclass, regression).
//!
//! Needs a Python with onnxruntime: `KEEL_ORT_PYTHON`, or the pinned venv's
//! (`KEEL_PY_VENV`, which `tests/run.sh` prepares with onnxruntime 1.32.0).
//! Outside CI the test is skipped when neither has it; with `CI=true` it fails.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use keel_learn::generate::{Dataset, GenerateOptions, generate};
use keel_learn::onnx::encode_inputs;
use keel_learn::{Algorithm, Model, Predictions, Task, TrainOptions};

use crate::util::python_with;

fn write_rows(path: &Path, rows: impl Iterator<Item = Vec<f64>>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create csv"));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:e}")).collect();
        writeln!(out, "{}", cells.join(",")).expect("write csv");
    }
}

#[test]
fn onnx_export_matches_native_predictions_in_onnxruntime() {
    let Some(python) = python_with("onnxruntime") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let options = |seed| GenerateOptions {
        rows: 1500,
        seed,
        covariate_shift: 0.0,
        concept_drift: 0.0,
    };
    let cases = [
        (Dataset::Portfolio, "default", Task::Classification),
        (Dataset::Retail, "size", Task::Classification),
        (Dataset::Portfolio, "loan_amount", Task::Regression),
    ];
    for (dataset, target, task) in cases {
        let train = generate(dataset, &options(1)).expect("generate");
        // Unseen rows, shifted a little so some values fall outside training ranges.
        let test = generate(
            dataset,
            &GenerateOptions {
                covariate_shift: 0.5,
                ..options(2)
            },
        )
        .expect("generate");
        let algorithms: &[Algorithm] = match task {
            Task::Classification => &[
                Algorithm::Logistic,
                Algorithm::RandomForest,
                Algorithm::Gbdt,
            ],
            Task::Regression => &[
                Algorithm::Linear,
                Algorithm::Ridge,
                Algorithm::RandomForest,
                Algorithm::Gbdt,
            ],
        };
        for &algorithm in algorithms {
            let mut train_options = TrainOptions::new(algorithm, target);
            train_options.task = Some(task);
            train_options.forest.n_trees = 20;
            train_options.boost.n_iter = 30;
            let model = Model::train(&train, &train_options).expect("train");
            let folder = dir.path().join(format!("{target}-{}", algorithm.as_str()));
            model.save(&folder).expect("save");
            let inputs = encode_inputs(&model, &test).expect("encode");
            let width = model.preprocessor.features.len();
            write_rows(
                &folder.join("inputs.csv"),
                inputs
                    .chunks(width)
                    .map(|row| row.iter().map(|v| f64::from(*v)).collect()),
            );
            let expected: Vec<Vec<f64>> = match model.predict(&test).expect("predict") {
                Predictions::Classes { probabilities, .. } => probabilities,
                Predictions::Values(values) => values.into_iter().map(|v| vec![v]).collect(),
            };
            write_rows(&folder.join("expected.csv"), expected.into_iter());
        }
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/check_onnx_parity.py");
    let output = Command::new(python)
        .arg(script)
        .arg(dir.path())
        .output()
        .expect("run check_onnx_parity.py");
    let report = String::from_utf8_lossy(&output.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "onnxruntime disagrees with keel:\n{report}"
    );
    assert_eq!(
        report.lines().filter(|l| l.contains("diff")).count(),
        10,
        "{report}"
    );
}
