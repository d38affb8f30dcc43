//! End-to-end tests of `keel monitor` and of the profile `keel train`
//! writes, driving the real binary in a temporary folder.

use crate::util::{keel, run};

#[test]
fn train_writes_a_profile_and_report_flags_covariate_shift() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let generate = |seed: &str, shift: &str, out: &str| {
        run(
            root,
            &[
                "generate",
                "portfolio",
                "--rows",
                "4000",
                "--seed",
                seed,
                "--covariate-shift",
                shift,
                "--out",
                out,
            ],
            0,
        );
    };
    generate("1", "0", "train.csv");
    generate("2", "0", "same.csv");
    generate("3", "1.0", "shifted.csv");
    run(
        root,
        &[
            "train",
            "--algo",
            "logistic",
            "--data",
            "train.csv",
            "--target",
            "default",
            "--out",
            "model",
        ],
        0,
    );
    let profile: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("model/profile.json")).expect("profile.json"),
    )
    .expect("JSON");
    let names: Vec<&str> = profile["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"default")
            && names.contains(&"output.label")
            && names.contains(&"output.score"),
        "{names:?}"
    );

    // Same distribution: exit 0. Against the training profile (its output
    // columns are ignored when the data has none).
    let same = run(
        root,
        &[
            "monitor",
            "report",
            "--reference",
            "model/profile.json",
            "--current",
            "same.csv",
        ],
        0,
    );
    assert!(same.contains("dataset: no drift"), "{same}");
    // Shifted covariates: exit 1, JSON names the drifted columns.
    let json = run(
        root,
        &[
            "monitor",
            "report",
            "--reference",
            "train.csv",
            "--current",
            "shifted.csv",
            "--format",
            "json",
        ],
        1,
    );
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    let drifted: Vec<&str> = report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["drifted"].as_bool() == Some(true))
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    assert!(!drifted.is_empty());
    for field in [
        "column",
        "kind",
        "method",
        "statistic",
        "effect_size",
        "p_value",
        "threshold",
        "drifted",
    ] {
        assert!(report["columns"][0].get(field).is_some(), "missing {field}");
    }
    assert_eq!(report["dataset"]["drifted"], true);
    // HTML: self-contained.
    run(
        root,
        &[
            "monitor",
            "report",
            "--reference",
            "train.csv",
            "--current",
            "shifted.csv",
            "--format",
            "html",
            "--output",
            "r.html",
        ],
        1,
    );
    let html = std::fs::read_to_string(root.join("r.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("src=\"http") && !html.contains("<script src"));
    // Profiles merge: a profile built against the reference compares like the file.
    run(
        root,
        &[
            "monitor",
            "profile",
            "shifted.csv",
            "--reference-profile",
            "model/profile.json",
            "--output",
            "cur.json",
        ],
        0,
    );
    run(
        root,
        &[
            "monitor",
            "report",
            "--reference",
            "model/profile.json",
            "--current",
            "cur.json",
        ],
        1,
    );
    // Other columns than the reference: an error naming them.
    std::fs::write(root.join("bad.csv"), "a,b\n1,2\n").unwrap();
    let output = keel(
        root,
        &[
            "monitor",
            "report",
            "--reference",
            "train.csv",
            "--current",
            "bad.csv",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("schema mismatch") && stderr.contains("unexpected columns: a, b"),
        "{stderr}"
    );
}

