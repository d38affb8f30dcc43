//! The main job: `keel quickstart` tells Bob's whole story, and what it claims
//! is checked in the metadata store it leaves behind.

use serde_json::Value;

use crate::util;

#[test]
fn quickstart_closes_the_level_2_loop() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let output = util::command(dir.path())
        .arg("quickstart")
        .arg(&project)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    // The story's own record: traffic kept flowing through the hot swap.
    let summary: Value =
        serde_json::from_slice(&std::fs::read(project.join("quickstart.json")).unwrap()).unwrap();
    assert_eq!(summary["succeeded"], true, "{summary}");
    assert_eq!(summary["swap"]["failed"], 0, "{summary}");
    assert_eq!(summary["swap"]["swapped"], true, "{summary}");
    assert!(
        stdout.contains("hot-swapped to v2 with 0 failed requests among"),
        "{stdout}"
    );
    assert!(summary["swap"]["ok"].as_u64().unwrap() > 0, "{summary}");

    // The monitor named the shifted inputs and wrote its HTML report.
    let report: Value =
        serde_json::from_slice(&std::fs::read(project.join("reports/monitor.json")).unwrap())
            .unwrap();
    let drifted: Vec<&str> = report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["drifted"] == true)
        .filter_map(|c| c["column"].as_str())
        .collect();
    for shifted in ["credit_score", "debt_to_income"] {
        assert!(drifted.contains(&shifted), "{shifted} not in {drifted:?}");
    }
    let html = std::fs::read_to_string(project.join("reports/monitor.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("credit_score"));

    // The registry: two versions, production on the second, moved because of the drift verdict.
    let store_uri = format!("sqlite:///{}", project.join(".keel/keel.db").display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = keel_store::Store::open(keel_store::StoreConfig::new(&store_uri))
            .await
            .unwrap();
        let first = store.get_model_version("risk", 1).await.unwrap();
        let second = store.get_model_version("risk", 2).await.unwrap();
        assert_eq!((first.version, second.version), (1, 2));
        let production = store
            .get_model_version_by_alias("risk", "production")
            .await
            .unwrap();
        assert_eq!(production.version, 2);
        let audit = store.registry_audit(Some("risk"), 100).await.unwrap();
        let moved = audit
            .iter()
            .find(|e| e.action == "set_alias" && e.to_version == Some(2))
            .unwrap_or_else(|| panic!("no alias move to v2 in {audit:?}"));
        let cause: Value = serde_json::from_str(&moved.cause)
            .unwrap_or_else(|e| panic!("cause {:?} is not the verdict: {e}", moved.cause));
        assert_eq!(cause["trigger"], "drift");
        let named: Vec<&str> = cause["drifted"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["column"].as_str())
            .collect();
        assert!(named.contains(&"credit_score"), "{named:?}");
        // The watcher recorded its verdict through the server.
        let verdicts = store.monitor_verdicts(Some("risk"), 10).await.unwrap();
        let verdict = verdicts.first().expect("a monitor verdict recorded");
        assert!(verdict.drifted && verdict.rows > 0, "{verdict:?}");
        assert!(
            verdict.verdict.contains("credit_score"),
            "{}",
            verdict.verdict
        );
        // It carries what the monitoring page draws: the drifted feature's
        // histogram (shares of reference and current) and the windows read.
        let summary: Value = serde_json::from_str(&verdict.verdict).unwrap();
        let credit = summary["features"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["column"] == "credit_score"))
            .unwrap_or_else(|| panic!("no credit_score feature in {summary}"));
        assert_eq!(credit["drifted"], true, "{credit}");
        assert!(
            credit["bins"].as_array().is_some_and(|b| b.len() >= 2),
            "{credit}"
        );
        assert!(
            summary["windows"].as_array().is_some_and(|w| !w.is_empty()),
            "{summary}"
        );
        // The pipeline run behind v2 has its lineage: git commit, stages, datasets.
        let run_id = second.run_id.clone().unwrap();
        let run = store.get_run(&run_id).await.unwrap();
        assert!(run.git_commit().is_some_and(|c| c.len() == 40), "{run:?}");
        store.close().await;
    });

    // A second run into the same, now non-empty folder is refused with a clear message.
    let again = util::command(dir.path())
        .arg("quickstart")
        .arg(&project)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

/// With no market change the monitor must find no drift: the summary says so
/// instead of telling the success story, nothing is retrained, and the
/// command exits non-zero.
#[test]
fn quickstart_without_a_market_change_reports_the_missing_drift_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let output = util::command(dir.path())
        .args(["quickstart", "--quiet", "--market-shift", "0"])
        .arg(&project)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("the story did NOT complete"), "{stdout}");
    assert!(stdout.contains("found no drift"), "{stdout}");
    assert!(!stdout.contains("hot-swapped"), "{stdout}");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(project.join("quickstart.json")).unwrap()).unwrap();
    assert_eq!(summary["succeeded"], false, "{summary}");
    assert_eq!(summary["outcome"]["retrain"], Value::Null, "{summary}");
    assert_eq!(summary["drifted"], serde_json::json!([]), "{summary}");
}
