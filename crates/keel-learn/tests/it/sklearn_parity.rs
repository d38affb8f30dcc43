//! Accuracy against scikit-learn: on breast_cancer and digits (classification)
//! and diabetes (regression), exported with a fixed split by
//! `tests/python/export_sklearn_datasets.py`, each keel learner's held-out
//! accuracy must be at most 2 points below, and its RMSE at most 5 % above,
//! scikit-learn's counterpart on the same split.
//!
//! Needs the pinned venv (`KEEL_PY_VENV`, made by `tests/python/ensure_venv.sh`);
//! without it the test is skipped, except under `CI=true`, where it fails.

use std::path::Path;
use std::process::Command;

use keel_learn::metrics::Metrics;
use keel_learn::{Algorithm, Model, TrainOptions, evaluate};
use keel_table::Table;

use crate::util::{python_with, repo_root};

fn export_datasets(dir: &Path) -> Option<serde_json::Value> {
    let python = python_with("sklearn")?;
    let status = Command::new(python)
        .arg(repo_root().join("tests/python/export_sklearn_datasets.py"))
        .arg("--out")
        .arg(dir)
        .status()
        .expect("run the export script");
    assert!(
        status.success(),
        "export_sklearn_datasets.py failed: {status}"
    );
    let scores = std::fs::read(dir.join("sklearn_scores.json")).expect("scores written");
    Some(serde_json::from_slice(&scores).expect("scores are JSON"))
}

fn train_and_score(dir: &Path, dataset: &str, algorithm: Algorithm) -> Metrics {
    let train = Table::read_csv(&dir.join(format!("{dataset}_train.csv")), &[]).expect("train csv");
    let mut options = TrainOptions::new(algorithm, "target");
    options.seed = 42;
    let model = Model::train(&train, &options).expect("train");
    let test = model
        .read_table(&dir.join(format!("{dataset}_test.csv")))
        .expect("test csv");
    evaluate(&model, &test).expect("evaluate")
}

#[test]
fn keel_learners_match_scikit_learn_on_its_bundled_datasets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(scores) = export_datasets(dir.path()) else {
        return;
    };
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for dataset in ["breast_cancer", "digits"] {
        for algorithm in [
            Algorithm::Logistic,
            Algorithm::RandomForest,
            Algorithm::Gbdt,
        ] {
            let Metrics::Classification(metrics) = train_and_score(dir.path(), dataset, algorithm)
            else {
                panic!("{dataset} must be classification");
            };
            let sklearn = scores[dataset][algorithm.as_str()]["accuracy"]
                .as_f64()
                .expect("sklearn accuracy");
            report.push(format!(
                "{dataset:14} {:14} keel accuracy {:.4}  sklearn {:.4}",
                algorithm.as_str(),
                metrics.accuracy,
                sklearn
            ));
            if metrics.accuracy < sklearn - 0.02 {
                failures.push(report.last().cloned().unwrap_or_default());
            }
        }
    }
    for algorithm in [
        Algorithm::Linear,
        Algorithm::Ridge,
        Algorithm::RandomForest,
        Algorithm::Gbdt,
    ] {
        let Metrics::Regression(metrics) = train_and_score(dir.path(), "diabetes", algorithm)
        else {
            panic!("diabetes must be regression");
        };
        let sklearn = scores["diabetes"][algorithm.as_str()]["rmse"]
            .as_f64()
            .expect("sklearn rmse");
        report.push(format!(
            "{:14} {:14} keel RMSE {:.3} (R² {:.4})  sklearn RMSE {:.3}",
            "diabetes",
            algorithm.as_str(),
            metrics.rmse,
            metrics.r2,
            sklearn
        ));
        if metrics.rmse > sklearn * 1.05 {
            failures.push(report.last().cloned().unwrap_or_default());
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "worse than scikit-learn:\n{}",
        failures.join("\n")
    );
}
