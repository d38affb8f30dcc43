//! End-to-end tests of `keel generate`, `keel train` and `keel evaluate`,
//! driving the real binary in a temporary folder.

use std::path::Path;
use std::process::Command;

use crate::util::{keel, ok, python_with, repo_root, text};

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

    let gbdt = [
        "train",
        "--algo",
        "gbdt",
        "--data",
        "train.csv",
        "--target",
        "default",
    ];
    let trained = ok(
        root,
        &[
            &gbdt[..],
            &["--out", "model", "--seed", "7", "--n-iter", "40"],
        ]
        .concat(),
    );
    assert!(trained.contains("Held-out"), "{trained}");
    for file in ["model.json", "model.onnx", "signature.json", "metrics.json"] {
        assert!(root.join("model").join(file).is_file(), "{file} missing");
    }

    // Early stopping keeps fewer rounds than asked for, and says how many.
    let stopped = ok(
        root,
        &[
            &gbdt[..],
            &["--out", "stopped", "--n-iter", "400", "--early-stopping"],
        ]
        .concat(),
    );
    let kept: usize = stopped
        .split("Early stopping kept ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no early-stopping line in {stopped}"));
    assert!((1..400).contains(&kept), "{stopped}");
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("stopped/model.json")).unwrap()).unwrap();
    assert_eq!(
        model["estimator"]["trees"].as_array().map(Vec::len),
        Some(kept),
        "one tree per round for a binary target"
    );

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

