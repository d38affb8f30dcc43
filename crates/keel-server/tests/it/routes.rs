//! Every route of the router: one success and one error each, the error
//! checked for its status and MLflow's envelope (`error_code`, `message`).
//! Each test walks its area's successes in order, then the refusals as a
//! table.

use axum::body::Body;
use serde_json::{Value, json};

use crate::util::{Api, Refusal};

const NO_RUN: &str = "0123456789abcdef0123456789abcdef";
const NONE: Value = Value::Null;

/// `/api/2.0/mlflow/PATH`.
fn mlflow(path: &str) -> String {
    format!("/api/2.0/mlflow/{path}")
}

/// `/api/2.0/keel/registry/PATH`.
fn keel(path: &str) -> String {
    format!("/api/2.0/keel/registry/{path}")
}

/// `/api/2.0/mlflow-artifacts/artifacts/PATH`.
fn proxy(path: &str) -> String {
    format!("/api/2.0/mlflow-artifacts/artifacts{path}")
}

/// A 400 `INVALID_PARAMETER_VALUE`.
fn bad(method: &str, uri: String, body: Value) -> Refusal<'_> {
    (method, uri, body, 400, "INVALID_PARAMETER_VALUE")
}

/// A 404 `RESOURCE_DOES_NOT_EXIST`.
fn missing(method: &str, uri: String, body: Value) -> Refusal<'_> {
    (method, uri, body, 404, "RESOURCE_DOES_NOT_EXIST")
}

async fn experiment(api: &Api, name: &str) -> String {
    let created = api
        .ok("POST", &mlflow("experiments/create"), json!({"name": name}))
        .await;
    created["experiment_id"].as_str().unwrap().to_string()
}

