//! Beyond one machine, as a platform team runs keel: two `keel server`
//! processes on one PostgreSQL database and one S3 bucket (moto), three
//! stateless `keel serve` replicas following `models:/risk@champion` with a
//! read-only token and logging to `s3://`, and steady traffic while the
//! alias moves from v1 to v2 through the *other* server. No request fails,
//! every replica answers from v2 within 10 s, each replica downloads each
//! version once, both servers keep every metric two clients wrote through
//! them concurrently, and `keel monitor report --log-dir s3://…` counts
//! exactly the acknowledged predictions of all three replicas.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{self, Serve, TrackingServer};

/// The servers' shared `--auth-token` (its holder is the admin).
const TOKEN: &str = "platform-admin-token-0123456789";

const KEEL_YAML: &str = "\
stages:
  train:
    cmd: keel train --algo logistic --data data/train.csv --target default --out model --test-fraction 0 --seed 3
    deps: [data/train.csv]
    outs: [model]
  evaluate:
    cmd: keel evaluate model data/test.csv --output metrics.json
    deps: [model, data/test.csv]
    metrics: [metrics.json]
gates:
  - accuracy >= 0.6
register:
  model: risk
  path: model
  alias: candidate
";

fn start_server(dir: &Path, backend: &str, artifacts: &str) -> TrackingServer {
    TrackingServer::start(dir, backend, artifacts, TOKEN, "replicas-admin-password")
}

