//! keel-loadtest against a small axum server on 127.0.0.1: exact counts,
//! error kinds, open and closed loop, bodies, SLO verdicts. No assertion
//! depends on how fast anything runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use keel_loadtest::{Config, ErrorKinds, Load, LoadtestError, Method, Progress, Report, Slo};

#[derive(Default)]
struct Hits {
    all: AtomicU64,
    mix: AtomicU64,
}

/// Serves: `/ok` (200 "ok"), `/mix` (every 4th hit a 500), `/slow` (2 s),
/// `/missing` (404), `/echo` (POST: the body's length), `/close` (200 with
/// `Connection: close`). Returns the base URL and the hit counters.
async fn server() -> (String, Arc<Hits>) {
    let hits = Arc::new(Hits::default());
    fn count(hits: &Hits) {
        hits.all.fetch_add(1, Ordering::SeqCst);
    }
    let app = Router::new()
        .route(
            "/ok",
            get(|State(h): State<Arc<Hits>>| async move {
                count(&h);
                "ok"
            }),
        )
        .route(
            "/mix",
            get(|State(h): State<Arc<Hits>>| async move {
                count(&h);
                match h.mix.fetch_add(1, Ordering::SeqCst) % 4 {
                    3 => (StatusCode::INTERNAL_SERVER_ERROR, "boom"),
                    _ => (StatusCode::OK, "fine"),
                }
            }),
        )
        .route(
            "/slow",
            get(|State(h): State<Arc<Hits>>| async move {
                count(&h);
                tokio::time::sleep(Duration::from_secs(2)).await;
                "late"
            }),
        )
        .route(
            "/missing",
            get(|State(h): State<Arc<Hits>>| async move {
                count(&h);
                StatusCode::NOT_FOUND
            }),
        )
        .route(
            "/echo",
            post(
                |State(h): State<Arc<Hits>>, body: axum::body::Bytes| async move {
                    count(&h);
                    body.len().to_string()
                },
            ),
        )
        .route(
            "/close",
            get(|State(h): State<Arc<Hits>>| async move {
                count(&h);
                ([(header::CONNECTION, "close")], "bye").into_response()
            }),
        )
        .with_state(Arc::clone(&hits));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

fn config(url: String, requests: u64) -> Config {
    let mut config = Config::new(url);
    config.duration = None;
    config.requests = Some(requests);
    config.connections = 4;
    config
}

async fn run(config: &Config) -> Report {
    keel_loadtest::run(config, Arc::new(Progress::default()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_counts_exactly() {
    let (base, hits) = server().await;
    let progress = Arc::new(Progress::default());
    let report = keel_loadtest::run(&config(format!("{base}/ok"), 500), Arc::clone(&progress))
        .await
        .unwrap();
    assert_eq!(report.mode, "closed-loop");
    assert_eq!((report.requests, report.ok, report.errors), (500, 500, 0));
    assert_eq!(report.status_codes.get(&200), Some(&500));
    assert_eq!(hits.all.load(Ordering::SeqCst), 500);
    assert_eq!(report.bytes_received, 500 * 2);
    assert_eq!(progress.completed(), 500);
    assert_eq!(progress.errors(), 0);
    let (p50, p99, max) = (
        report.p50_ms.unwrap(),
        report.p99_ms.unwrap(),
        report.max_ms.unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report:?}");
    assert!(report.rps > 0.0 && report.duration_s > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_error_classes_are_counted_and_gate_the_slo() {
    let (base, _) = server().await;
    let mut report = run(&config(format!("{base}/mix"), 400)).await;
    assert_eq!((report.requests, report.ok, report.errors), (400, 300, 100));
    assert_eq!(
        report.error_kinds,
        ErrorKinds {
            http_5xx: 100,
            ..ErrorKinds::default()
        }
    );
    assert_eq!(report.error_rate, 0.25);
    report.apply_slo(&Slo {
        max_error_rate: Some(0.3),
        ..Slo::default()
    });
    assert!(report.pass);
    report.apply_slo(&Slo {
        max_error_rate: Some(0.2),
        ..Slo::default()
    });
    assert!(!report.pass);

    let report = run(&config(format!("{base}/missing"), 10)).await;
    assert_eq!(report.error_kinds.http_4xx, 10);
    assert_eq!(report.status_codes.get(&404), Some(&10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_counted_and_have_no_latency() {
    let (base, _) = server().await;
    let mut config = config(format!("{base}/slow"), 4);
    config.connections = 2;
    config.timeout = Duration::from_millis(100);
    let mut report = run(&config).await;
    assert_eq!(report.requests, 4);
    assert_eq!(report.error_kinds.timeout, 4);
    assert_eq!(report.p99_ms, None);
    report.apply_slo(&Slo {
        p99_ms: Some(1000.0),
        ..Slo::default()
    });
    assert!(!report.pass, "no response at all cannot pass a latency SLO");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_connect_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let report = run(&config(format!("http://{addr}/"), 5)).await;
    assert_eq!(report.requests, 5);
    assert_eq!(report.error_kinds.connect, 5);
    assert_eq!(report.error_rate, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_counts_exactly() {
    let (base, hits) = server().await;
    let mut config = config(format!("{base}/ok"), 50);
    config.load = Load::Open { rps: 500.0 };
    let report = run(&config).await;
    assert_eq!(report.mode, "open-loop");
    assert_eq!(report.target_rps, Some(500.0));
    assert_eq!((report.requests, report.ok), (50, 50));
    assert_eq!(hits.all.load(Ordering::SeqCst), 50);

    // Bounded by duration: 100 req/s for 0.5 s schedules exactly 50
    // requests; each is either sent (and answered) or counted as unsent.
    let mut config = config.clone();
    config.requests = None;
    config.duration = Some(Duration::from_millis(500));
    config.load = Load::Open { rps: 100.0 };
    let report = run(&config).await;
    assert_eq!(report.requests, 50, "{report:?}");
    assert_eq!(report.ok + report.error_kinds.unsent, 50, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_requests_are_sent_but_not_counted() {
    let (base, hits) = server().await;
    let mut config = config(format!("{base}/ok"), 100);
    config.warmup = Duration::from_millis(200);
    let report = run(&config).await;
    assert_eq!(report.requests, 100);
    assert!(hits.all.load(Ordering::SeqCst) > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_headers_and_closed_connections() {
    let (base, _) = server().await;
    let body = r#"{"inputs": [[1.0, 2.0, 3.0]]}"#;
    let mut config = config(format!("{base}/echo"), 30);
    config.method = Method::POST;
    config.body = body.into();
    config.content_type = Some("application/json".into());
    config.headers = vec![("X-Request-Source".into(), "test".into())];
    let report = run(&config).await;
    assert_eq!(report.ok, 30);
    assert_eq!(report.bytes_sent, 30 * body.len() as u64);
    // The server answers with the length it received.
    assert_eq!(
        report.bytes_received,
        30 * body.len().to_string().len() as u64
    );

    // The server closes every connection after one response: the client
    // reconnects and nothing is counted as an error.
    let report = run(&config_for_close(&base)).await;
    assert_eq!((report.ok, report.errors), (20, 0), "{report:?}");
}

fn config_for_close(base: &str) -> Config {
    config(format!("{base}/close"), 20)
}

#[tokio::test]
async fn remote_targets_are_refused_before_any_load() {
    let config = config("http://192.0.2.1:80/".into(), 1);
    match keel_loadtest::run(&config, Arc::new(Progress::default())).await {
        Err(error @ LoadtestError::NotLoopback { .. }) => {
            assert!(error.to_string().contains("--allow-remote"), "{error}");
        }
        other => panic!("expected NotLoopback, got {other:?}"),
    }
}

#[tokio::test]
async fn a_run_needs_a_bound_and_sane_options() {
    for (change, needle) in [
        (
            (|c: &mut Config| {
                c.duration = None;
                c.requests = None;
            }) as fn(&mut Config),
            "--duration",
        ),
        (|c: &mut Config| c.connections = 0, "--connections"),
        (|c: &mut Config| c.load = Load::Open { rps: 0.0 }, "--rps"),
        (
            |c: &mut Config| c.headers = vec![("bad header".into(), "x".into())],
            "bad header",
        ),
    ] {
        let mut config = config("http://127.0.0.1:9/".into(), 1);
        change(&mut config);
        let error = keel_loadtest::run(&config, Arc::new(Progress::default()))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(needle), "{error}");
    }
}