async fn run(api: &Api, experiment_id: &str) -> String {
    let body = json!({"experiment_id": experiment_id, "start_time": 1});
    let created = api.ok("POST", &mlflow("runs/create"), body).await;
    created["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The number of items in `list` of an answer.
fn count(answer: &Value, list: &str) -> usize {
    answer[list].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn experiments() {
    let api = Api::new().await;
    let id = experiment(&api, "fraud").await;
    let got = api
        .ok(
            "GET",
            &mlflow(&format!("experiments/get?experiment_id={id}")),
            NONE,
        )
        .await;
    assert_eq!(got["experiment"]["name"], "fraud");
    let uri = mlflow("experiments/get-by-name?experiment_name=fraud");
    let got = api.ok("GET", &uri, NONE).await;
    assert_eq!(got["experiment"]["experiment_id"], id.as_str());
    let body = json!({"filter": "name = 'fraud'"});
    let found = api.ok("POST", &mlflow("experiments/search"), body).await;
    assert_eq!(count(&found, "experiments"), 1, "{found}");
    let uri = mlflow("experiments/search?max_results=10");
    let found = api.ok("GET", &uri, NONE).await;
    assert_eq!(count(&found, "experiments"), 2, "{found}");
    for (path, body) in [
        (
            "update",
            json!({"experiment_id": id, "new_name": "fraud-2"}),
        ),
        (
            "set-experiment-tag",
            json!({"experiment_id": id, "key": "team", "value": "risk"}),
        ),
        (
            "delete-experiment-tag",
            json!({"experiment_id": id, "key": "team"}),
        ),
        ("delete", json!({"experiment_id": id})),
        ("restore", json!({"experiment_id": id})),
    ] {
        api.ok("POST", &mlflow(&format!("experiments/{path}")), body)
            .await;
    }
    api.refuses(&[
        bad("POST", mlflow("experiments/create"), json!({})),
        missing("GET", mlflow("experiments/get?experiment_id=999"), NONE),
        missing(
            "GET",
            mlflow("experiments/get-by-name?experiment_name=nope"),
            NONE,
        ),
        bad(
            "POST",
            mlflow("experiments/search"),
            json!({"filter": "name =="}),
        ),
        bad("GET", mlflow("experiments/search?max_results=abc"), NONE),
        bad(
            "POST",
            mlflow("experiments/update"),
            json!({"new_name": "x"}),
        ),
        bad(
            "POST",
            mlflow("experiments/set-experiment-tag"),
            json!({"experiment_id": id}),
        ),
        missing(
            "POST",
            mlflow("experiments/delete-experiment-tag"),
            json!({"experiment_id": "999", "key": "team"}),
        ),
        missing(
            "POST",
            mlflow("experiments/delete"),
            json!({"experiment_id": "999"}),
        ),
        bad("POST", mlflow("experiments/restore"), json!({})),
    ])
    .await;
}

#[tokio::test]
async fn runs_metrics_params_tags_and_inputs() {
    let api = Api::new().await;
    let experiment_id = experiment(&api, "runs").await;
    let id = run(&api, &experiment_id).await;
    let got = api
        .ok("GET", &mlflow(&format!("runs/get?run_id={id}")), NONE)
        .await;
    assert_eq!(got["run"]["info"]["run_id"], id.as_str());
    let dataset =
        json!({"name": "train", "digest": "b3:ab", "source_type": "local", "source": "d.csv"});
    for (path, body) in [
        (
            "log-metric",
            json!({"run_id": id, "key": "loss", "value": 0.5, "timestamp": 10, "step": 1}),
        ),
        (
            "log-parameter",
            json!({"run_id": id, "key": "lr", "value": "0.1"}),
        ),
        (
            "log-batch",
            json!({"run_id": id, "metrics": [{"key": "acc", "value": 0.9, "timestamp": 11, "step": 0}],
                   "params": [{"key": "depth", "value": "3"}], "tags": [{"key": "stage", "value": "dev"}]}),
        ),
        (
            "set-tag",
            json!({"run_id": id, "key": "owner", "value": "bob"}),
        ),
        ("delete-tag", json!({"run_id": id, "key": "owner"})),
        (
            "log-inputs",
            json!({"run_id": id, "datasets": [{"dataset": dataset}]}),
        ),
        (
            "log-model",
            json!({"run_id": id, "model_json": "{\"artifact_path\": \"model\", \"flavors\": {}}"}),
        ),
    ] {
        api.ok("POST", &mlflow(&format!("runs/{path}")), body).await;
    }
    let uri = mlflow(&format!("metrics/get-history?run_id={id}&metric_key=loss"));
    let history = api.ok("GET", &uri, NONE).await;
    assert_eq!(history["metrics"][0]["value"], 0.5, "{history}");
    let uri = mlflow(&format!(
        "metrics/get-history-bulk-interval?run_ids={id}&metric_key=loss&max_results=10"
    ));
    let bulk = api.ok("GET", &uri, NONE).await;
    assert_eq!(bulk["metrics"][0]["run_id"], id.as_str(), "{bulk}");
    let body = json!({"experiment_ids": [experiment_id], "filter": "metrics.acc > 0.5"});
    let found = api.ok("POST", &mlflow("runs/search"), body).await;
    assert_eq!(count(&found, "runs"), 1, "{found}");
    // keel's lineage of the run: params, datasets, stages from keel.stage.* tags.
    let tags = json!({"run_id": id, "tags": [{"key": "keel.stage.train", "value": "ran"},
        {"key": "mlflow.source.git.commit", "value": "abc123"}],
        "metrics": [{"key": "stage.train.seconds", "value": 1.5, "timestamp": 12, "step": 0}]});
    api.ok("POST", &mlflow("runs/log-batch"), tags).await;
    let lineage = api
        .ok(
            "GET",
            &format!("/api/2.0/keel/runs/lineage?run_id={id}"),
            NONE,
        )
        .await;
    assert_eq!(lineage["git_commit"], "abc123", "{lineage}");
    assert_eq!(lineage["stages"][0]["name"], "train", "{lineage}");
    assert_eq!(lineage["stages"][0]["seconds"], 1.5, "{lineage}");
    assert!(
        lineage["params"].to_string().contains("\"lr\""),
        "{lineage}"
    );
    assert!(
        lineage["datasets"]
            .as_array()
            .is_some_and(|d| !d.is_empty()),
        "{lineage}"
    );
    // The run's artifacts through the tracking API (an empty root lists nothing).
    let uri = mlflow(&format!("artifacts/list?run_id={id}"));
    let listed = api.ok("GET", &uri, NONE).await;
    assert_eq!(count(&listed, "files"), 0, "{listed}");
    for (path, body) in [
        (
            "update",
            json!({"run_id": id, "status": "FINISHED", "end_time": 20}),
        ),
        ("delete", json!({"run_id": id})),
        ("restore", json!({"run_id": id})),
    ] {
        api.ok("POST", &mlflow(&format!("runs/{path}")), body).await;
    }
    api.refuses(&[
        missing(
            "POST",
            mlflow("runs/create"),
            json!({"experiment_id": "999"}),
        ),
        missing("GET", mlflow(&format!("runs/get?run_id={NO_RUN}")), NONE),
        bad(
            "POST",
            mlflow("runs/log-metric"),
            json!({"run_id": id, "key": "loss", "value": "much", "timestamp": 10}),
        ),
        // Params are immutable.
        bad(
            "POST",
            mlflow("runs/log-parameter"),
            json!({"run_id": id, "key": "lr", "value": "0.2"}),
        ),
        bad(
            "POST",
            mlflow("runs/log-batch"),
            json!({"run_id": id, "metrics": [{"key": "acc"}]}),
        ),
        missing(
            "POST",
            mlflow("runs/set-tag"),
            json!({"run_id": NO_RUN, "key": "owner", "value": "bob"}),
        ),
        bad("POST", mlflow("runs/delete-tag"), json!({"run_id": id})),
        bad(
            "POST",
            mlflow("runs/log-inputs"),
            json!({"run_id": id, "datasets": [{"dataset": {"digest": "b3:ab"}}]}),
        ),
        bad("POST", mlflow("runs/log-model"), json!({"run_id": id})),
        bad(
            "GET",
            mlflow(&format!("metrics/get-history?run_id={id}")),
            NONE,
        ),
        bad(
            "GET",
            mlflow(&format!("metrics/get-history-bulk-interval?run_ids={id}")),
            NONE,
        ),
        bad(
            "POST",
            mlflow("runs/search"),
            json!({"experiment_ids": [experiment_id], "filter": "metrics.acc >"}),
        ),
        missing(
            "GET",
            mlflow(&format!("artifacts/list?run_id={NO_RUN}")),
            NONE,
        ),
        bad(
            "POST",
            mlflow("runs/update"),
            json!({"run_id": id, "status": "DONE"}),
        ),
        missing("POST", mlflow("runs/delete"), json!({"run_id": NO_RUN})),
        bad("POST", mlflow("runs/restore"), json!({})),
    ])
    .await;
}

#[tokio::test]
async fn logged_models() {
    let api = Api::new().await;
    let experiment_id = experiment(&api, "models").await;
    let id = run(&api, &experiment_id).await;
    let body = json!({"experiment_id": experiment_id, "name": "m", "source_run_id": id});
    let created = api.ok("POST", &mlflow("logged-models"), body).await;
    let model_id = created["model"]["info"]["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    let model = mlflow(&format!("logged-models/{model_id}"));
    let got = api.ok("GET", &model, NONE).await;
    assert_eq!(got["model"]["info"]["name"], "m", "{got}");
    let tags = json!({"tags": [{"key": "k", "value": "v"}]});
    api.ok("PATCH", &format!("{model}/tags"), tags.clone())
        .await;
    api.ok("DELETE", &format!("{model}/tags/k"), NONE).await;
    let params = json!({"params": [{"key": "depth", "value": "3"}]});
    api.ok("POST", &format!("{model}/params"), params).await;
    let body = json!({"run_id": id, "models": [{"model_id": model_id, "step": 0}]});
    api.ok("POST", &mlflow("runs/outputs"), body).await;
    let body = json!({"experiment_ids": [experiment_id]});
    let found = api.ok("POST", &mlflow("logged-models/search"), body).await;
    assert_eq!(count(&found, "models"), 1, "{found}");
    let body = json!({"model_id": model_id, "status": "LOGGED_MODEL_READY"});
    api.ok("PATCH", &model, body).await;
    api.refuses(&[
        bad("POST", mlflow("logged-models"), json!({"name": "m"})),
        missing("GET", mlflow("logged-models/m-nope"), NONE),
        missing("PATCH", mlflow("logged-models/m-nope/tags"), tags),
        missing("DELETE", mlflow("logged-models/m-nope/tags/k"), NONE),
        bad(
            "POST",
            format!("{model}/params"),
            json!({"params": [{"value": "3"}]}),
        ),
        bad(
            "POST",
            mlflow("runs/outputs"),
            json!({"run_id": id, "models": [{"step": 0}]}),
        ),
        bad(
            "POST",
            mlflow("logged-models/search"),
            json!({"experiment_ids": [experiment_id], "order_by": [{"ascending": true}]}),
        ),
        bad("PATCH", model.clone(), json!({"model_id": model_id})),
        missing("DELETE", mlflow("logged-models/m-nope"), NONE),
    ])
    .await;
    api.ok("DELETE", &model, NONE).await;
}

#[tokio::test]
async fn a_version_in_the_artifact_store_downloads_through_the_proxy() {
    let api = Api::new().await;
    let versions = |path: &str| mlflow(&format!("model-versions/{path}"));
    api.ok(
        "POST",
        &mlflow("registered-models/create"),
        json!({"name": "risk"}),
    )
    .await;
    // Registered by its location under the store (as `keel models register
    // risk "$PWD/…"` does on the server's machine), it is handed to clients
    // as the proxy's URI: a replica without the store's credentials fetches it.
    let source = api.dir().join("artifacts/models/risk-v1");
    let body = json!({"name": "risk", "source": source.display().to_string()});
    api.ok("POST", &versions("create"), body).await;
    let download = api
        .ok(
            "GET",
            &versions("get-download-uri?name=risk&version=1"),
            NONE,
        )
        .await;
    assert_eq!(
        download["artifact_uri"], "mlflow-artifacts:/models/risk-v1",
        "{download}"
    );
}

#[tokio::test]
async fn registry() {
    let api = Api::new().await;
    let experiment_id = experiment(&api, "registry").await;
    let id = run(&api, &experiment_id).await;
    let models = |path: &str| mlflow(&format!("registered-models/{path}"));
    let versions = |path: &str| mlflow(&format!("model-versions/{path}"));

    let body = json!({"name": "risk", "description": "d"});
    api.ok("POST", &models("create"), body).await;
    let got = api.ok("GET", &models("get?name=risk"), NONE).await;
    assert_eq!(got["registered_model"]["name"], "risk");
    let body = json!({"name": "risk", "description": "e"});
    api.ok("PATCH", &models("update"), body).await;
    let body = json!({"name": "risk", "key": "team", "value": "quant"});
    api.ok("POST", &models("set-tag"), body).await;
    let body = json!({"name": "risk", "key": "team"});
    api.ok("DELETE", &models("delete-tag"), body).await;

    let body = json!({"name": "risk", "source": format!("runs:/{id}/model"), "run_id": id});
    let created = api.ok("POST", &versions("create"), body).await;
    assert_eq!(created["model_version"]["version"], "1", "{created}");
    let body = json!({"name": "risk", "source": "mlflow-artifacts:/x"});
    api.ok("POST", &versions("create"), body).await;
    let got = api
        .ok("GET", &versions("get?name=risk&version=1"), NONE)
        .await;
    assert_eq!(got["model_version"]["run_id"], id.as_str());
    let body = json!({"name": "risk", "version": "1", "description": "first"});
    api.ok("PATCH", &versions("update"), body).await;
    let body = json!({"name": "risk", "version": "1", "key": "k", "value": "v"});
    api.ok("POST", &versions("set-tag"), body).await;
    let body = json!({"name": "risk", "version": "1", "key": "k"});
    api.ok("DELETE", &versions("delete-tag"), body).await;
    // A runs:/ source resolves under the run's artifact root.
    let uri = versions("get-download-uri?name=risk&version=1");
    let download = api.ok("GET", &uri, NONE).await;
    let location = download["artifact_uri"].as_str().unwrap_or("");
    assert!(
        location.ends_with(&format!("{id}/artifacts/model")),
        "{download}"
    );
    let body = json!({"name": "risk", "version": "1", "stage": "Staging"});
    api.ok("POST", &versions("transition-stage"), body).await;
    let uri = versions("search?filter=name%3D%27risk%27");
    let found = api.ok("GET", &uri, NONE).await;
    assert_eq!(count(&found, "model_versions"), 2, "{found}");
    let body = json!({"filter": "name LIKE 'ri%'"});
    let found = api.ok("POST", &models("search"), body).await;
    assert_eq!(count(&found, "registered_models"), 1, "{found}");
    let body = json!({"name": "risk", "stages": ["Staging"]});
    let latest = api.ok("POST", &models("get-latest-versions"), body).await;
    assert_eq!(latest["model_versions"][0]["version"], "1", "{latest}");

    // Aliases: MLflow's set, get and delete.
    let body = json!({"name": "risk", "alias": "champion", "version": "2"});
    api.ok("POST", &models("alias"), body).await;
    let uri = models("alias?name=risk&alias=champion");
    let by_alias = api.ok("GET", &uri, NONE).await;
    assert_eq!(by_alias["model_version"]["version"], "2", "{by_alias}");
    let body = json!({"name": "risk", "alias": "champion"});
    api.ok("DELETE", &models("alias"), body).await;

    // keel's registry extras: gate results, promotion (refused without
    // passed gates unless forced), rollback, the audit log, the change feed.
    let gates =
        json!({"name": "risk", "version": "1", "gate_results": {"passed": true, "gates": []}});
    api.ok("POST", &keel("gates"), gates).await;
    let promote = json!({"name": "risk", "version": "1", "alias": "production"});
    api.ok("POST", &keel("promote"), promote).await;
    let ungated = json!({"name": "risk", "version": "2", "alias": "production"});
    api.refuses(&[("POST", keel("promote"), ungated, 400, "INVALID_STATE")])
        .await;
    // No side door: MLflow's set-alias obeys the promotion rule for a
    // protected alias, and leaves the alias where it was.
    let side_door = json!({"name": "risk", "alias": "production", "version": "2"});
    api.refuses(&[("POST", models("alias"), side_door, 400, "INVALID_STATE")])
        .await;
    let held = api
        .ok("GET", &models("alias?name=risk&alias=production"), NONE)
        .await;
    assert_eq!(held["model_version"]["version"], "1", "{held}");
    // The refusal names the rule and the keel command that forces the move;
    // transition-stage to Production obeys the same rule.
    let side_door = json!({"name": "risk", "alias": "production", "version": "2"});
    let (_, refused) = api.call("POST", &models("alias"), side_door).await;
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("protected"), "{refused}");
    assert!(
        message.contains("keel models promote risk 2 --alias production --force --reason"),
        "{refused}"
    );
    let transition = |version: &str| json!({"name": "risk", "version": version, "stage": "Production", "archive_existing_versions": false});
    let uri = "/api/2.0/mlflow/model-versions/transition-stage";
    let (status, refused) = api.call("POST", uri, transition("2")).await;
    assert_eq!(status, 400, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("stage 'Production'"), "{refused}");
    assert!(message.contains("keel models promote risk 2"), "{refused}");
    let moved = api.ok("POST", uri, transition("1")).await;
    assert_eq!(
        moved["model_version"]["current_stage"], "Production",
        "{moved}"
    );
    let forced = json!({"name": "risk", "version": "2", "alias": "production", "force": true, "reason": "approved"});
    api.ok("POST", &keel("promote"), forced).await;
    let body = json!({"name": "risk", "alias": "production"});
    let rolled = api.ok("POST", &keel("rollback"), body).await;
    assert!(rolled.to_string().contains("\"to_version\""), "{rolled}");
    let audit = api.ok("GET", &keel("audit?name=risk"), NONE).await;
    // Monitor verdicts: recorded, read back newest first; bad JSON refused.
    let verdict = json!({"model": "risk", "window_start": 1000, "rows": 50, "drifted": true,
        "verdict": "{\"rule\": \"any column\", \"drifted_columns\": [\"income\"]}"});
    let recorded = api
        .ok("POST", "/api/2.0/keel/monitor/verdicts", verdict)
        .await;
    assert_eq!(recorded["verdict"]["drifted"], true, "{recorded}");
    let listed = api
        .ok("GET", "/api/2.0/keel/monitor/verdicts?model=risk", NONE)
        .await;
    assert_eq!(listed["verdicts"][0]["rows"], 50, "{listed}");
    let not_json = json!({"model": "risk", "rows": 1, "drifted": false, "verdict": "{"});
    api.refuses(&[(
        "POST",
        "/api/2.0/keel/monitor/verdicts".to_string(),
        not_json,
        400,
        "INVALID_PARAMETER_VALUE",
    )])
    .await;
    assert!(audit.to_string().contains("set_alias"), "{audit}");
    let changes = api
        .ok("GET", &keel("changes?since=0&timeout_ms=0"), NONE)
        .await;
    assert!(count(&changes, "changes") > 0, "{changes}");

    api.refuses(&[
        (
            "POST",
            models("create"),
            json!({"name": "risk"}),
            400,
            "RESOURCE_ALREADY_EXISTS",
        ),
        missing("GET", models("get?name=nope"), NONE),
        missing(
            "PATCH",
            models("update"),
            json!({"name": "nope", "description": "e"}),
        ),
        bad("POST", models("set-tag"), json!({"name": "risk"})),
        missing(
            "DELETE",
            models("delete-tag"),
            json!({"name": "nope", "key": "team"}),
        ),
        bad("POST", versions("create"), json!({"name": "risk"})),
        missing("GET", versions("get?name=risk&version=9"), NONE),
        bad(
            "PATCH",
            versions("update"),
            json!({"name": "risk", "version": "one"}),
        ),
        missing(
            "POST",
            versions("set-tag"),
            json!({"name": "risk", "version": "9", "key": "k", "value": "v"}),
        ),
        bad(
            "DELETE",
            versions("delete-tag"),
            json!({"name": "risk", "version": "1"}),
        ),
        missing(
            "GET",
            versions("get-download-uri?name=risk&version=9"),
            NONE,
        ),
        bad(
            "POST",
            versions("transition-stage"),
            json!({"name": "risk", "version": "1", "stage": "Later"}),
        ),
        bad("POST", versions("search"), json!({"filter": "name =="})),
        bad("GET", models("search?filter=name%20%3D%3D"), NONE),
        bad(
            "POST",
            models("get-latest-versions"),
            json!({"name": "risk", "stages": ["Later"]}),
        ),
        bad(
            "POST",
            models("alias"),
            json!({"name": "risk", "alias": "v3", "version": "2"}),
        ),
        missing("GET", models("alias?name=risk&alias=nope"), NONE),
        bad("DELETE", models("alias"), json!({"name": "risk"})),
        bad(
            "POST",
            keel("gates"),
            json!({"name": "risk", "version": "1", "gate_results": {"gates": []}}),
        ),
        missing(
            "POST",
            keel("rollback"),
            json!({"name": "risk", "alias": "never-set"}),
        ),
        bad("GET", keel("audit?max_results=many"), NONE),
        bad("GET", keel("changes?since=soon"), NONE),
    ])
    .await;

    // Deletion last: a version, then renaming and deleting the model.
    let body = json!({"name": "risk", "version": "2"});
    api.ok("DELETE", &versions("delete"), body).await;
    let body = json!({"name": "risk", "new_name": "risk-2"});
    api.ok("POST", &models("rename"), body).await;
    api.ok("DELETE", &models("delete"), json!({"name": "risk-2"}))
        .await;
    api.refuses(&[
        missing(
            "DELETE",
            versions("delete"),
            json!({"name": "risk-2", "version": "9"}),
        ),
        missing(
            "POST",
            models("rename"),
            json!({"name": "risk", "new_name": "x"}),
        ),
        missing("DELETE", models("delete"), json!({"name": "risk-2"})),
    ])
    .await;
}

#[tokio::test]
async fn artifact_proxy() {
    let api = Api::new().await;
    let file = proxy("/1/run/model/model.json");
    let (status, _) = api.send("PUT", &file, Body::from("{}")).await;
    assert_eq!(status, 200);
    let (status, bytes) = api.send("GET", &file, Body::empty()).await;
    assert_eq!((status, bytes.as_slice()), (200, b"{}".as_slice()));
    let listed = api.ok("GET", &proxy("?path=1/run/model"), NONE).await;
    assert_eq!(listed["files"][0]["path"], "model.json", "{listed}");
    api.ok("DELETE", &file, NONE).await;
    api.refuses(&[
        bad("PUT", proxy("/1/../../escape"), NONE),
        missing("GET", proxy("/1/run/nothing.bin"), NONE),
        bad("GET", proxy("?path=../x"), NONE),
        bad("DELETE", proxy("/%2e%2e/x"), NONE),
    ])
    .await;
}

#[tokio::test]
async fn server_info_health_version_and_unknown_routes() {
    let api = Api::new().await;
    for path in [
        "/api/3.0/mlflow/server-info",
        "/ajax-api/3.0/mlflow/server-info",
    ] {
        let info = api.ok("GET", path, NONE).await;
        assert!(info.is_object(), "{info}");
    }
    let (status, body) = api.send("GET", "/health", Body::empty()).await;
    assert_eq!((status, body.as_slice()), (200, b"OK".as_slice()));
    let (status, body) = api.send("GET", "/version", Body::empty()).await;
    let version = env!("CARGO_PKG_VERSION").as_bytes();
    assert_eq!((status, body.as_slice()), (200, version));
    // The ajax-api twin answers like the API.
    let twin = "/ajax-api/2.0/mlflow/experiments/get?experiment_id=";
    api.ok("GET", &format!("{twin}0"), NONE).await;
    // A wrong method on a known path is refused.
    let (status, _) = api
        .call("DELETE", &mlflow("experiments/create"), NONE)
        .await;
    assert_eq!(status, 405);
    api.refuses(&[
        missing("GET", mlflow("nope"), NONE),
        missing("GET", format!("{twin}999"), NONE),
    ])
    .await;
    // A body that is not JSON is a 400 in the envelope.
    let (status, bytes) = api
        .send("POST", &mlflow("experiments/create"), Body::from("{name"))
        .await;
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 400, "{value}");
    assert_eq!(value["error_code"], "INVALID_PARAMETER_VALUE", "{value}");
}