#[test]
fn evaluate_is_seeded_and_logs_to_a_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    ok(
        root,
        &[
            "generate",
            "portfolio",
            "--rows",
            "2000",
            "--seed",
            "1",
            "--out",
            "data.csv",
        ],
    );
    ok(
        root,
        &[
            "train",
            "--algo",
            "logistic",
            "--data",
            "data.csv",
            "--target",
            "default",
            "--out",
            "model",
            "--seed",
            "5",
            "--test-fraction",
            "0.25",
        ],
    );
    let store = format!("sqlite:///{}", root.join("keel.db").display());
    let artifacts = root.join("artifacts");
    let evaluate = |seed: &str, out: &str| {
        let output = keel(
            root,
            &[
                "evaluate",
                "model",
                "data.csv",
                "--seed",
                seed,
                "--test-fraction",
                "0.25",
                "--bootstrap",
                "40",
                "--experiment",
                "evaluations",
                "--backend-store-uri",
                &store,
                "--artifacts-destination",
                artifacts.to_str().unwrap(),
                "--output",
                out,
            ],
        );
        assert!(output.status.success(), "{}", text(&output));
        let document: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join(out)).unwrap()).unwrap();
        (document, text(&output))
    };
    let (first, said) = evaluate("5", "a.json");
    let (again, _) = evaluate("5", "b.json");
    assert_eq!(first, again, "same seed, same split and intervals");
    // The same seed and fraction score exactly the rows `keel train` held out.
    let trained: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("model/metrics.json")).unwrap()).unwrap();
    assert_eq!(first["accuracy"], trained["accuracy"]);
    assert_eq!(first["rows"], trained["rows"]);
    let [lower, upper] = [0, 1].map(|i| {
        first["bootstrap"]["intervals"]["accuracy"][i]
            .as_f64()
            .unwrap()
    });
    let accuracy = first["accuracy"].as_f64().unwrap();
    assert!(
        lower <= accuracy && accuracy <= upper,
        "{lower} {accuracy} {upper}"
    );
    let (other, _) = evaluate("6", "c.json");
    assert_ne!(other["rows"], serde_json::Value::Null);
    assert_ne!(other, first, "another seed holds out other rows");

    // The run got the metrics, the params and metrics.json.
    let run_id = said
        .split("to run ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in {said}"))
        .to_string();
    let artifact = said
        .rsplit("metrics JSON at file://")
        .next()
        .unwrap()
        .trim();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(artifact).unwrap()).unwrap(),
        first
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = runtime.block_on(async {
        let store = keel_store::Store::open(keel_store::StoreConfig::new(&store))
            .await
            .unwrap();
        let run = store.get_run(&run_id).await.unwrap();
        store.close().await;
        run
    });
    let metric = |key: &str| {
        run.data
            .metrics
            .iter()
            .find(|metric| metric.key == key)
            .unwrap_or_else(|| panic!("no metric {key}"))
            .value
    };
    assert_eq!(metric("accuracy"), accuracy);
    assert_eq!(metric("accuracy_ci_lower"), lower);
    assert_eq!(run.info.status, keel_core::RunStatus::Finished);
    assert!(
        run.data
            .params
            .iter()
            .any(|p| p.key == "eval.seed" && p.value == "5")
    );

    // Logging into an existing run; a missing one is a clear error.
    let output = keel(
        root,
        &[
            "evaluate",
            "model",
            "data.csv",
            "--run-id",
            &run_id,
            "--backend-store-uri",
            &store,
            "--artifacts-destination",
            artifacts.to_str().unwrap(),
            "--seed",
            "5",
            "--test-fraction",
            "0.25",
            "--bootstrap",
            "40",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    // Params are immutable (MLflow's rule): other settings into the same run fail.
    let output = keel(
        root,
        &[
            "evaluate",
            "model",
            "data.csv",
            "--run-id",
            &run_id,
            "--backend-store-uri",
            &store,
            "--artifacts-destination",
            artifacts.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains("Changing param values is not allowed"),
        "{}",
        text(&output)
    );
    let output = keel(
        root,
        &[
            "evaluate",
            "model",
            "data.csv",
            "--run-id",
            "0123456789abcdef0123456789abcdef",
            "--backend-store-uri",
            &store,
        ],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains("0123456789abcdef0123456789abcdef"),
        "{}",
        text(&output)
    );
}

#[test]
fn models_import_registers_onnx_from_other_tools() {
    let Some(python) = python_with("skl2onnx, onnx") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let script = repo_root().join("tests/python/export_onnx_models.py");
    let output = Command::new(&python)
        .arg(&script)
        .args(["--out", "onnx"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("onnx/expected.json")).unwrap()).unwrap();
    let store = format!("sqlite:///{}", root.join("keel.db").display());
    let artifacts = root.join("artifacts");
    for (file, want) in expected.as_object().unwrap() {
        let name = file.trim_end_matches(".onnx");
        let path = format!("onnx/{file}");
        let mut args = vec![
            "models",
            "import",
            &path,
            "--name",
            name,
            "--backend-store-uri",
            &store,
            "--artifacts-destination",
            artifacts.to_str().unwrap(),
        ];
        if file == "sk_logreg.onnx" {
            args.extend(["--signature", "onnx/cancer_signature.json"]);
        }
        let said = ok(root, &args);
        assert!(
            said.contains(&format!("registered {name} version 1")),
            "{said}"
        );
        let source = said.rsplit("-> file://").next().unwrap().trim().to_string();
        let signature: serde_json::Value = serde_json::from_slice(
            &std::fs::read(Path::new(&source).join("signature.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(Path::new(&source).join("model.onnx")).unwrap(),
            std::fs::read(root.join(&path)).unwrap()
        );
        assert_eq!(signature["format"], "keel-onnx/1");
        assert_eq!(signature["task"], want["task"], "{file}");
        assert_eq!(
            signature["classes"].as_array().cloned().unwrap_or_default(),
            want["classes"].as_array().unwrap().clone(),
            "{file}"
        );
        assert_eq!(
            signature["inputs"].as_array().unwrap().len() as u64,
            want["features"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            signature["inputs"][0]["name"], want["first_feature"],
            "{file}"
        );
        assert_eq!(signature["producer"], want["producer"], "{file}");
        let ml: Vec<&str> = signature["ml_operators"]
            .as_array()
            .map(|ops| ops.iter().filter_map(|op| op.as_str()).collect())
            .unwrap_or_default();
        for op in want["ml"].as_array().unwrap() {
            assert!(
                ml.contains(&op.as_str().unwrap()),
                "{file}: {ml:?} lacks {op}"
            );
        }
        // Evaluated through keel-engine (ONNX Runtime): the scores of
        // onnxruntime's own predictions in Python.
        if let Some(data) = want["data"].as_str() {
            let library =
                keel_engine::library_in_python_env(python.parent().unwrap().parent().unwrap())
                    .expect("libonnxruntime in the venv");
            let metrics: serde_json::Value = serde_json::from_str(&ok(
                root,
                &[
                    "evaluate",
                    &source,
                    &format!("onnx/{data}"),
                    "--target",
                    "target",
                    "--onnxruntime-lib",
                    library.to_str().unwrap(),
                ],
            ))
            .unwrap();
            // Labels agree exactly; R² to float32 rounding of the tree sums.
            for (metric, expected) in want["ort"].as_object().unwrap() {
                let got = metrics[metric].as_f64().unwrap();
                let expected = expected.as_f64().unwrap();
                assert!(
                    (got - expected).abs() < 1e-6,
                    "{file}: {metric} {got} vs onnxruntime {expected}"
                );
            }
        }
        let shown = ok(
            root,
            &[
                "models",
                "show",
                &format!("models:/{name}/1"),
                "--backend-store-uri",
                &store,
            ],
        );
        assert!(
            shown.contains(&format!("source:      file://{source}")),
            "{shown}"
        );
        assert!(
            shown.contains("tag:         keel.import.producer="),
            "{shown}"
        );
    }
    // The same file again: a second version, the same stored files.
    let said = ok(
        root,
        &[
            "models",
            "import",
            "onnx/sk_gbr.onnx",
            "--name",
            "sk_gbr",
            "--backend-store-uri",
            &store,
            "--artifacts-destination",
            artifacts.to_str().unwrap(),
        ],
    );
    assert!(said.contains("registered sk_gbr version 2"), "{said}");
    assert_eq!(
        std::fs::read_dir(artifacts.join("models")).unwrap().count(),
        4
    );
    // Bad input: not ONNX, and a signature that does not fit.
    std::fs::write(root.join("junk.onnx"), b"definitely not protobuf").unwrap();
    let output = keel(
        root,
        &[
            "models",
            "import",
            "junk.onnx",
            "--name",
            "junk",
            "--backend-store-uri",
            &store,
        ],
    );
    assert!(!output.status.success());
    assert!(text(&output).contains("junk.onnx"), "{}", text(&output));
    std::fs::write(root.join("two.json"), br#"["a", "b"]"#).unwrap();
    let output = keel(
        root,
        &[
            "models",
            "import",
            "onnx/sk_forest.onnx",
            "--name",
            "f",
            "--signature",
            "two.json",
            "--backend-store-uri",
            &store,
        ],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains("has 4 columns but the signature names 2"),
        "{}",
        text(&output)
    );
}
