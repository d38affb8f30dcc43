//! `keel loadtest` end to end: the real binary against a small axum server on
//! 127.0.0.1. Exit codes, the JSON report's shape, the loopback rule.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::util::{self, lossy};

/// `/ok` answers 200, `/mix` answers 500 to every 4th request, `/echo`
/// (POST) answers 200 for a JSON body and 415 for anything else.
async fn server() -> String {
    let mix = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/mix",
            get(move || {
                let n = mix.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n % 4 {
                        3 => StatusCode::INTERNAL_SERVER_ERROR,
                        _ => StatusCode::OK,
                    }
                }
            }),
        )
        .route(
            "/echo",
            post(|headers: axum::http::HeaderMap, body: String| async move {
                let json = headers
                    .get("content-type")
                    .is_some_and(|v| v == "application/json");
                let tagged = headers.get("x-tag").is_some_and(|v| v == "42");
                match (
                    json && tagged,
                    serde_json::from_str::<serde_json::Value>(&body),
                ) {
                    (true, Ok(_)) => StatusCode::OK,
                    _ => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn keel(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        util::keel(Path::new("."), &args)
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_has_top_level_metrics_and_slo_verdicts() {
    let base = server().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("loadtest.json");
    let url = format!("{base}/ok");
    let output = keel(args(&[
        "loadtest",
        &url,
        "--requests",
        "200",
        "-c",
        "4",
        "--p99-ms",
        "60000",
        "--max-error-rate",
        "0",
        "--output",
        out.to_str().unwrap(),
        "--json",
    ]))
    .await;
    assert!(output.status.success(), "{}", lossy(&output.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(printed, written);
    for key in [
        "rps",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "error_rate",
        "duration_s",
    ] {
        assert!(written[key].is_number(), "{key} in {written}");
    }
    assert_eq!(written["requests"], 200);
    assert_eq!(written["ok"], 200);
    assert_eq!(written["errors"], 0);
    assert_eq!(written["pass"], true);
    assert_eq!(written["mode"], "closed-loop");
    assert_eq!(written["method"], "GET");
    assert_eq!(written["status_codes"]["200"], 200);
    let slo = written["slo"].as_array().unwrap();
    assert_eq!(slo.len(), 2);
    assert_eq!(slo[0]["metric"], "p99_ms");
    assert_eq!(slo[1]["metric"], "error_rate");
    assert!(slo.iter().all(|c| c["pass"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_violation_exits_1_and_prints_the_verdict() {
    let base = server().await;
    let url = format!("{base}/mix");
    // 100 requests of which exactly 25 fail: a 1 % objective fails, 30 % passes.
    for (limit, code, verdict) in [("0.01", 1, "FAIL"), ("0.3", 0, "pass")] {
        let output = keel(args(&[
            "loadtest",
            &url,
            "-n",
            "100",
            "--max-error-rate",
            limit,
        ]))
        .await;
        assert_eq!(
            output.status.code(),
            Some(code),
            "{}",
            lossy(&output.stderr)
        );
        let table = lossy(&output.stdout);
        let line = format!("SLO error_rate <= {limit}: {verdict}");
        assert!(table.contains(&line), "{line} in table:\n{table}");
        assert!(table.contains("5xx: 25"), "table:\n{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_post_with_body_and_headers() {
    let base = server().await;
    let url = format!("{base}/echo");
    let output = keel(args(&[
        "loadtest",
        &url,
        "--rps",
        "400",
        "-n",
        "40",
        "--body-json",
        r#"{"inputs": [[1, 2, 3]]}"#,
        "-H",
        "X-Tag: 42",
        "--json",
    ]))
    .await;
    assert!(output.status.success(), "{}", lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["mode"], "open-loop");
    assert_eq!(report["method"], "POST");
    assert_eq!(report["ok"], 40, "{report}");

    let output = keel(args(&[
        "loadtest",
        &url,
        "--body-json",
        "{not json",
        "-n",
        "1",
    ]))
    .await;
    assert!(!output.status.success());
    assert!(lossy(&output.stderr).contains("--body-json is not valid JSON"));
}

#[tokio::test]
async fn remote_targets_are_refused() {
    let output = keel(args(&["loadtest", "http://192.0.2.1/", "-n", "1"])).await;
    assert!(!output.status.success());
    let stderr = lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}

#[test]
fn every_duration_flag_needs_a_unit() {
    // A bare number was seconds for `keel loadtest` and milliseconds for
    // `keel monitor --window`; now it is refused everywhere, naming the form.
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["loadtest", "http://127.0.0.1:9/", "--duration", "10"][..],
        &["serve", ".", "--timeout", "30000"][..],
        &["serve", ".", "--log-flush-interval", "500"][..],
        &["monitor", "watch", "--model", "m", "--interval", "60"][..],
        &["monitor", "report", "--model", "m", "--window", "3600000"][..],
    ] {
        let output = util::keel(dir.path(), args);
        let stderr = lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "keel {args:?}: {stderr}");
        assert!(
            stderr.contains("has no unit (expected a duration with a unit, such as 250ms"),
            "keel {args:?}: {stderr}"
        );
    }
}
