//! Both engines against keel-learn itself: native predictions are keel-learn's,
//! and ONNX Runtime running keel's exported `model.onnx` agrees with them to
//! 1e-5 (issue 6's "same predictions in keel's serving engine as in
//! onnxruntime"). A scikit-learn-style graph (ONNX-ML `LinearClassifier` with
//! integer class labels, `label` + `probabilities` outputs) checks the output
//! discovery for foreign models.
//!
//! ONNX Runtime is found by keel-engine's own search (`KEEL_ONNXRUNTIME_LIB`,
//! `ORT_DYLIB_PATH`, the active Python's wheel, system folders) with the
//! pinned venv (`KEEL_PY_VENV`, set by tests/run.sh) searched as the first
//! Python environment. With CI=true a missing library fails the ONNX tests
//! instead of skipping them.

use std::path::PathBuf;

use keel_engine::{
    Batch, Column, EnginePreference, InputKind, LabelType, LoadedModel, OutputKind, Predictions,
    ServingSignature, SignatureSource,
};
use keel_learn::generate::{Dataset, GenerateOptions, generate};
use keel_learn::model::Predictions as LearnPredictions;
use keel_learn::onnx::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use keel_learn::{Algorithm, Model, TrainOptions};
use keel_table::Table;
use prost::Message;

fn story(dataset: Dataset, rows: usize, seed: u64) -> Table {
    let options = GenerateOptions {
        rows,
        seed,
        covariate_shift: 0.0,
        concept_drift: 0.0,
    };
    generate(dataset, &options).unwrap()
}

fn quick(algorithm: Algorithm, target: &str) -> TrainOptions {
    let mut options = TrainOptions::new(algorithm, target);
    options.forest.n_trees = 10;
    options.boost.n_iter = 20;
    options
}

/// The signature's columns taken from `table` (categories as text).
fn batch(signature: &ServingSignature, table: &Table) -> Batch {
    Batch {
        rows: table.n_rows(),
        columns: signature
            .inputs
            .iter()
            .map(|input| {
                let column = table.column(&input.name).unwrap();
                match (&input.kind, column) {
                    (InputKind::Categorical { .. }, Column::Numeric(_)) => {
                        Column::Categorical((0..table.n_rows()).map(|i| column.text(i)).collect())
                    }
                    _ => column.clone(),
                }
            })
            .collect(),
    }
}

/// ONNX Runtime's library, configured for this process; None (skip) outside CI.
fn onnxruntime() -> Option<PathBuf> {
    static LIBRARY: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            let found = keel_engine::OnnxRuntimeSearch::from_environment()
                .with_python_env_variable("KEEL_PY_VENV")
                .locate()
                .ok()
                .map(|found| found.path);
            match found {
                Some(path) => {
                    keel_engine::set_onnxruntime_library(path.clone());
                    Some(path)
                }
                None if std::env::var("CI").as_deref() == Ok("true") => panic!(
                    "CI=true: no ONNX Runtime library (set KEEL_PY_VENV, KEEL_ONNXRUNTIME_LIB or ORT_DYLIB_PATH)"
                ),
                None => {
                    eprintln!("skipping ONNX Runtime checks: no library found (KEEL_PY_VENV unset)");
                    None
                }
            }
        })
        .clone()
}

