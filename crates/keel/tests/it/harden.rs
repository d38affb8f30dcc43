//! Fault injection against the real `keel server` (loopback only, bounded):
//! slow-loris connections are closed by the header timeout while normal
//! requests keep succeeding, and concurrent maximum-size bodies stay within
//! the body budget (peak RSS from /proc under a documented bound).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::util::Serve;

fn server(dir: &std::path::Path, extra: &[&str]) -> Serve {
    let store = format!("sqlite:///{}", dir.join("keel.db").display());
    let artifacts = dir.join("artifacts").display().to_string();
    let mut args = vec![
        "server",
        "--backend-store-uri",
        &store,
        "--artifacts-destination",
        &artifacts,
    ];
    args.extend_from_slice(extra);
    Serve::spawn(&args)
}

/// Sends one request on a fresh connection and returns the status line.
fn status_line(address: &str, head: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let request = format!(
        "{head}\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // The server may answer (413, 503) and close before the whole body is sent.
    let _ = stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body));
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn slow_loris_connections_are_closed_by_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(
        dir.path(),
        &["--header-timeout", "1s", "--max-connections", "64"],
    );
    // 40 connections that send half a request head and stall.
    let mut stalled: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut stream = TcpStream::connect(&server.address).unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            stream
        })
        .collect();
    // Normal requests keep succeeding meanwhile.
    for _ in 0..20 {
        let line = status_line(&server.address, "GET /health HTTP/1.1", b"");
        assert!(line.contains("200"), "{line}");
    }
    // Every stalled connection is closed (EOF) well within 10 s of a 1 s timeout.
    for stream in &mut stalled {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buffer = [0u8; 64];
        let read = stream.read(&mut buffer);
        assert!(
            matches!(read, Ok(0))
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "a stalled connection was not closed: {read:?}"
        );
    }
    let line = status_line(&server.address, "GET /health HTTP/1.1", b"");
    assert!(line.contains("200"), "{line}");
    server.stop();
}

/// Peak resident memory of a process, from /proc (kB).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn concurrent_maximum_size_bodies_stay_within_the_body_budget() {
    let dir = tempfile::tempdir().unwrap();
    // A 64 MiB budget: two 27 MB bodies at once; the rest get 503.
    let server = server(dir.path(), &["--body-budget-mib", "64"]);
    let before = peak_rss_kb(server.child.id());
    let value = "v".repeat(27 * 1024 * 1024);
    let body = format!(
        r#"{{"run_id": "{}", "params": [{{"key": "k", "value": "{value}"}}]}}"#,
        "0".repeat(32)
    );
    let body = std::sync::Arc::new(body.into_bytes());
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (address, body) = (server.address.clone(), body.clone());
            std::thread::spawn(move || {
                status_line(
                    &address,
                    "POST /api/2.0/mlflow/runs/log-batch HTTP/1.1",
                    &body,
                )
            })
        })
        .collect();
    let lines: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let peak = peak_rss_kb(server.child.id());
    // Each request is refused: 503 beyond the budget, else 400 (the value is
    // over MLflow's length limit); never a 5xx other than 503.
    assert!(lines.iter().any(|l| l.contains(" 503 ")), "{lines:?}");
    for line in &lines {
        assert!(
            line.contains(" 503 ") || line.contains(" 400 ") || line.is_empty(),
            "{line}"
        );
    }
    // The documented bound: peak RSS under start + 3 x the budget (the body,
    // its parse and the allocator's slack), where 16 unbounded bodies took GBs.
    let bound = before + 3 * 64 * 1024;
    eprintln!("peak RSS {} MB (start {} MB)", peak / 1024, before / 1024);
    assert!(peak < bound, "peak RSS {peak} kB over the bound {bound} kB");
    let line = status_line(&server.address, "GET /health HTTP/1.1", b"");
    assert!(line.contains("200"), "{line}");
    server.stop();
}
