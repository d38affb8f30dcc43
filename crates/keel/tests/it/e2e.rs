//! End-to-end tests of the `keel` binary, driven as a user drives it: real
//! processes, real sockets, the official MLflow Python client.
//!
//! The conformance tests need the pinned Python venv (`tests/python/ensure_venv.sh`
//! builds it; `.ci/run` does so before `cargo test`) and, for the PostgreSQL
//! variant, `KEEL_TEST_POSTGRES_URL`. With `CI=true` a missing prerequisite fails
//! the test instead of skipping it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{self, in_ci, repo_root};

/// Which conformance script: MLflow's tracking and registry client, or its
/// basic-auth app client (users and permissions).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Suite {
    Tracking,
    Auth,
}

/// Runs a conformance script against this build's `keel server`.
fn run_suite(suite: Suite, backend: Option<String>) {
    let script = repo_root().join("tests/python/run_conformance.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg("--keel-bin")
        .arg(env!("CARGO_BIN_EXE_keel"));
    if suite == Suite::Auth {
        command.arg("--auth");
    }
    if let Some(backend) = backend {
        command.env("KEEL_CONFORMANCE_BACKEND", backend);
    }
    let output = command
        .output()
        .expect("run tests/python/run_conformance.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "MLflow client conformance failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary = match suite {
        Suite::Tracking => " passed, 0 failed",
        Suite::Auth => "auth conformance (keel): ",
    };
    assert!(stdout.contains(summary), "no summary line in:\n{stdout}");
}

#[test]
fn mlflow_client_conformance_sqlite() {
    run_suite(Suite::Tracking, None);
}

#[test]
fn mlflow_auth_client_conformance_sqlite() {
    run_suite(Suite::Auth, None);
}

#[test]
fn mlflow_auth_client_conformance_postgres() {
    postgres_suite(Suite::Auth);
}

#[test]
fn mlflow_client_conformance_postgres() {
    postgres_suite(Suite::Tracking);
}

/// Runs a suite against a fresh PostgreSQL database.
fn postgres_suite(suite: Suite) {
    let admin_url = match std::env::var("KEEL_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if in_ci() => panic!("CI=true but KEEL_TEST_POSTGRES_URL is not set"),
        _ => {
            eprintln!("KEEL_TEST_POSTGRES_URL unset: PostgreSQL conformance not run");
            return;
        }
    };
    let name = match suite {
        Suite::Tracking => "tracking",
        Suite::Auth => "auth",
    };
    let database = format!("keel_conformance_{name}_{}", std::process::id());
    let psql = |sql: &str| {
        Command::new("psql")
            .arg(&admin_url)
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .arg("-c")
            .arg(sql)
            .output()
            .expect("psql is needed to create the test database")
    };
    psql(&format!("DROP DATABASE IF EXISTS {database}"));
    let created = psql(&format!("CREATE DATABASE {database}"));
    assert!(
        created.status.success(),
        "cannot create {database}: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin_url);
    run_suite(suite, Some(format!("{base}/{database}")));
    psql(&format!("DROP DATABASE IF EXISTS {database}"));
}

/// A `keel server` child process on a free loopback port.
struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = util::command(dir.path())
            .args(["server", "--port", &port.to_string(), "--backend-store-uri"])
            .arg(format!(
                "sqlite:///{}",
                dir.path().join("keel.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn keel server");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::blocking_get_ok(&format!("{url}/health")).is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "keel server did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod reqwest {
    //! The JSON calls of these tests, over `util::request`.
    use crate::util;

    pub fn blocking_get_ok(url: &str) -> Option<String> {
        request("GET", url, None, None)
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
    }

    /// Sends `body` as JSON, with `token` as a bearer token; returns the status and body.
    pub fn request(
        method: &str,
        url: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Option<(u16, String)> {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer));
        }
        let answer = util::request(method, url, &headers, body)?;
        Some((answer.status, answer.body))
    }
}

#[test]
fn server_requires_its_token_when_set() {
    let server = Server::start(&["--auth-token", "s3cret"]);
    let experiments = format!("{}/api/2.0/mlflow/experiments/search", server.url);
    let (status, _) = reqwest::request("POST", &experiments, Some("{}"), None).unwrap();
    assert_eq!(status, 401);
    let (status, _) = reqwest::request("POST", &experiments, Some("{}"), Some("wrong")).unwrap();
    assert_eq!(status, 401);
    let (status, body) =
        reqwest::request("POST", &experiments, Some("{}"), Some("s3cret")).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Default"));
}

#[test]
fn server_refuses_open_non_loopback_bind() {
    let dir = tempfile::tempdir().unwrap();
    let output = util::command(dir.path())
        .args([
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--backend-store-uri",
        ])
        .arg(format!(
            "sqlite:///{}",
            dir.path().join("keel.db").display()
        ))
        .arg("--artifacts-destination")
        .arg(dir.path().join("artifacts"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--auth-token"));
}

#[test]
fn unknown_endpoint_and_errors_use_mlflow_envelope() {
    let server = Server::start(&[]);
    let (status, body) = reqwest::request(
        "GET",
        &format!("{}/api/2.0/mlflow/nope", server.url),
        None,
        None,
    )
    .unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("\"error_code\""), "{body}");
    let (status, body) = reqwest::request(
        "GET",
        &format!(
            "{}/api/2.0/mlflow/runs/get?run_id=0123456789abcdef0123456789abcdef",
            server.url
        ),
        None,
        None,
    )
    .unwrap();
    assert_eq!(
        (status, body.contains("RESOURCE_DOES_NOT_EXIST")),
        (404, true),
        "{body}"
    );
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(40 * 1024 * 1024));
    let (status, _) = reqwest::request(
        "POST",
        &format!("{}/api/2.0/mlflow/experiments/create", server.url),
        Some(&huge),
        None,
    )
    .unwrap();
    assert_eq!(status, 413, "a body over the JSON limit is refused");
}

/// `keel ARGS` in `dir` against the store `dir/keel.db`.
fn keel(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    util::command(dir)
        .args(args)
        .env(
            "KEEL_BACKEND_STORE_URI",
            format!("sqlite:///{}", dir.join("keel.db").display()),
        )
        .env("RUST_LOG", "warn")
        .output()
        .expect("run keel")
}

#[test]
fn models_cli_promotion_is_gated_audited_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::write(path.join("pass.json"), r#"{"passed": true, "gates": []}"#).unwrap();
    std::fs::write(
        path.join("fail.json"),
        r#"{"passed": false, "gates": [{"expression": "auc >= production.auc - 0.01", "passed": false}]}"#,
    )
    .unwrap();
    for gates in ["pass.json", "pass.json", "fail.json"] {
        let out = keel(
            path,
            &["models", "register", "risk", "./model", "--gates", gates],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        keel(path, &["models", "register", "risk", "./model"])
            .status
            .success()
    );
    assert!(
        keel(path, &["models", "promote", "risk", "1"])
            .status
            .success()
    );
    assert!(
        keel(
            path,
            &["models", "promote", "risk", "2", "--alias", "production"]
        )
        .status
        .success()
    );

    let refused = keel(path, &["models", "promote", "risk", "3"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("auc >= production.auc - 0.01"));
    let refused = keel(path, &["models", "promote", "risk", "4"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no recorded gate results"));
    assert!(
        !keel(path, &["models", "promote", "risk", "4", "--force"])
            .status
            .success()
    );
    let forced = keel(
        path,
        &[
            "models",
            "promote",
            "risk",
            "4",
            "--force",
            "--reason",
            "approved hotfix",
        ],
    );
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );

    let rollback = keel(
        path,
        &["models", "rollback", "risk", "--alias", "production"],
    );
    assert!(String::from_utf8_lossy(&rollback.stdout).contains("from version 4 to 2"));
    let show = keel(path, &["models", "show", "models:/risk@production"]);
    assert!(String::from_utf8_lossy(&show.stdout).contains("version:     2"));

    let history = keel(path, &["models", "history", "risk", "--json"]);
    let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&history.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let moves: Vec<(String, Option<i64>, Option<i64>, String)> = entries
        .iter()
        .filter(|e| e["target"] == "production")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["from_version"].as_i64(),
                e["to_version"].as_i64(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        vec![
            ("rollback".into(), Some(4), Some(2), String::new()),
            (
                "set_alias".into(),
                Some(2),
                Some(4),
                "approved hotfix".into()
            ),
            ("set_alias".into(), Some(1), Some(2), String::new()),
            ("set_alias".into(), None, Some(1), String::new()),
        ]
    );
}

#[test]
fn registry_change_feed_wakes_followers() {
    let server = Server::start(&[]);
    let api = |path: &str| format!("{}{path}", server.url);
    let (status, _) = reqwest::request(
        "POST",
        &api("/api/2.0/mlflow/registered-models/create"),
        Some(r#"{"name": "risk"}"#),
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    let (_, body) = reqwest::request(
        "POST",
        &api("/api/2.0/mlflow/model-versions/create"),
        Some(r#"{"name": "risk", "source": "mlflow-artifacts:/models/risk"}"#),
        None,
    )
    .unwrap();
    assert!(body.contains("\"version\":\"1\""), "{body}");
    let (_, body) = reqwest::request(
        "GET",
        &api("/api/2.0/keel/registry/changes?since=0"),
        None,
        None,
    )
    .unwrap();
    let feed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let since = feed["registry_version"].as_i64().unwrap();
    assert!(since >= 1);
    assert_eq!(feed["changes"][0]["action"], "create_version");

    // A follower waits on the feed; a promotion through the API wakes it with the move.
    let url = api(&format!(
        "/api/2.0/keel/registry/changes?since={since}&timeout_ms=20000"
    ));
    let follower = std::thread::spawn(move || reqwest::request("GET", &url, None, None));
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = reqwest::request(
        "POST",
        &api("/api/2.0/mlflow/registered-models/alias"),
        Some(r#"{"name": "risk", "alias": "champion", "version": "1"}"#),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, body) = follower.join().unwrap().unwrap();
    let feed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(feed["registry_version"].as_i64().unwrap() > since, "{feed}");
    assert_eq!(feed["changes"][0]["action"], "set_alias");
    assert_eq!(feed["changes"][0]["to_version"], "1");

    // A change by another process sharing the database (the CLI) reaches followers too.
    let since = feed["registry_version"].as_i64().unwrap();
    let url = api(&format!(
        "/api/2.0/keel/registry/changes?since={since}&timeout_ms=20000"
    ));
    let follower = std::thread::spawn(move || reqwest::request("GET", &url, None, None));
    std::thread::sleep(Duration::from_millis(300));
    let cli = keel(
        server._dir.path(),
        &[
            "models",
            "promote",
            "risk",
            "1",
            "--alias",
            "staging",
            "--force",
            "--reason",
            "smoke test",
        ],
    );
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let (_, body) = follower.join().unwrap().unwrap();
    let feed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(feed["changes"][0]["target"], "staging", "{feed}");

    // An unchanged registry answers a zero-timeout poll at once with no changes.
    let now = feed["registry_version"].as_i64().unwrap();
    let (_, body) = reqwest::request(
        "GET",
        &api(&format!("/api/2.0/keel/registry/changes?since={now}")),
        None,
        None,
    )
    .unwrap();
    let feed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(feed["changes"].as_array().map(Vec::len), Some(0));
}
