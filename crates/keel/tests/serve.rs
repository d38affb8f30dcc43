//! `keel serve` as a process: it answers, and SIGTERM stops it gracefully with
//! every answered row in the Parquet prediction log; a public address without
//! a token is refused.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_learn::generate::{Dataset, GenerateOptions, generate};
use keel_learn::{Algorithm, Model, TrainOptions};
use serde_json::{Value, json};

fn keel() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command.env("RUST_BACKTRACE", "0").env("RUST_LOG", "warn");
    command
}

#[test]
fn sigterm_stops_keel_serve_with_every_answered_row_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
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
    let folder = dir.path().join("risk");
    model.save(&folder).unwrap();
    let logs = dir.path().join("logs");
    let mut child = keel()
        .args([
            "serve",
            folder.to_str().unwrap(),
            "--port",
            "0",
            "--log-dir",
        ])
        .arg(&logs)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(address) = line.split("on http://").nth(1) {
                let _ = address_tx.send(address.trim().to_string());
            }
        }
    });
    let address = address_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("keel serve did not report its address");

    let record = json!({"age": 41, "income": 52000, "employment_years": 6, "credit_score": 690,
                        "loan_amount": 12000, "debt_to_income": 0.31, "home_ownership": "rent",
                        "purpose": "car"});
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ids: Vec<String> = runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut ids = Vec::new();
        for _ in 0..20 {
            let response = client
                .post(format!("http://{address}/invocations"))
                .json(&json!({"dataframe_records": [record]}))
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

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "keel serve did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
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
