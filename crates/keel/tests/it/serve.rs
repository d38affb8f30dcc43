//! `keel serve` as a process: SIGTERM stops it with every answered row in the
//! prediction log (`kill -9` under load is in the fault-injection group,
//! `harden`); three replicas logging to
//! `s3://` are read back, merged, by `keel monitor report`; a public address
//! without a token is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_learn::generate::{Dataset, GenerateOptions, generate};
use keel_learn::{Algorithm, Model, TrainOptions};
use serde_json::{Value, json};

use crate::util::{self, Serve};

fn keel() -> Command {
    let mut command = util::command(Path::new("."));
    command.env("RUST_LOG", "warn");
    command
}

/// A small credit-risk model saved as `dir/risk`.
pub(crate) fn risk_model(dir: &Path) -> PathBuf {
    let data = generate(
        Dataset::Portfolio,
        &GenerateOptions {
            rows: 600,
            seed: 3,
            covariate_shift: 0.0,
            concept_drift: 0.0,
        },
    )
    .unwrap();
    let model = Model::train(&data, &TrainOptions::new(Algorithm::Logistic, "default")).unwrap();
    let folder = dir.join("risk");
    model.save(&folder).unwrap();
    folder
}

fn record() -> Value {
    json!({"age": 41, "income": 52000, "employment_years": 6, "credit_score": 690,
           "loan_amount": 12000, "debt_to_income": 0.31, "home_ownership": "rent",
           "purpose": "car"})
}

/// Every logged request id of `model` in the log at `location`, with its row count.
pub(crate) fn logged_ids(location: &str, model: &str) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    keel_predlog::LogReader::open(location)
        .unwrap()
        .scan_predictions(model, None, |batch, row| -> keel_predlog::Result<()> {
            *ids.entry(batch.request_id[row].clone()).or_insert(0) += 1;
            Ok(())
        })
        .unwrap();
    ids
}

#[test]
fn sigterm_stops_keel_serve_with_every_answered_row_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let folder = risk_model(dir.path());
    let logs = dir.path().join("logs");
    let serve = Serve::start(&folder, &["--log-dir", logs.to_str().unwrap()]);
    let address = serve.address.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ids: Vec<String> = runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut ids = Vec::new();
        for _ in 0..20 {
            let response = client
                .post(format!("http://{address}/invocations"))
                .json(&json!({"dataframe_records": [record()]}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            ids.push(
                response.headers()["x-request-id"]
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
            let reply: Value = response.json().await.unwrap();
            assert_eq!(reply["predictions"].as_array().unwrap().len(), 1);
        }
        ids
    });
    assert_eq!(ids.len(), 20);
    serve.stop();
    let mut logged = Vec::new();
    keel_predlog::LogReader::open(logs.to_str().unwrap())
        .unwrap()
        .scan_predictions("risk", None, |batch, row| -> keel_predlog::Result<()> {
            logged.push(batch.request_id[row].clone());
            Ok(())
        })
        .unwrap();
    assert_eq!(logged, ids);
}

/// Sends requests with client-chosen ids from `tasks` connections until `stop`
/// (at most `limit` per connection); returns the ids answered with 200.
pub(crate) async fn load(
    addresses: Vec<String>,
    tasks: usize,
    limit: usize,
    acknowledged: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let body = json!({"dataframe_records": [record()]});
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (client, body, acknowledged, stop) = (
            client.clone(),
            body.clone(),
            acknowledged.clone(),
            stop.clone(),
        );
        let address = addresses[task % addresses.len()].clone();
        handles.push(tokio::spawn(async move {
            for i in 0..limit {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let id = format!("t{task}-{i}");
                let sent = client
                    .post(format!("http://{address}/invocations"))
                    .header("x-request-id", &id)
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => {
                        // Acknowledged: the client has the answer.
                        if response.bytes().await.is_ok() {
                            acknowledged.lock().unwrap().push(id);
                        }
                    }
                    Ok(response) => panic!("request {id}: HTTP {}", response.status()),
                    // The server is gone (killed): nothing more to send.
                    Err(_) => break,
                }
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
}

#[test]
fn three_replicas_log_to_s3_and_monitor_report_counts_every_acknowledged_prediction() {
    let Some(endpoint) = util::s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("keel-predlog-{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let created = reqwest::Client::new()
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());
    });
    let location = format!("s3://{bucket}/serving/logs");
    let spool = dir.path().join("spool");
    // keel train writes the profile.json the monitor compares with.
    let train = dir.path().join("train.csv");
    let ok = |command: &mut Command| {
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    ok(keel()
        .args([
            "generate",
            "portfolio",
            "--rows",
            "2000",
            "--seed",
            "5",
            "--out",
        ])
        .arg(&train));
    let model = dir.path().join("model");
    ok(keel()
        .args([
            "train", "--algo", "logistic", "--target", "default", "--data",
        ])
        .arg(&train)
        .arg("--out")
        .arg(&model));
    let replicas: Vec<Serve> = (0..3)
        .map(|_| {
            Serve::start(
                &model,
                &[
                    "--name",
                    "risk",
                    "--log-dir",
                    &location,
                    "--log-spool",
                    spool.to_str().unwrap(),
                ],
            )
        })
        .collect();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    runtime.block_on(load(
        replicas.iter().map(|r| r.address.clone()).collect(),
        6,
        100,
        acknowledged.clone(),
        Arc::new(AtomicBool::new(false)),
    ));
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), 600);
    for replica in replicas {
        replica.stop();
    }

    // Each replica wrote its own files; the reader merges all three.
    let reader = keel_predlog::LogReader::open(&location).unwrap();
    let writers: BTreeSet<String> = reader
        .prediction_files("risk", None)
        .unwrap()
        .into_iter()
        .map(|f| f.replica)
        .collect();
    assert_eq!(writers.len(), 3, "{writers:?}");
    let logged = logged_ids(&location, "risk");
    assert_eq!(
        logged.keys().cloned().collect::<BTreeSet<_>>(),
        acknowledged.into_iter().collect::<BTreeSet<_>>()
    );

    let report_file = dir.path().join("report.json");
    let output = keel()
        .args([
            "monitor",
            "report",
            "--model",
            "risk",
            "--log-dir",
            &location,
        ])
        .arg("--model-dir")
        .arg(&model)
        .args(["--window", "1d", "--format", "json", "--output"])
        .arg(&report_file)
        .output()
        .unwrap();
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    let rows: u64 = report["windows"]["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, 600, "{}", report["windows"]);
}

#[test]
fn keel_serve_refuses_a_public_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let output = keel()
        .args([
            "serve",
            dir.path().to_str().unwrap(),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--auth-token"), "{stderr}");
}