#[test]
fn watch_posts_alerts_to_a_webhook() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    run(
        root,
        &[
            "generate",
            "portfolio",
            "--rows",
            "500",
            "--out",
            "train.csv",
        ],
        0,
    );
    run(
        root,
        &[
            "train",
            "--algo",
            "logistic",
            "--data",
            "train.csv",
            "--target",
            "default",
            "--out",
            "model",
        ],
        0,
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        // Read until the JSON body is complete (it ends with '}').
        while !request.ends_with(b"}") {
            let n = stream.read(&mut buffer).unwrap();
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&request).into_owned()
    });
    // No traffic logged yet: the empty window is a quality finding, which alerts.
    let hook = format!("http://127.0.0.1:{port}/hook");
    let store = format!("sqlite:///{}", root.join("keel.db").display());
    let watch = [
        "monitor",
        "watch",
        "--once",
        "--model",
        "risk@production",
        "--log-dir",
        "logs",
        "--model-dir",
        "model",
        "--webhook",
        &hook,
        "--tracking-uri",
        &store,
    ];
    run(root, &watch, 0);
    let request = server.join().unwrap();
    assert!(request.starts_with("POST /hook"), "{request}");
    assert!(
        request.contains("\"status\":\"firing\"") && request.contains("quality:empty_data"),
        "{request}"
    );
    // Restarted, the watcher continues from its recorded verdict: the alert
    // is still active, so nothing is sent again (a webhook is delivered
    // before the watcher exits, so an empty backlog after it means none).
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let output = keel(root, &watch);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("continuing from the last verdict: 1 active alert(s)"),
        "{stderr}"
    );
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "the still-active alert was sent again"
    );
}

#[test]
fn a_typo_in_the_monitor_section_is_an_error_at_its_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::write(root.join("a.csv"), "x\n1\n2\n3\n").unwrap();
    std::fs::write(
        root.join("keel.yaml"),
        "stages:\n  s:\n    cmd: \"true\"\nmonitor:\n  window: 1h\n  drift: {min_efect: 0.2}\n",
    )
    .unwrap();
    // Read by `keel monitor` (it was silently ignored before) and by `keel run`.
    for args in [
        &[
            "monitor",
            "report",
            "--reference",
            "a.csv",
            "--current",
            "a.csv",
        ][..],
        &["run", "--no-track"][..],
    ] {
        let output = keel(root, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "keel {args:?} should fail");
        assert!(
            stderr.contains("keel.yaml:6:11: unknown field `min_efect`"),
            "keel {args:?}: {stderr}"
        );
    }
}

#[test]
fn report_segment_by_finds_the_one_region_that_moved() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    // Four regions, income spread evenly over [40 000, 60 000) in each; in
    // the current data region r1's income is 8 000 higher.
    let write = |name: &str, offset: usize, shift: f64| {
        let mut text = String::from("region,income,age\n");
        for i in 0..4 * 1000 {
            let region = i % 4;
            let u = ((i / 4 * 7919 + offset) % 1000) as f64 / 1000.0;
            let income = 40_000.0 + 20_000.0 * u + if region == 1 { shift } else { 0.0 };
            let age = 20 + (i * 31 + offset) % 50;
            text.push_str(&format!("r{region},{income},{age}\n"));
        }
        std::fs::write(root.join(name), text).expect("write");
    };
    write("reference.csv", 0, 0.0);
    write("current.csv", 3, 8_000.0);
    let segmented = [
        "monitor",
        "report",
        "--reference",
        "reference.csv",
        "--current",
        "current.csv",
        "--segment-by",
        "region",
    ];
    let json = run(root, &[&segmented[..], &["--format", "json"]].concat(), 1);
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    let segments = &report["segments"];
    assert_eq!(segments["tested"], 4, "{segments}");
    assert_eq!(segments["correction"], "bonferroni");
    let drifted: Vec<&str> = segments["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .filter(|s| s["drifted"] == true)
        .map(|s| s["value"].as_str().expect("value"))
        .collect();
    assert_eq!(drifted, vec!["r1"], "{segments}");
    let table = run(root, &segmented, 1);
    assert!(
        table.contains("segments by region: 4 tested, 1 drifted"),
        "{table}"
    );
    // Profiles have no rows to split.
    run(
        root,
        &[
            "monitor",
            "profile",
            "reference.csv",
            "--output",
            "ref.json",
        ],
        0,
    );
    let output = keel(
        root,
        &[
            "monitor",
            "report",
            "--reference",
            "ref.json",
            "--current",
            "current.csv",
            "--segment-by",
            "region",
        ],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--segment-by needs the data files"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
