//! Real HTTP requests against a served keel-trained model: every MLflow body
//! layout and CSV, the Open Inference Protocol, health, metrics, feedback; the
//! input contract (400 naming the column and row, flags in the log); the output
//! guard; graceful shutdown writing every logged row; canary and shadow.

use crate::util::*;
use keel_learn::model::Predictions as LearnPredictions;
use keel_learn::{Algorithm, Model, TrainOptions};
use keel_serve::{EnginePreference, Policy};
use keel_table::Table;
use serde_json::{Value, json};

fn expected(
    model: &Model,
    table: &Table,
    rows: std::ops::Range<usize>,
) -> (Vec<String>, Vec<Vec<f64>>) {
    let LearnPredictions::Classes {
        labels,
        probabilities,
    } = model
        .predict(&table.select_rows(&rows.collect::<Vec<_>>()))
        .unwrap()
    else {
        panic!("classes expected");
    };
    (
        labels.iter().map(|&l| model.classes[l].clone()).collect(),
        probabilities,
    )
}

/// Labels as MLflow's scoring server answers them for a scikit-learn model
/// trained on integer labels (`predictions_to_json`: numbers, not strings).
fn integers(labels: &[String]) -> Value {
    labels
        .iter()
        .map(|label| json!(label.parse::<i64>().unwrap()))
        .collect()
}