#[test]
fn native_engine_predicts_what_keel_learn_predicts() {
    let train = story(Dataset::Portfolio, 1500, 1);
    let test = story(Dataset::Portfolio, 300, 2);
    let dir = tempfile::tempdir().unwrap();
    let model = Model::train(&train, &quick(Algorithm::Gbdt, "default")).unwrap();
    model.save(dir.path()).unwrap();
    let loaded = LoadedModel::load(dir.path(), EnginePreference::Auto).unwrap();
    assert_eq!(loaded.kind(), keel_engine::EngineKind::Native);
    let signature = loaded.signature();
    assert_eq!(signature.source, SignatureSource::Keel);
    assert_eq!(
        signature.output,
        OutputKind::Classes(vec!["0".into(), "1".into()])
    );
    let Predictions::Classes {
        labels,
        probabilities,
        k,
    } = loaded.predict(&batch(signature, &test)).unwrap()
    else {
        panic!("classes expected");
    };
    let LearnPredictions::Classes {
        labels: expected_labels,
        probabilities: expected,
    } = model.predict(&test).unwrap()
    else {
        panic!("classes expected");
    };
    assert_eq!(k, 2);
    assert_eq!(
        labels,
        expected_labels
            .iter()
            .map(|&l| model.classes[l].clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(probabilities, expected.concat());
}

#[test]
fn onnx_runtime_matches_the_native_engine_on_keel_exports() {
    if onnxruntime().is_none() {
        return;
    }
    let cases = [
        (Dataset::Portfolio, "default", Algorithm::Logistic),
        (Dataset::Portfolio, "default", Algorithm::RandomForest),
        (Dataset::Portfolio, "default", Algorithm::Gbdt),
        (Dataset::Retail, "size", Algorithm::Logistic),
        (Dataset::Retail, "weight_kg", Algorithm::Linear),
        (Dataset::Retail, "weight_kg", Algorithm::Gbdt),
    ];
    for (dataset, target, algorithm) in cases {
        let train = story(dataset, 1500, 3);
        let mut test = story(dataset, 300, 4);
        // Unseen categories and missing values take the same path in both engines.
        let names: Vec<String> = test.names().to_vec();
        let mut columns: Vec<Column> = names
            .iter()
            .map(|n| test.column(n).unwrap().clone())
            .collect();
        for column in &mut columns {
            match column {
                Column::Numeric(values) => values[0] = f64::NAN,
                Column::Categorical(values) => {
                    values[1] = Some("never-seen".into());
                    values[2] = None;
                }
            }
        }
        test = Table::new(names, columns).unwrap();
        let dir = tempfile::tempdir().unwrap();
        Model::train(&train, &quick(algorithm, target))
            .unwrap()
            .save(dir.path())
            .unwrap();
        let native = LoadedModel::load(dir.path(), EnginePreference::Auto).unwrap();
        let onnx = LoadedModel::load(dir.path(), EnginePreference::Onnx).unwrap();
        assert_eq!(onnx.kind(), keel_engine::EngineKind::Onnx);
        assert_eq!(
            onnx.signature(),
            native.signature(),
            "{target} {algorithm:?}"
        );
        let rows = batch(native.signature(), &test);
        let case = format!("{dataset:?} {target} {}", algorithm.as_str());
        match (native.predict(&rows).unwrap(), onnx.predict(&rows).unwrap()) {
            (
                Predictions::Classes {
                    labels: a,
                    probabilities: pa,
                    k,
                },
                Predictions::Classes {
                    labels: b,
                    probabilities: pb,
                    ..
                },
            ) => {
                let worst = pa
                    .iter()
                    .zip(&pb)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
                assert!(worst <= 1e-5, "{case}: probabilities differ by {worst}");
                for (row, (x, y)) in a.iter().zip(&b).enumerate() {
                    let p = &pa[row * k..(row + 1) * k];
                    let mut sorted = p.to_vec();
                    sorted.sort_by(|x, y| y.total_cmp(x));
                    // A label may differ only on a tie within float32 precision.
                    assert!(
                        x == y || sorted[0] - sorted[1] < 1e-5,
                        "{case}: row {row}: {x} vs {y}"
                    );
                }
            }
            (Predictions::Values(a), Predictions::Values(b)) => {
                for (row, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                        "{case}: row {row}: {x} vs {y}"
                    );
                }
            }
            other => panic!("{case}: kinds differ: {other:?}"),
        }
    }
}

fn tensor_type(elem_type: i32, dims: &[Option<i64>]) -> Option<TypeProto> {
    Some(TypeProto {
        tensor_type: Some(TensorTypeProto {
            elem_type,
            shape: Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|d| Dimension {
                        dim_value: *d,
                        dim_param: d.is_none().then(|| "N".to_string()),
                    })
                    .collect(),
            }),
        }),
        ..TypeProto::default()
    })
}

/// What skl2onnx writes for a binary LogisticRegression with integer classes
/// 3 and 7 and `zipmap=False`: ONNX-ML LinearClassifier, outputs `label`
/// (int64 class label) and `probabilities`.
fn sklearn_style_classifier() -> Vec<u8> {
    const FLOAT: i32 = 1;
    const INT64: i32 = 7;
    let attribute = |name: &str| AttributeProto {
        name: name.into(),
        ..Default::default()
    };
    let node = NodeProto {
        input: vec!["float_input".into()],
        output: vec!["label".into(), "probabilities".into()],
        name: "LinearClassifier".into(),
        op_type: "LinearClassifier".into(),
        domain: "ai.onnx.ml".into(),
        attribute: vec![
            AttributeProto {
                floats: vec![-1.0, -2.0, 1.0, 2.0],
                r#type: 6,
                ..attribute("coefficients")
            },
            AttributeProto {
                floats: vec![0.5, -0.5],
                r#type: 6,
                ..attribute("intercepts")
            },
            AttributeProto {
                ints: vec![3, 7],
                r#type: 7,
                ..attribute("classlabels_ints")
            },
            AttributeProto {
                s: b"LOGISTIC".to_vec(),
                r#type: 3,
                ..attribute("post_transform")
            },
        ],
    };
    let model = ModelProto {
        ir_version: 8,
        producer_name: "skl2onnx-like test".into(),
        graph: Some(GraphProto {
            node: vec![node],
            name: "lr".into(),
            input: vec![ValueInfoProto {
                name: "float_input".into(),
                r#type: tensor_type(FLOAT, &[None, Some(2)]),
            }],
            output: vec![
                ValueInfoProto {
                    name: "label".into(),
                    r#type: tensor_type(INT64, &[None]),
                },
                ValueInfoProto {
                    name: "probabilities".into(),
                    r#type: tensor_type(FLOAT, &[None, Some(2)]),
                },
            ],
            ..Default::default()
        }),
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            },
            OperatorSetIdProto {
                domain: "ai.onnx.ml".into(),
                version: 1,
            },
        ],
        ..Default::default()
    };
    model.encode_to_vec()
}