/// A JSON call to a server as the admin; the answer's body, which must be 200.
fn admin(url: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let answer = util::request(
        method,
        &format!("{url}{path}"),
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        body.map(Value::to_string).as_deref(),
    )
    .expect("server reachable");
    assert_eq!(answer.status, 200, "{method} {path}: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap_or(Value::Null)
}

/// `keel ARGS` in the project as the admin, knowing only `url`: must succeed.
fn keel_at(project: &Path, url: &str, args: &[&str]) -> String {
    let output = util::command(project)
        .env("MLFLOW_TRACKING_URI", url)
        .env("MLFLOW_TRACKING_TOKEN", TOKEN)
        .args(args)
        .output()
        .expect("run keel");
    assert!(
        output.status.success(),
        "keel {args:?}:\n{}",
        util::text(&output)
    );
    util::lossy(&output.stdout)
}

/// What the clients of one replica saw.
#[derive(Default)]
struct Seen {
    /// Acknowledged request ids.
    acknowledged: Vec<String>,
    /// Failed requests (status or transport), with what went wrong.
    failed: Vec<String>,
    /// When this replica first answered from v2.
    first_v2: Option<Instant>,
    /// An answer from v1 after one from v2 (a replica must not go back).
    back_to_v1: bool,
}

#[test]
fn replicas_follow_an_alias_move_through_another_server_with_no_failed_request() {
    let Some((backend, database)) = util::postgres_database("replicas") else {
        eprintln!("skipped: KEEL_TEST_POSTGRES_URL is not set");
        return;
    };
    let Some(endpoint) = util::s3_endpoint() else {
        util::drop_postgres_database(&database);
        return;
    };
    let bucket = format!("keel-replicas-{}", std::process::id());
    let created = util::request("PUT", &format!("{endpoint}/{bucket}"), &[], None)
        .expect("create the test bucket");
    assert!(created.status < 300, "{}", created.body);
    let artifacts = format!("s3://{bucket}/artifacts");
    let logs = format!("s3://{bucket}/serving/logs");

    let dir = tempfile::tempdir().unwrap();
    // Two tracking servers on one database and one bucket (started one after
    // the other: the second finds the schema the first made).
    let a = start_server(&dir.path().join("server-a"), &backend, &artifacts);
    let b = start_server(&dir.path().join("server-b"), &backend, &artifacts);

    // A user for the replicas, with basic-auth's default READ, and its token.
    admin(
        &a.url,
        "POST",
        "/api/2.0/mlflow/users/create",
        Some(&json!({"username": "serving", "password": "serving-password-123"})),
    );
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("data")).unwrap();
    let replica_token = keel_at(
        &project,
        &b.url,
        &[
            "tokens", "create", "--user", "serving", "--name", "replicas",
        ],
    )
    .trim()
    .to_string();
    assert!(!replica_token.is_empty());

    // v1 and v2 of risk from the pipeline, through server A; v1 is champion.
    std::fs::write(project.join("keel.yaml"), KEEL_YAML).unwrap();
    for (rows, seed, file) in [
        ("1500", "1", "data/train.csv"),
        ("1000", "2", "data/test.csv"),
    ] {
        util::ok(
            &project,
            &[
                "generate",
                "portfolio",
                "--rows",
                rows,
                "--seed",
                seed,
                "--out",
                file,
            ],
        );
    }
    let first = keel_at(&project, &a.url, &["run"]);
    assert!(first.contains("registered risk version 1"), "{first}");
    keel_at(
        &project,
        &a.url,
        &["models", "promote", "risk", "1", "--alias", "champion"],
    );
    util::ok(
        &project,
        &[
            "generate",
            "portfolio",
            "--rows",
            "3000",
            "--seed",
            "4",
            "--out",
            "data/train.csv",
        ],
    );
    let second = keel_at(&project, &a.url, &["run"]);
    assert!(second.contains("registered risk version 2"), "{second}");

    // Three replicas: two follow server A, one server B; each has its own
    // model cache and spool, as pods do, and writes to the one S3 log.
    let replicas: Vec<Serve> = (0..3)
        .map(|i| {
            let server = if i < 2 { &a.url } else { &b.url };
            let cache = dir.path().join(format!("cache-{i}"));
            let spool = dir.path().join(format!("spool-{i}"));
            Serve::spawn(&[
                "serve",
                "models:/risk@champion",
                "--tracking-uri",
                server,
                "--tracking-token",
                &replica_token,
                "--log-dir",
                &logs,
                "--log-spool",
                spool.to_str().unwrap(),
                "--replica-id",
                &format!("replica-{i}"),
                "--log-flush-interval",
                "200ms",
                "--cache-dir",
                cache.to_str().unwrap(),
            ])
        })
        .collect();

    // Steady traffic on every replica, and two clients writing metrics to
    // one run through the two servers at the same time.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Vec<Arc<Mutex<Seen>>> = (0..3).map(|_| Arc::default()).collect();
    let mut clients = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        let (address, seen, stop) = (replica.address.clone(), seen[i].clone(), stop.clone());
        clients.push(std::thread::spawn(move || {
            traffic(&address, i, &seen, &stop)
        }));
    }
    let run = admin(
        &a.url,
        "POST",
        "/api/2.0/mlflow/runs/create",
        Some(&json!({"experiment_id": "0", "run_name": "two-servers"})),
    );
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let writers: Vec<_> = [a.url.clone(), b.url.clone()]
        .into_iter()
        .enumerate()
        .map(|(w, url)| {
            let run_id = run_id.clone();
            std::thread::spawn(move || log_metrics(&url, &run_id, w))
        })
        .collect();

    std::thread::sleep(Duration::from_millis(1500));
    // The alias moves through server B; replicas on A learn of it through
    // the change counter the two servers share in PostgreSQL.
    keel_at(
        &project,
        &b.url,
        &["models", "promote", "risk", "2", "--alias", "champion"],
    );
    let moved = Instant::now();
    while seen.iter().any(|s| s.lock().unwrap().first_v2.is_none())
        && moved.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Release);
    for client in clients {
        client.join().unwrap();
    }
    for writer in writers {
        writer.join().unwrap();
    }

    let mut acknowledged = 0usize;
    for (i, seen) in seen.iter().enumerate() {
        let seen = seen.lock().unwrap();
        assert!(seen.failed.is_empty(), "replica {i}: {:?}", seen.failed);
        assert!(!seen.back_to_v1, "replica {i} answered from v1 after v2");
        let switched = seen
            .first_v2
            .map(|at| at.saturating_duration_since(moved))
            .unwrap_or_else(|| panic!("replica {i} never answered from v2"));
        assert!(
            switched < Duration::from_secs(10),
            "replica {i} switched after {switched:?}"
        );
        eprintln!(
            "replica {i}: {} acknowledged, on v2 {switched:?} after the move",
            seen.acknowledged.len()
        );
        acknowledged += seen.acknowledged.len();
    }
    assert!(acknowledged >= 300, "too little traffic: {acknowledged}");

    // Each replica downloaded v1 and v2 once each, into its own cache.
    for i in 0..3 {
        let versions: Vec<String> = std::fs::read_dir(dir.path().join(format!("cache-{i}/risk")))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect();
        assert_eq!(versions.len(), 2, "replica {i}'s cache: {versions:?}");
    }

    // Both servers hold every metric both writers wrote.
    for url in [&a.url, &b.url] {
        let run = admin(
            url,
            "GET",
            &format!("/api/2.0/mlflow/runs/get?run_id={run_id}"),
            None,
        );
        let metrics = run["run"]["data"]["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 2 * KEYS, "{url}: {metrics:?}");
        for writer in 0..2 {
            for key in 0..KEYS {
                let history = admin(
                    url,
                    "GET",
                    &format!(
                        "/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=w{writer}_k{key}"
                    ),
                    None,
                );
                assert_eq!(
                    history["metrics"].as_array().map_or(0, Vec::len),
                    BATCHES,
                    "{url}: w{writer}_k{key}"
                );
            }
        }
    }

    // SIGTERM: each replica compacts its spool into S3 before it exits.
    for replica in replicas {
        replica.stop();
    }
    let report_file = dir.path().join("report.json");
    let output = util::command(&project)
        .env("MLFLOW_TRACKING_URI", &b.url)
        .env("MLFLOW_TRACKING_TOKEN", &replica_token)
        .args([
            "monitor",
            "report",
            "--model",
            "risk@champion",
            "--log-dir",
            &logs,
            "--window",
            "1d",
            "--format",
            "json",
            "--output",
        ])
        .arg(&report_file)
        .output()
        .unwrap();
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        util::text(&output)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    let rows: u64 = report["windows"]["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(rows as usize, acknowledged, "{}", report["windows"]);

    // Exactly the acknowledged ids, each written by the replica that answered it.
    let mut logged: BTreeMap<String, (String, String)> = BTreeMap::new();
    keel_predlog::LogReader::open(&logs)
        .unwrap()
        .scan_predictions("risk", None, |batch, row| -> keel_predlog::Result<()> {
            let previous = logged.insert(
                batch.request_id[row].clone(),
                (batch.replica[row].clone(), batch.model_version[row].clone()),
            );
            assert!(previous.is_none(), "{} logged twice", batch.request_id[row]);
            Ok(())
        })
        .unwrap();
    assert_eq!(logged.len(), acknowledged);
    for (i, seen) in seen.iter().enumerate() {
        for id in &seen.lock().unwrap().acknowledged {
            let (replica, _) = logged.get(id).unwrap_or_else(|| panic!("{id} not logged"));
            assert_eq!(replica, &format!("replica-{i}"), "{id}");
        }
    }
    let versions: BTreeMap<&str, usize> =
        logged.values().fold(BTreeMap::new(), |mut count, (_, v)| {
            *count.entry(v.as_str()).or_default() += 1;
            count
        });
    assert_eq!(
        versions.keys().copied().collect::<Vec<_>>(),
        ["1", "2"],
        "{versions:?}"
    );
    drop((a, b));
    util::drop_postgres_database(&database);
}

/// Sequential predictions on one replica, about 100 a second, until `stop`.
fn traffic(address: &str, replica: usize, seen: &Mutex<Seen>, stop: &AtomicBool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let body = json!({"dataframe_records": [{
            "age": 41, "income": 52000, "employment_years": 6, "credit_score": 690,
            "loan_amount": 12000, "debt_to_income": 0.31, "home_ownership": "rent",
            "purpose": "car"}]});
        let mut i = 0usize;
        while !stop.load(Ordering::Acquire) {
            let id = format!("r{replica}-{i}");
            i += 1;
            let sent = client
                .post(format!("http://{address}/invocations"))
                .header("x-request-id", &id)
                .json(&body)
                .send()
                .await;
            let answer = match sent {
                Ok(response) => {
                    let status = response.status();
                    let version = response
                        .headers()
                        .get("x-keel-model-version")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    match response.bytes().await {
                        Ok(_) if status == 200 => Ok(version),
                        Ok(body) => Err(format!("{id}: HTTP {status} {}", util::lossy(&body))),
                        Err(error) => Err(format!("{id}: {error}")),
                    }
                }
                Err(error) => Err(format!("{id}: {error}")),
            };
            {
                let mut seen = seen.lock().unwrap();
                match answer {
                    Ok(version) => {
                        seen.acknowledged.push(id);
                        if version == "2" {
                            seen.first_v2.get_or_insert_with(Instant::now);
                        } else if seen.first_v2.is_some() {
                            seen.back_to_v1 = true;
                        }
                    }
                    Err(error) => seen.failed.push(error),
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

const KEYS: usize = 5;
const BATCHES: usize = 40;

/// `BATCHES` log_batch calls of `KEYS` metrics each (keys `w<writer>_k<key>`,
/// one step per batch) to `run_id` through the server at `url`.
fn log_metrics(url: &str, run_id: &str, writer: usize) {
    for step in 0..BATCHES {
        let metrics: Vec<Value> = (0..KEYS)
            .map(|key| {
                json!({"key": format!("w{writer}_k{key}"), "value": step as f64 * 0.5,
                       "timestamp": 1_700_000_000_000i64 + step as i64, "step": step})
            })
            .collect();
        admin(
            url,
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            Some(&json!({"run_id": run_id, "metrics": metrics})),
        );
    }
}