fn assert_probabilities(got: &Value, want: &[Vec<f64>], tolerance: f64) {
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (row, (g, w)) in got.iter().zip(want).enumerate() {
        for (k, (a, b)) in g.as_array().unwrap().iter().zip(w).enumerate() {
            let a = a.as_f64().unwrap();
            assert!(
                (a - b).abs() <= tolerance,
                "row {row} class {k}: {a} vs {b}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_answers_what_the_model_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, model) = train(dir.path(), "risk", Algorithm::Gbdt, 1);
    let logs = dir.path().join("logs");
    let server = Running::start(config(folder.to_str().unwrap(), &logs)).await;
    let client = reqwest::Client::new();
    let base = &server.base;
    let test = portfolio(20, 9);
    let (labels, probabilities) = expected(&model, &test, 0..3);
    let rows = records(&test, 0..3);

    let columns: Vec<&str> = FEATURES.iter().rev().copied().collect();
    let split_data: Vec<Value> = rows
        .iter()
        .map(|r| Value::Array(columns.iter().map(|c| r[*c].clone()).collect()))
        .collect();
    let positional: Vec<Value> = rows
        .iter()
        .map(|r| Value::Array(FEATURES.iter().map(|c| r[*c].clone()).collect()))
        .collect();
    let mut columnar = serde_json::Map::new();
    for name in FEATURES {
        columnar.insert(
            name.into(),
            Value::Array(rows.iter().map(|r| r[name].clone()).collect()),
        );
    }
    let bodies = [
        json!({"dataframe_split": {"columns": columns, "data": split_data}}),
        json!({"dataframe_records": rows}),
        json!({"instances": rows}),
        json!({"instances": positional}),
        json!({"inputs": Value::Object(columnar)}),
        json!({"inputs": positional, "params": {"ignored": true}}),
    ];
    let mut request_ids = Vec::new();
    for body in &bodies {
        let (status, headers, reply) =
            post_json(&client, &format!("{base}/invocations"), body).await;
        assert_eq!(status, 200, "{body}: {reply}");
        assert_eq!(reply["predictions"], integers(&labels), "{body}");
        assert_probabilities(&reply["probabilities"], &probabilities, 1e-12);
        assert_eq!(reply["classes"], json!([0, 1]));
        assert_eq!(headers["x-keel-model-version"], "local");
        assert_eq!(headers["x-keel-model-role"], "primary");
        request_ids.push(headers["x-request-id"].to_str().unwrap().to_string());
    }
    // CSV, with a client-chosen request id.
    let mut csv = FEATURES.join(",") + "\n";
    for r in &rows {
        let cells: Vec<String> = FEATURES
            .iter()
            .map(|c| match &r[*c] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        csv += &(cells.join(",") + "\n");
    }
    let response = client
        .post(format!("{base}/invocations"))
        .header("content-type", "text/csv")
        .header("x-request-id", "client-42")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "client-42");
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["predictions"], integers(&labels));
    let unsupported = client
        .post(format!("{base}/invocations"))
        .header("content-type", "application/xml")
        .body("<x/>")
        .send()
        .await
        .unwrap();
    assert_eq!(unsupported.status(), 415);

    // Open Inference Protocol: named tensors, BYTES for categories.
    let (status, live) = get_json(&client, &format!("{base}/v2/health/live")).await;
    assert_eq!((status, &live), (200, &json!({"live": true})));
    assert_eq!(
        get_json(&client, &format!("{base}/v2/health/ready"))
            .await
            .0,
        200
    );
    let (_, server_meta) = get_json(&client, &format!("{base}/v2")).await;
    assert_eq!(server_meta["name"], "keel");
    let (status, meta) = get_json(&client, &format!("{base}/v2/models/risk")).await;
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["platform"], "keel_native");
    assert_eq!(
        meta["inputs"][6],
        json!({"name": "home_ownership", "datatype": "BYTES", "shape": [-1]})
    );
    assert_eq!(meta["outputs"][1]["shape"], json!([-1, 2]));
    let (status, ready) = get_json(
        &client,
        &format!("{base}/v2/models/risk/versions/local/ready"),
    )
    .await;
    assert_eq!((status, ready["ready"].clone()), (200, json!(true)));
    assert_eq!(
        get_json(&client, &format!("{base}/v2/models/other"))
            .await
            .0,
        404
    );
    assert_eq!(
        get_json(&client, &format!("{base}/v2/models/risk/versions/9/ready"))
            .await
            .0,
        404
    );
    let inputs: Vec<Value> = FEATURES
        .iter()
        .map(|name| {
            let categorical = matches!(*name, "home_ownership" | "purpose");
            json!({
                "name": name,
                "shape": [3],
                "datatype": if categorical { "BYTES" } else { "FP64" },
                "data": rows.iter().map(|r| r[*name].clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let (status, _, reply) = post_json(
        &client,
        &format!("{base}/v2/models/risk/infer"),
        &json!({"id": "abc", "inputs": inputs}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["id"], "abc");
    assert_eq!(reply["model_version"], "local");
    assert_eq!(reply["outputs"][0]["name"], "label");
    assert_eq!(reply["outputs"][0]["data"], json!(labels));
    assert_eq!(reply["outputs"][1]["shape"], json!([3, 2]));
    let flat: Vec<f64> = probabilities.concat();
    for (a, b) in reply["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&flat)
    {
        assert!((a.as_f64().unwrap() - b).abs() < 1e-12);
    }
    let (status, _, only_label) = post_json(
        &client,
        &format!("{base}/v2/models/risk/versions/local/infer"),
        &json!({"inputs": inputs, "outputs": [{"name": "label"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(only_label["outputs"].as_array().unwrap().len(), 1);
    let (status, _, error) = post_json(
        &client,
        &format!("{base}/v2/models/risk/infer"),
        &json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["error"].as_str().unwrap().contains("8 features"),
        "{error}"
    );

    // Health, version, ping, metrics, feedback.
    assert_eq!(
        client
            .get(format!("{base}/ping"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (_, health) = get_json(&client, &format!("{base}/health")).await;
    assert_eq!(health["primary"]["name"], "risk");
    assert_eq!(health["primary"]["engine"], "keel-native");
    let version = get_text(&client, &format!("{base}/version")).await;
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let (status, _, written) = post_json(
        &client,
        &format!("{base}/feedback"),
        &json!({"feedback": [{"request_id": request_ids[0], "row": 1, "label": "1"}]}),
    )
    .await;
    assert_eq!(status, 200, "{written}");
    let (status, _, refused) =
        post_json(&client, &format!("{base}/feedback"), &json!({"row": 1})).await;
    assert_eq!(status, 400);
    assert!(refused["message"].as_str().unwrap().contains("request_id"));
    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    assert!(
        metrics.contains("keel_serve_requests_total{protocol=\"mlflow\",role=\"primary\"} 7"),
        "{metrics}"
    );
    assert!(metrics.contains("keel_serve_requests_total{protocol=\"v2\",role=\"primary\"} 2"));
    assert!(metrics.contains("keel_serve_model_info{role=\"primary\",name=\"risk\",version=\"local\",engine=\"keel-native\"} 1"));
    assert!(metrics.contains("keel_serve_batch_rows_bucket{le=\"5\"} 9"));
    server.stop().await;

    let logged = read_log(&logs, "risk");
    assert_eq!(logged.len(), 9 * 3);
    let feedback = read_feedback(&logs, "risk");
    assert_eq!(feedback.len(), 1);
    assert_eq!(feedback[0]["request_id"], json!(request_ids[0]));
    assert_eq!(feedback[0]["label"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numeric_model_takes_one_fp32_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let numeric: Vec<String> = FEATURES[..6].iter().map(|s| s.to_string()).collect();
    let mut options = TrainOptions::new(Algorithm::Logistic, "default");
    options.features = Some(numeric.clone());
    let model = Model::train(&portfolio(500, 3), &options).unwrap();
    let folder = dir.path().join("numeric");
    model.save(&folder).unwrap();
    let server = Running::start(config(folder.to_str().unwrap(), &dir.path().join("logs"))).await;
    let test = portfolio(4, 5);
    let (labels, probabilities) = expected(&model, &test, 0..4);
    let data: Vec<Vec<f64>> = (0..4)
        .map(|row| {
            numeric
                .iter()
                .map(|n| match test.column(n).unwrap() {
                    keel_table::Column::Numeric(v) => v[row],
                    _ => unreachable!(),
                })
                .collect()
        })
        .collect();
    let client = reqwest::Client::new();
    let (status, _, reply) = post_json(
        &client,
        &format!("{}/v2/models/numeric/infer", server.base),
        &json!({"inputs": [{"name": "input", "shape": [4, 6], "datatype": "FP64", "data": data}]}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outputs"][0]["data"], json!(labels));
    let got: Vec<f64> = reply["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (a, b) in got.iter().zip(probabilities.concat()) {
        assert!((a - b).abs() < 1e-12);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_violations_name_the_column_and_flags_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, _) = train(dir.path(), "risk", Algorithm::Logistic, 2);
    let logs = dir.path().join("logs");
    let mut settings = config(folder.to_str().unwrap(), &logs);
    settings.max_body_bytes = 64 * 1024;
    let server = Running::start(settings).await;
    let client = reqwest::Client::new();
    let url = format!("{}/invocations", server.base);
    let mut good = records(&portfolio(5, 4), 0..2);
    // Fill the generator's few missing cells so the only flags are the ones made below.
    for row in &mut good {
        for (name, value) in row.as_object_mut().unwrap() {
            if value.is_null() {
                *value = if name == "home_ownership" {
                    json!("rent")
                } else {
                    json!(5.0)
                };
            }
        }
    }

    let mut missing = good.clone();
    missing[0].as_object_mut().unwrap().remove("credit_score");
    let (status, _, error) = post_json(&client, &url, &json!({"dataframe_records": missing})).await;
    assert_eq!(status, 400);
    assert_eq!(error["error_code"], "BAD_REQUEST");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("\"credit_score\"") && message.contains("Row 0"),
        "{message}"
    );

    let mut wrong = good.clone();
    wrong[1]["income"] = json!("a lot");
    let (status, _, error) = post_json(&client, &url, &json!({"dataframe_records": wrong})).await;
    assert_eq!(status, 400);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("\"income\"") && message.contains("row 1"),
        "{message}"
    );

    let mut odd = good.clone();
    odd[0]["income"] = json!(1e12);
    odd[1]["purpose"] = json!("space travel");
    odd[1]["customer_id"] = json!(77);
    let (status, headers, reply) =
        post_json(&client, &url, &json!({"dataframe_records": odd})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        headers["x-keel-flags"],
        "extra_column,out_of_range,unknown_category"
    );
    let flagged_id = headers["x-request-id"].to_str().unwrap().to_string();

    let huge = json!({"dataframe_records": vec![good[0].clone(); 1000]});
    let (status, _, error) = post_json(&client, &url, &huge).await;
    assert_eq!(status, 413, "{error}");
    let metrics = get_text(&client, &format!("{}/metrics", server.base)).await;
    assert!(
        metrics.contains("keel_serve_request_errors_total{kind=\"contract\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("keel_serve_flagged_rows_total{check=\"out_of_range\"} 1"));
    assert!(metrics.contains("keel_serve_flagged_rows_total{check=\"unknown_category\"} 1"));
    assert!(metrics.contains("keel_serve_request_errors_total{kind=\"too_large\"} 1"));
    server.stop().await;

    let logged = read_log(&logs, "risk");
    assert_eq!(logged.len(), 2, "only the accepted request is logged");
    assert_eq!(logged[0]["request_id"], json!(flagged_id));
    assert_eq!(logged[0]["flags"], "out_of_range:income");
    assert_eq!(
        logged[1]["flags"],
        "unknown_category:purpose,extra_column:customer_id"
    );
    assert_eq!(logged[1]["input.purpose"], "space travel");
    assert_eq!(logged[1]["row"], 1);

    // The same request under a strict policy is refused, naming the column and row.
    let mut strict = config(folder.to_str().unwrap(), &dir.path().join("strict-logs"));
    strict.policies.out_of_range = Policy::Reject;
    let server = Running::start(strict).await;
    let (status, _, error) = post_json(
        &client,
        &format!("{}/invocations", server.base),
        &json!({"dataframe_records": odd}),
    )
    .await;
    assert_eq!(status, 400);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("\"income\"")
            && message.contains("row 0")
            && message.contains("training range"),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_answers_labels_in_the_models_own_type() {
    // MLflow's scoring server answers `[0, 1]` for a classifier trained on
    // integer labels and `["no", "yes"]` for one trained on text labels
    // (shared/reference: mlflow.pyfunc.scoring_server.predictions_to_json).
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut rows = String::from("x,y,label\n");
    for i in 0..40 {
        let (x, label) = (i % 10, if i % 10 < 5 { "no" } else { "yes" });
        rows.push_str(&format!("{x},{},{label}\n", u8::from(i % 10 >= 5)));
    }
    for (target, want) in [("y", json!([0, 1])), ("label", json!(["no", "yes"]))] {
        let mut table = Table::from_csv_reader(rows.as_bytes(), &[]).unwrap();
        let drop = if target == "y" { "label" } else { "y" };
        let keep: Vec<String> = table
            .names()
            .iter()
            .filter(|n| *n != drop)
            .cloned()
            .collect();
        let columns = keep
            .iter()
            .map(|n| table.column(n).unwrap().clone())
            .collect();
        table = Table::new(keep, columns).unwrap();
        let model = Model::train(&table, &TrainOptions::new(Algorithm::Logistic, target)).unwrap();
        let folder = dir.path().join(target);
        model.save(&folder).unwrap();
        let server =
            Running::start(config(folder.to_str().unwrap(), &dir.path().join("logs"))).await;
        let body = json!({"dataframe_split": {"columns": ["x"], "data": [[1], [8]]}});
        let (status, _, reply) =
            post_json(&client, &format!("{}/invocations", server.base), &body).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["predictions"], want, "{target}: {reply}");
        assert_eq!(reply["classes"], want, "{target}: {reply}");
        server.stop().await;
    }
}

/// A linear regressor whose weights overflow: every prediction is infinite or NaN.
fn broken_regressor(dir: &std::path::Path) -> std::path::PathBuf {
    let train = Table::from_csv_reader(
        "x1,x2,y\n1,2,3\n2,1,3\n3,5,8\n4,4,8\n5,7,12\n6,2,8\n".as_bytes(),
        &[],
    )
    .unwrap();
    let mut model = Model::train(&train, &TrainOptions::new(Algorithm::Linear, "y")).unwrap();
    let keel_learn::model::Estimator::Linear(linear) = &mut model.estimator else {
        panic!("linear expected");
    };
    linear.weights = vec![vec![f64::MAX, f64::MAX]];
    let folder = dir.join("broken");
    model.save(&folder).unwrap();
    folder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_predictions_are_never_returned_silently() {
    let dir = tempfile::tempdir().unwrap();
    let folder = broken_regressor(dir.path());
    let body = json!({"dataframe_split": {"columns": ["x1", "x2"], "data": [[6, 7], [5, 6]]}});
    let client = reqwest::Client::new();

    let server = Running::start(config(folder.to_str().unwrap(), &dir.path().join("logs"))).await;
    let (status, headers, error) =
        post_json(&client, &format!("{}/invocations", server.base), &body).await;
    assert_eq!(status, 500, "{error}");
    assert!(headers.contains_key("x-request-id"));
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("rows 0, 1") && message.contains("NaN or infinite"),
        "{message}"
    );
    let metrics = get_text(&client, &format!("{}/metrics", server.base)).await;
    assert!(
        metrics.contains("keel_serve_nan_outputs_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("keel_serve_request_errors_total{kind=\"nan_output\"} 1"));
    server.stop().await;
    let logged = read_log(&dir.path().join("logs"), "broken");
    assert_eq!(
        logged.len(),
        2,
        "the refused answer is still in the log, flagged"
    );
    assert_eq!(logged[0]["flags"], "nan_output");
    assert_eq!(logged[0]["output.value"], Value::Null);

    let mut flagging = config(folder.to_str().unwrap(), &dir.path().join("flag-logs"));
    flagging.policies.nan_output = Policy::Flag;
    let server = Running::start(flagging).await;
    let (status, headers, reply) =
        post_json(&client, &format!("{}/invocations", server.base), &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-keel-flags"], "nan_output");
    assert_eq!(reply["predictions"], json!([null, null]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_answers_503_never_an_unlogged_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, _) = train(dir.path(), "risk", Algorithm::Logistic, 4);
    let logs = dir.path().join("logs");
    // Room for 5 rows not yet in Parquet, and nothing compacted before the stop.
    let mut settings = config(folder.to_str().unwrap(), &logs);
    settings.log_capacity_rows = 5;
    settings.log_flush_interval = std::time::Duration::from_secs(60);
    let server = Running::start(settings).await;
    let client = reqwest::Client::new();
    let rows = records(&portfolio(10, 6), 0..10);
    let url = format!("{}/invocations", server.base);
    let (status, _, _) = post_json(&client, &url, &json!({"dataframe_records": rows[..4]})).await;
    assert_eq!(status, 200);
    // 4 + 2 > 5: refused, with the MLflow envelope and Retry-After.
    let response = client
        .post(&url)
        .json(&json!({"dataframe_records": rows[4..6]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], "TEMPORARILY_UNAVAILABLE", "{body}");
    let (status, _, _) = post_json(&client, &url, &json!({"dataframe_records": rows[4..5]})).await;
    assert_eq!(status, 200);
    let metrics = get_text(&client, &format!("{}/metrics", server.base)).await;
    assert!(
        metrics.contains("keel_serve_prediction_log_rows_refused_total 2"),
        "{metrics}"
    );
    server.stop().await;
    // Exactly the answered rows are in the log.
    assert_eq!(read_log(&logs, "risk").len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_writes_every_logged_row() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, _) = train(dir.path(), "risk", Algorithm::Logistic, 4);
    let logs = dir.path().join("logs");
    // A long flush interval: only the shutdown can have written the rows.
    let mut settings = config(folder.to_str().unwrap(), &logs);
    settings.log_flush_interval = std::time::Duration::from_secs(60);
    let server = Running::start(settings).await;
    let client = reqwest::Client::new();
    let rows = records(&portfolio(50, 6), 0..50);
    let mut ids = Vec::new();
    for row in &rows[..40] {
        let (status, headers, _) = post_json(
            &client,
            &format!("{}/invocations", server.base),
            &json!({"dataframe_records": [row]}),
        )
        .await;
        assert_eq!(status, 200);
        ids.push(headers["x-request-id"].to_str().unwrap().to_string());
    }
    let (status, _, _) = post_json(
        &client,
        &format!("{}/invocations", server.base),
        &json!({"dataframe_records": rows[40..45]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(read_log(&logs, "risk").is_empty());
    server.stop().await;
    let logged = read_log(&logs, "risk");
    assert_eq!(logged.len(), 45);
    let keys: Vec<&String> = logged[0].as_object().unwrap().keys().collect();
    for column in [
        "request_id",
        "row",
        "ts_ms",
        "model_name",
        "model_version",
        "role",
        "latency_us",
        "replica",
        "input.age",
        "input.purpose",
        "output.label",
        "output.score",
        "output.proba.0",
        "output.proba.1",
        "output.value",
        "flags",
    ] {
        assert!(
            keys.iter().any(|k| *k == column),
            "missing {column} in {keys:?}"
        );
    }
    let logged_ids: Vec<&str> = logged[..40]
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(logged_ids, ids);
    assert_eq!(logged[44]["row"], 4);
    assert_eq!(logged[0]["role"], "primary");
    assert_eq!(logged[0]["model_version"], "local");
    let score = logged[0]["output.score"].as_f64().unwrap();
    let label = logged[0]["output.label"].as_str().unwrap();
    assert_eq!(
        logged[0][format!("output.proba.{label}")].as_f64().unwrap(),
        score
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_and_shadow_are_routed_and_logged_with_their_role() {
    let dir = tempfile::tempdir().unwrap();
    let (primary, _) = train(dir.path(), "a", Algorithm::Logistic, 5);
    let (canary, _) = train(dir.path(), "b", Algorithm::Gbdt, 6);
    let (shadow, _) = train(dir.path(), "c", Algorithm::RandomForest, 7);
    let logs = dir.path().join("logs");
    let mut settings = config(primary.to_str().unwrap(), &logs);
    settings.model_name = Some("risk".into());
    settings.canary = Some((canary.to_str().unwrap().to_string(), 0.25));
    settings.shadow = Some(shadow.to_str().unwrap().to_string());
    let server = Running::start(settings).await;
    let client = reqwest::Client::new();
    let rows = records(&portfolio(40, 8), 0..40);
    let mut canary_answers = 0;
    for row in &rows {
        let (status, headers, _) = post_json(
            &client,
            &format!("{}/invocations", server.base),
            &json!({"instances": [row]}),
        )
        .await;
        assert_eq!(status, 200);
        if headers["x-keel-model-role"] == "canary" {
            canary_answers += 1;
        }
    }
    assert!(
        (8..=12).contains(&canary_answers),
        "{canary_answers} of 40 went to the canary"
    );
    server.stop().await;
    let logged = read_log(&logs, "risk");
    let count = |role: &str| logged.iter().filter(|r| r["role"] == role).count();
    assert_eq!(count("canary"), canary_answers);
    assert_eq!(count("primary"), 40 - canary_answers);
    assert_eq!(count("shadow"), 40, "every request is mirrored");
    let answered: std::collections::BTreeSet<&str> = logged
        .iter()
        .filter(|r| r["role"] != "shadow")
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    let mirrored: std::collections::BTreeSet<&str> = logged
        .iter()
        .filter(|r| r["role"] == "shadow")
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(answered, mirrored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_runtime_serves_keel_exports_like_the_native_engine() {
    if onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (folder, model) = train(dir.path(), "risk", Algorithm::RandomForest, 8);
    let mut settings = config(folder.to_str().unwrap(), &dir.path().join("logs"));
    settings.engine = EnginePreference::Onnx;
    let server = Running::start(settings).await;
    let client = reqwest::Client::new();
    let test = portfolio(30, 10);
    let (_, probabilities) = expected(&model, &test, 0..30);
    let (status, _, reply) = post_json(
        &client,
        &format!("{}/invocations", server.base),
        &json!({"dataframe_records": records(&test, 0..30)}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_probabilities(&reply["probabilities"], &probabilities, 1e-5);
    let (_, health) = get_json(&client, &format!("{}/health", server.base)).await;
    assert_eq!(health["primary"]["engine"], "onnxruntime");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_and_slow_requests_get_503_and_504() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, _) = train(dir.path(), "risk", Algorithm::Gbdt, 9);
    let client = reqwest::Client::new();
    let body = json!({"dataframe_records": records(&portfolio(3, 1), 0..1)});

    // No request slot at all: every prediction is shed at once, health still answers.
    let mut saturated = config(folder.to_str().unwrap(), &dir.path().join("logs-a"));
    saturated.max_concurrency = 0;
    let server = Running::start(saturated).await;
    let response = client
        .post(format!("{}/invocations", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error_code"], "TEMPORARILY_UNAVAILABLE");
    assert_eq!(
        client
            .get(format!("{}/health", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = get_text(&client, &format!("{}/metrics", server.base)).await;
    assert!(
        metrics.contains("keel_serve_request_errors_total{kind=\"overloaded\"} 1"),
        "{metrics}"
    );
    server.stop().await;

    // A 1 ms budget cannot fit a 20,000-row batch (predicted on the blocking pool).
    let mut hurried = config(folder.to_str().unwrap(), &dir.path().join("logs-b"));
    hurried.request_timeout = std::time::Duration::from_millis(1);
    let server = Running::start(hurried).await;
    let big = json!({"dataframe_records": records(&portfolio(20_000, 2), 0..20_000)});
    let response = client
        .post(format!("{}/invocations", server.base))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_has_its_own_token_and_empty_tokens_count_as_none() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, _) = train(dir.path(), "risk", Algorithm::Logistic, 5);
    let model = folder.to_str().unwrap();
    let mut tokens = config(model, &dir.path().join("logs"));
    tokens.auth_token = Some("predict-secret".into());
    tokens.feedback_token = Some("label-secret".into());
    let server = Running::start(tokens).await;
    let client = reqwest::Client::new();
    let body = json!({"dataframe_records": records(&portfolio(3, 1), 0..1)});
    let feedback = json!({"feedback": [{"request_id": "r-1", "row": 0, "label": "1"}]});
    let call = |path: &str, token: Option<&str>, body: &Value| {
        let mut request = client.post(format!("{}{path}", server.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    // Predictions take the prediction token only.
    assert_eq!(
        call("/invocations", Some("predict-secret"), &body)
            .await
            .unwrap()
            .status(),
        200
    );
    for token in [Some("label-secret"), Some("predict-secre"), None] {
        let response = call("/invocations", token, &body).await.unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
    }
    // Labels take the feedback token only: a prediction client cannot write them.
    let refused = call("/feedback", Some("predict-secret"), &feedback)
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error_code"], "UNAUTHENTICATED");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("feedback token"),
        "{error}"
    );
    let written = call("/feedback", Some("label-secret"), &feedback)
        .await
        .unwrap();
    assert_eq!(written.status(), 200);
    assert_eq!(written.json::<Value>().await.unwrap()["written"], 1);
    // Health checks stay open.
    let health = client
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await;

    // An empty token is no token: a non-loopback bind without one is refused,
    // and a name that merely starts like a loopback address is not loopback.
    for (host, token) in [("0.0.0.0", Some("")), ("127.0.0.1.nip.io", None)] {
        let mut open = config(model, &dir.path().join("logs-open"));
        open.host = host.into();
        open.auth_token = token.map(str::to_string);
        match keel_serve::bind(open).await {
            Err(error) => assert!(
                error.to_string().contains("without authentication"),
                "{error}"
            ),
            Ok(_) => panic!("{host} with {token:?} must be refused"),
        }
    }
}