#[test]
fn foreign_onnx_classifier_outputs_are_found_by_name() {
    if onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lr.onnx");
    std::fs::write(&file, sklearn_style_classifier()).unwrap();
    let model = LoadedModel::load(&file, EnginePreference::Auto).unwrap();
    let signature = model.signature();
    assert_eq!(signature.source, SignatureSource::Graph);
    let names: Vec<&str> = signature.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["f0", "f1"]);
    assert_eq!(
        signature.output,
        OutputKind::Classes(vec!["0".into(), "1".into()])
    );
    let rows = Batch {
        rows: 2,
        columns: vec![
            Column::Numeric(vec![3.0, -3.0]),
            Column::Numeric(vec![3.0, -3.0]),
        ],
    };
    let Predictions::Classes {
        labels,
        probabilities,
        k,
    } = model.predict(&rows).unwrap()
    else {
        panic!("classes expected");
    };
    // Scores: class 7 = 0.5*-1 ... row 0 favours 7 (1*3 + 2*3 - 0.5 > 0), row 1 favours 3.
    assert_eq!(labels, ["7", "3"]);
    // The graph's int64 label output makes the labels integers (MLflow answers them as numbers).
    assert_eq!(signature.label_type, LabelType::Integer);
    assert_eq!(k, 2);
    assert!(probabilities[1] > probabilities[0] && probabilities[2] > probabilities[3]);

    // A signature.json beside the graph names the inputs and classes.
    let folder = dir.path().join("named");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("model.onnx"), sklearn_style_classifier()).unwrap();
    std::fs::write(
        folder.join("signature.json"),
        r#"{"inputs": [{"name": "income", "type": "numeric", "min": -5, "max": 5},
                       {"name": "debt", "type": "numeric"}],
            "classes": ["3", "7"]}"#,
    )
    .unwrap();
    let named = LoadedModel::load(&folder, EnginePreference::Auto).unwrap();
    assert_eq!(named.signature().source, SignatureSource::File);
    assert_eq!(named.signature().inputs[0].name, "income");
    assert_eq!(
        named.signature().inputs[0].kind,
        InputKind::Numeric {
            range: Some((-5.0, 5.0)),
            typical: 0.0
        }
    );
    assert_eq!(named.signature().classes().unwrap(), ["3", "7"]);
    assert_eq!(named.signature().label_type, LabelType::Integer);

    std::fs::write(
        folder.join("signature.json"),
        r#"{"inputs": [{"name": "only_one"}]}"#,
    )
    .unwrap();
    let error = LoadedModel::load(&folder, EnginePreference::Auto).unwrap_err();
    assert!(error.to_string().contains("2 features"), "{error}");
}

#[test]
fn load_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let error = LoadedModel::load(dir.path(), EnginePreference::Auto).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()) && message.contains("model.json"),
        "{message}"
    );
    std::fs::write(dir.path().join("model.json"), b"{\"format\": \"other\"}").unwrap();
    let error = LoadedModel::load(dir.path(), EnginePreference::Auto).unwrap_err();
    assert!(error.to_string().contains("model.json"), "{error}");
}

#[test]
fn non_finite_rows_are_reported() {
    let values = Predictions::Values(vec![1.0, f64::NAN, f64::INFINITY, 2.0]);
    assert_eq!(values.non_finite_rows(), [1, 2]);
    let classes = Predictions::Classes {
        labels: vec!["a".into(), "b".into()],
        probabilities: vec![0.5, 0.5, f64::NAN, 1.0],
        k: 2,
    };
    assert_eq!(classes.non_finite_rows(), [1]);
}
