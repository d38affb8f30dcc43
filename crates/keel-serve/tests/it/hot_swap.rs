//! Hot swap under load, against a real keel tracking server (in-process, on
//! SQLite): `keel serve models:/risk@prod` answers a steady client loop while
//! the alias moves from v1 to v2; no request fails and answers switch to v2.
//! Then the alias moves to a broken v3: the load fails, v2 keeps serving, and
//! /health and /metrics report the failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::*;
use keel_learn::Algorithm;
use serde_json::{Value, json};

struct Tracking {
    base: String,
    client: reqwest::Client,
}

impl Tracking {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .client
            .request(method, format!("{}/api/2.0/mlflow/{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let reply: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {reply}");
        reply
    }

    /// Uploads `files` as a run's `model/` artifacts and registers them as a new version of `risk`.
    async fn register(&self, files: &[(&str, Vec<u8>)]) -> String {
        let run = self
            .call(
                reqwest::Method::POST,
                "runs/create",
                json!({"experiment_id": "0"}),
            )
            .await;
        let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
        let artifact_uri = run["run"]["info"]["artifact_uri"].as_str().unwrap();
        let root = artifact_uri
            .trim_start_matches("mlflow-artifacts:")
            .trim_start_matches('/');
        for (name, bytes) in files {
            let response = self
                .client
                .put(format!(
                    "{}/api/2.0/mlflow-artifacts/artifacts/{root}/model/{name}",
                    self.base
                ))
                .body(bytes.clone())
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
        let version = self
            .call(
                reqwest::Method::POST,
                "model-versions/create",
                json!({"name": "risk", "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
            )
            .await;
        version["model_version"]["version"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn set_alias(&self, version: &str) {
        self.call(
            reqwest::Method::POST,
            "registered-models/alias",
            json!({"name": "risk", "alias": "prod", "version": version}),
        )
        .await;
    }
}

fn folder_files(folder: &std::path::Path) -> Vec<(&'static str, Vec<u8>)> {
    ["model.json", "signature.json", "model.onnx"]
        .into_iter()
        .map(|name| (name, std::fs::read(folder.join(name)).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_moves_swap_models_under_load_without_failed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keel.db");
    let tracking_config = keel_server::ServerConfig {
        backend_store_uri: format!("sqlite:///{}", db.display()),
        artifacts_destination: dir.path().join("artifacts").display().to_string(),
        host: "127.0.0.1".into(),
        port: 0,
        auth_token: None,
        allow_unauthenticated: false,
        basic_auth: None,
        tls: None,
        protected_aliases: vec!["production".into()],
    };
    let (tracking_server, _) = keel_server::bind(&tracking_config).await.unwrap();
    let tracking = Tracking {
        base: format!("http://{}", tracking_server.addr),
        client: reqwest::Client::new(),
    };
    let (stop_tracking, tracking_stopped) = tokio::sync::oneshot::channel::<()>();
    let tracking_task = tokio::spawn(tracking_server.serve(async move {
        let _ = tracking_stopped.await;
    }));

    let (v1_folder, _) = train(dir.path(), "v1", Algorithm::Logistic, 11);
    let (v2_folder, _) = train(dir.path(), "v2", Algorithm::Gbdt, 12);
    tracking
        .call(
            reqwest::Method::POST,
            "registered-models/create",
            json!({"name": "risk"}),
        )
        .await;
    let v1 = tracking.register(&folder_files(&v1_folder)).await;
    let v2 = tracking.register(&folder_files(&v2_folder)).await;
    tracking.set_alias(&v1).await;

    let logs = dir.path().join("logs");
    let mut settings = config("models:/risk@prod", &logs);
    settings.tracking_uri = Some(tracking.base.clone());
    let server = Running::start(settings).await;
    let url = format!("{}/invocations", server.base);

    // The load: 4 clients in a loop until told to stop (bounded by the test's own deadline).
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let by_version = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let body = json!({"dataframe_records": records(&portfolio(4, 13), 0..1)});
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, failures, by_version, url, body) = (
            stop.clone(),
            failures.clone(),
            by_version.clone(),
            url.clone(),
            body.clone(),
        );
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match client.post(&url).json(&body).send().await {
                    Ok(response) if response.status() == 200 => {
                        let version = response.headers()["x-keel-model-version"]
                            .to_str()
                            .unwrap()
                            .to_string();
                        let slot = if version == "1" { 0 } else { 1 };
                        by_version[slot].fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // The clients' own answers are the events waited for (each wait bounded).
    let answered = |slot: usize| by_version[slot].load(Ordering::Relaxed);
    wait_until("v1 answers before the move", || answered(0) >= 20).await;
    tracking.set_alias(&v2).await;
    wait_until("a v2 answer after the alias moved", || answered(1) > 0).await;
    let (v1_at_swap, v2_at_swap) = (answered(0), answered(1));
    // Another hundred answers: all from v2 but those already in flight at the swap.
    wait_until("100 more answers after the swap", || {
        answered(1) >= v2_at_swap + 100
    })
    .await;
    let v1_after = answered(0);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed requests during the swap"
    );
    // At most the requests already in flight at the swap finish on v1.
    assert!(
        v1_after - v1_at_swap <= 4,
        "v1 kept answering after the swap"
    );
    assert!(by_version[1].load(Ordering::Relaxed) > 0);

    // A broken v3: the load fails, v2 keeps serving, /health says why.
    let v3 = tracking
        .register(&[(
            "model.json",
            b"{\"format\": \"keel-learn/1\", \"garbage\": true}".to_vec(),
        )])
        .await;
    tracking.set_alias(&v3).await;
    let client = reqwest::Client::new();
    let moved = Instant::now();
    let health = loop {
        let (_, health) = get_json(&client, &format!("{}/health", server.base)).await;
        if !health["registry"]["last_swap_error"].is_null() {
            break health;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(30),
            "no load failure reported: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(health["registry"]["last_swap_error"]["version"], json!(v3));
    assert!(
        health["registry"]["last_swap_error"]["error"]
            .as_str()
            .unwrap()
            .contains("model.json")
    );
    assert_eq!(health["primary"]["version"], json!(v2));
    let (status, headers, _) = post_json(&client, &url, &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-keel-model-version"], v2.as_str());
    let metrics = get_text(&client, &format!("{}/metrics", server.base)).await;
    assert!(
        metrics.contains("keel_serve_model_swaps_total 1"),
        "{metrics}"
    );
    // The broken version failed to load at least once (the follower may
    // try it again when the feed or its poll wakes it before this read).
    let load_failures: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("keel_serve_model_load_failures_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    assert!(load_failures >= 1, "{metrics}");
    assert!(metrics.contains(&format!("role=\"primary\",name=\"risk\",version=\"{v2}\"")));
    server.stop().await;

    // Both versions' answers are in the log, each under its version.
    let logged = read_log(&logs, "risk");
    let versions: std::collections::BTreeSet<&str> = logged
        .iter()
        .map(|r| r["model_version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [v1.as_str(), v2.as_str()].into_iter().collect());
    // Fixed versions: v1 as primary, v2 as a canary for half the traffic; a
    // version can also be addressed directly through the Open Inference Protocol.
    let mut pinned = config("models:/risk/1", &dir.path().join("pinned-logs"));
    pinned.tracking_uri = Some(tracking.base.clone());
    pinned.canary = Some(("models:/risk/2".into(), 0.5));
    let server = Running::start(pinned).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (status, headers, _) =
            post_json(&client, &format!("{}/invocations", server.base), &body).await;
        assert_eq!(status, 200);
        seen.insert(
            headers["x-keel-model-version"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        seen,
        ["1".to_string(), "2".to_string()].into_iter().collect()
    );
    let record = &body["dataframe_records"][0];
    let inputs: Vec<Value> = FEATURES
        .iter()
        .map(|name| {
            let categorical = matches!(*name, "home_ownership" | "purpose");
            json!({"name": name, "shape": [1], "datatype": if categorical { "BYTES" } else { "FP64" },
                   "data": [record[*name]]})
        })
        .collect();
    let (status, _, reply) = post_json(
        &client,
        &format!("{}/v2/models/risk/versions/2/infer", server.base),
        &json!({"inputs": inputs}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model_version"], "2");
    server.stop().await;

    let _ = stop_tracking.send(());
    tracking_task.await.unwrap().unwrap();
}

/// Polls `done` every 10 ms until it holds; fails naming `what` after 30 s.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
