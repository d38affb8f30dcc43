//! End-to-end tests of `keel generate`, `keel train` and `keel evaluate`,
//! driving the real binary in a temporary folder.

use std::path::Path;
use std::process::{Command, Output};

fn keel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .current_dir(dir)
        .env("CI", "true")
        .env_remove("RUST_LOG")
        .output()
        .expect("run keel")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let output = keel(dir, args);
    assert!(
        output.status.success(),
        "keel {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn generate_train_and_evaluate_the_credit_risk_story() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    ok(
        root,
        &[
            "generate",
            "portfolio",
            "--rows",
            "3000",
            "--seed",
            "1",
            "--out",
            "train.csv",
        ],
    );
    ok(
        root,
        &[
            "generate",
            "portfolio",
            "--rows",
            "1000",
            "--seed",
            "2",
            "--out",
            "test.csv",
        ],
    );
    let shifted = [
        "generate",
        "portfolio",
        "--rows",
        "1000",
        "--seed",
        "2",
        "--concept-drift",
        "1.5",
        "--out",
        "drifted.csv",
    ];
    ok(root, &shifted);
    let first = std::fs::read(root.join("train.csv")).unwrap();
    ok(
        root,
        &[
            "generate",
            "portfolio",
            "--rows",
            "3000",
            "--seed",
            "1",
            "--out",
            "again.csv",
        ],
    );
    assert_eq!(
        first,
        std::fs::read(root.join("again.csv")).unwrap(),
        "generation is seeded"
    );

    let trained = ok(
        root,
        &[
            "train",
            "--algo",
            "gbdt",
            "--data",
            "train.csv",
            "--target",
            "default",
            "--out",
            "model",
            "--seed",
            "7",
            "--n-iter",
            "40",
        ],
    );
    assert!(trained.contains("Held-out"), "{trained}");
    for file in ["model.json", "model.onnx", "signature.json", "metrics.json"] {
        assert!(root.join("model").join(file).is_file(), "{file} missing");
    }

    ok(
        root,
        &[
            "evaluate",
            "model",
            "test.csv",
            "--target",
            "default",
            "--output",
            "metrics.json",
        ],
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["task"], "classification");
    let auc = metrics["roc_auc"].as_f64().unwrap();
    assert!(auc > 0.7, "AUC {auc}");
    assert_eq!(metrics["confusion_matrix"].as_array().unwrap().len(), 2);

    // Concept drift makes the same model worse on the drifted data.
    let drifted: serde_json::Value =
        serde_json::from_str(&ok(root, &["evaluate", "model", "drifted.csv"])).unwrap();
    assert!(drifted["log_loss"].as_f64().unwrap() > metrics["log_loss"].as_f64().unwrap());
}

#[test]
fn training_errors_name_the_problem_and_fail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    ok(
        root,
        &["generate", "retail", "--rows", "200", "--out", "retail.csv"],
    );
    let output = keel(
        root,
        &[
            "train",
            "--algo",
            "logistic",
            "--data",
            "retail.csv",
            "--target",
            "shoe_size",
            "--out",
            "m",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("shoe_size"), "{stderr}");
    let output = keel(root, &["evaluate", "no-such-model", "retail.csv"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-model"));
}
