//! Every route of the router: one success and one error each, the error
//! checked for its status and MLflow's envelope (`error_code`, `message`).

use axum::body::Body;
use serde_json::{Value, json};

use crate::util::Api;

const BAD: &str = "INVALID_PARAMETER_VALUE";
const MISSING: &str = "RESOURCE_DOES_NOT_EXIST";
const NO_RUN: &str = "0123456789abcdef0123456789abcdef";
const API: &str = "/api/2.0/mlflow";

async fn experiment(api: &Api, name: &str) -> String {
    let created = api
        .ok(
            "POST",
            &format!("{API}/experiments/create"),
            json!({"name": name}),
        )
        .await;
    created["experiment_id"].as_str().unwrap().to_string()
}

async fn run(api: &Api, experiment_id: &str) -> String {
    let created = api
        .ok(
            "POST",
            &format!("{API}/runs/create"),
            json!({"experiment_id": experiment_id, "start_time": 1}),
        )
        .await;
    created["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn experiments() {
    let api = Api::new().await;
    let id = experiment(&api, "fraud").await;
    api.fails(
        "POST",
        &format!("{API}/experiments/create"),
        json!({}),
        400,
        BAD,
    )
    .await;

    let got = api
        .ok(
            "GET",
            &format!("{API}/experiments/get?experiment_id={id}"),
            Value::Null,
        )
        .await;
    assert_eq!(got["experiment"]["name"], "fraud");
    api.fails(
        "GET",
        &format!("{API}/experiments/get?experiment_id=999"),
        Value::Null,
        404,
        MISSING,
    )
    .await;

    let got = api
        .ok(
            "GET",
            &format!("{API}/experiments/get-by-name?experiment_name=fraud"),
            Value::Null,
        )
        .await;
    assert_eq!(got["experiment"]["experiment_id"], id.as_str());
    api.fails(
        "GET",
        &format!("{API}/experiments/get-by-name?experiment_name=nope"),
        Value::Null,
        404,
        MISSING,
    )
    .await;

    let found = api
        .ok(
            "POST",
            &format!("{API}/experiments/search"),
            json!({"filter": "name = 'fraud'"}),
        )
        .await;
    assert_eq!(
        found["experiments"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    api.fails(
        "POST",
        &format!("{API}/experiments/search"),
        json!({"filter": "name =="}),
        400,
        BAD,
    )
    .await;
    let found = api
        .ok(
            "GET",
            &format!("{API}/experiments/search?max_results=10"),
            Value::Null,
        )
        .await;
    assert!(
        found["experiments"]
            .as_array()
            .is_some_and(|e| e.len() == 2),
        "{found}"
    );
    api.fails(
        "GET",
        &format!("{API}/experiments/search?max_results=abc"),
        Value::Null,
        400,
        BAD,
    )
    .await;

    api.ok(
        "POST",
        &format!("{API}/experiments/update"),
        json!({"experiment_id": id, "new_name": "fraud-2"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/experiments/update"),
        json!({"new_name": "x"}),
        400,
        BAD,
    )
    .await;

    api.ok(
        "POST",
        &format!("{API}/experiments/set-experiment-tag"),
        json!({"experiment_id": id, "key": "team", "value": "risk"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/experiments/set-experiment-tag"),
        json!({"experiment_id": id}),
        400,
        BAD,
    )
    .await;
    api.ok(
        "POST",
        &format!("{API}/experiments/delete-experiment-tag"),
        json!({"experiment_id": id, "key": "team"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/experiments/delete-experiment-tag"),
        json!({"experiment_id": "999", "key": "team"}),
        404,
        MISSING,
    )
    .await;

    api.ok(
        "POST",
        &format!("{API}/experiments/delete"),
        json!({"experiment_id": id}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/experiments/delete"),
        json!({"experiment_id": "999"}),
        404,
        MISSING,
    )
    .await;
    api.ok(
        "POST",
        &format!("{API}/experiments/restore"),
        json!({"experiment_id": id}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/experiments/restore"),
        json!({}),
        400,
        BAD,
    )
    .await;
}

#[tokio::test]
async fn runs_metrics_params_tags_and_inputs() {
    let api = Api::new().await;
    let experiment_id = experiment(&api, "runs").await;
    let id = run(&api, &experiment_id).await;
    api.fails(
        "POST",
        &format!("{API}/runs/create"),
        json!({"experiment_id": "999"}),
        404,
        MISSING,
    )
    .await;

    let got = api
        .ok("GET", &format!("{API}/runs/get?run_id={id}"), Value::Null)
        .await;
    assert_eq!(got["run"]["info"]["run_id"], id.as_str());
    api.fails(
        "GET",
        &format!("{API}/runs/get?run_id={NO_RUN}"),
        Value::Null,
        404,
        MISSING,
    )
    .await;

    api.ok(
        "POST",
        &format!("{API}/runs/log-metric"),
        json!({"run_id": id, "key": "loss", "value": 0.5, "timestamp": 10, "step": 1}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/runs/log-metric"),
        json!({"run_id": id, "key": "loss", "value": "much", "timestamp": 10}),
        400,
        BAD,
    )
    .await;
    api.ok(
        "POST",
        &format!("{API}/runs/log-parameter"),
        json!({"run_id": id, "key": "lr", "value": "0.1"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/runs/log-parameter"),
        json!({"run_id": id, "key": "lr", "value": "0.2"}),
        400,
        BAD,
    )
    .await;
    api.ok("POST", &format!("{API}/runs/log-batch"), json!({"run_id": id, "metrics": [{"key": "acc", "value": 0.9, "timestamp": 11, "step": 0}], "params": [{"key": "depth", "value": "3"}], "tags": [{"key": "stage", "value": "dev"}]}))
        .await;
    api.fails(
        "POST",
        &format!("{API}/runs/log-batch"),
        json!({"run_id": id, "metrics": [{"key": "acc"}]}),
        400,
        BAD,
    )
    .await;
    api.ok(
        "POST",
        &format!("{API}/runs/set-tag"),
        json!({"run_id": id, "key": "owner", "value": "bob"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/runs/set-tag"),
        json!({"run_id": NO_RUN, "key": "owner", "value": "bob"}),
        404,
        MISSING,
    )
    .await;
    api.ok(
        "POST",
        &format!("{API}/runs/delete-tag"),
        json!({"run_id": id, "key": "owner"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/runs/delete-tag"),
        json!({"run_id": id}),
        400,
        BAD,
    )
    .await;
    api.ok("POST", &format!("{API}/runs/log-inputs"), json!({"run_id": id, "datasets": [{"dataset": {"name": "train", "digest": "b3:ab", "source_type": "local", "source": "data/train.csv"}}]}))
        .await;
    api.fails(
        "POST",
        &format!("{API}/runs/log-inputs"),
        json!({"run_id": id, "datasets": [{"dataset": {"digest": "b3:ab"}}]}),
        400,
        BAD,
    )
    .await;
    api.ok(
        "POST",
        &format!("{API}/runs/log-model"),
        json!({"run_id": id, "model_json": "{\"artifact_path\": \"model\", \"flavors\": {}}"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/runs/log-model"),
        json!({"run_id": id}),
        400,
        BAD,
    )
    .await;

    let history = api
        .ok(
            "GET",
            &format!("{API}/metrics/get-history?run_id={id}&metric_key=loss"),
            Value::Null,
        )
        .await;
    assert_eq!(history["metrics"][0]["value"], 0.5, "{history}");
    api.fails(
        "GET",
        &format!("{API}/metrics/get-history?run_id={id}"),
        Value::Null,
        400,
        BAD,
    )
    .await;
    let bulk = api
        .ok("GET", &format!("{API}/metrics/get-history-bulk-interval?run_ids={id}&metric_key=loss&max_results=10"), Value::Null)
        .await;
    assert_eq!(bulk["metrics"][0]["run_id"], id.as_str(), "{bulk}");
    api.fails(
        "GET",
        &format!("{API}/metrics/get-history-bulk-interval?run_ids={id}"),
        Value::Null,
        400,
        BAD,
    )
    .await;

    let found = api
        .ok(
            "POST",
            &format!("{API}/runs/search"),
            json!({"experiment_ids": [experiment_id], "filter": "metrics.acc > 0.5"}),
        )
        .await;
    assert_eq!(found["runs"].as_array().map(Vec::len), Some(1), "{found}");
    api.fails(
        "POST",
        &format!("{API}/runs/search"),
        json!({"experiment_ids": [experiment_id], "filter": "metrics.acc >"}),
        400,
        BAD,
    )
    .await;

    api.ok(
        "POST",
        &format!("{API}/runs/update"),
        json!({"run_id": id, "status": "FINISHED", "end_time": 20}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/runs/update"),
        json!({"run_id": id, "status": "DONE"}),
        400,
        BAD,
    )
    .await;
    api.ok("POST", &format!("{API}/runs/delete"), json!({"run_id": id}))
        .await;
    api.fails(
        "POST",
        &format!("{API}/runs/delete"),
        json!({"run_id": NO_RUN}),
        404,
        MISSING,
    )
    .await;
    api.ok(
        "POST",
        &format!("{API}/runs/restore"),
        json!({"run_id": id}),
    )
    .await;
    api.fails("POST", &format!("{API}/runs/restore"), json!({}), 400, BAD)
        .await;

    // The run's artifacts through the tracking API (an empty root lists nothing).
    let listed = api
        .ok(
            "GET",
            &format!("{API}/artifacts/list?run_id={id}"),
            Value::Null,
        )
        .await;
    assert!(
        listed
            .get("files")
            .is_none_or(|f| f.as_array().is_some_and(Vec::is_empty)),
        "{listed}"
    );
    api.fails(
        "GET",
        &format!("{API}/artifacts/list?run_id={NO_RUN}"),
        Value::Null,
        404,
        MISSING,
    )
    .await;
}

#[tokio::test]
async fn logged_models() {
    let api = Api::new().await;
    let experiment_id = experiment(&api, "models").await;
    let id = run(&api, &experiment_id).await;
    let created = api
        .ok(
            "POST",
            &format!("{API}/logged-models"),
            json!({"experiment_id": experiment_id, "name": "m", "source_run_id": id}),
        )
        .await;
    let model_id = created["model"]["info"]["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    api.fails(
        "POST",
        &format!("{API}/logged-models"),
        json!({"name": "m"}),
        400,
        BAD,
    )
    .await;

    let got = api
        .ok(
            "GET",
            &format!("{API}/logged-models/{model_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(got["model"]["info"]["name"], "m", "{got}");
    api.fails(
        "GET",
        &format!("{API}/logged-models/m-nope"),
        Value::Null,
        404,
        MISSING,
    )
    .await;

    api.ok(
        "PATCH",
        &format!("{API}/logged-models/{model_id}/tags"),
        json!({"tags": [{"key": "k", "value": "v"}]}),
    )
    .await;
    api.fails(
        "PATCH",
        &format!("{API}/logged-models/m-nope/tags"),
        json!({"tags": [{"key": "k", "value": "v"}]}),
        404,
        MISSING,
    )
    .await;
    api.ok(
        "DELETE",
        &format!("{API}/logged-models/{model_id}/tags/k"),
        Value::Null,
    )
    .await;
    api.fails(
        "DELETE",
        &format!("{API}/logged-models/m-nope/tags/k"),
        Value::Null,
        404,
        MISSING,
    )
    .await;
    api.ok(
        "POST",
        &format!("{API}/logged-models/{model_id}/params"),
        json!({"params": [{"key": "depth", "value": "3"}]}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/logged-models/{model_id}/params"),
        json!({"params": [{"value": "3"}]}),
        400,
        BAD,
    )
    .await;
    api.ok(
        "POST",
        &format!("{API}/runs/outputs"),
        json!({"run_id": id, "models": [{"model_id": model_id, "step": 0}]}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{API}/runs/outputs"),
        json!({"run_id": id, "models": [{"step": 0}]}),
        400,
        BAD,
    )
    .await;

    let found = api
        .ok(
            "POST",
            &format!("{API}/logged-models/search"),
            json!({"experiment_ids": [experiment_id]}),
        )
        .await;
    assert_eq!(found["models"].as_array().map(Vec::len), Some(1), "{found}");
    api.fails(
        "POST",
        &format!("{API}/logged-models/search"),
        json!({"experiment_ids": [experiment_id], "order_by": [{"ascending": true}]}),
        400,
        BAD,
    )
    .await;

    api.ok(
        "PATCH",
        &format!("{API}/logged-models/{model_id}"),
        json!({"model_id": model_id, "status": "LOGGED_MODEL_READY"}),
    )
    .await;
    api.fails(
        "PATCH",
        &format!("{API}/logged-models/{model_id}"),
        json!({"model_id": model_id}),
        400,
        BAD,
    )
    .await;
    api.ok(
        "DELETE",
        &format!("{API}/logged-models/{model_id}"),
        Value::Null,
    )
    .await;
    api.fails(
        "DELETE",
        &format!("{API}/logged-models/m-nope"),
        Value::Null,
        404,
        MISSING,
    )
    .await;
}

#[tokio::test]
async fn registry() {
    let api = Api::new().await;
    let experiment_id = experiment(&api, "registry").await;
    let id = run(&api, &experiment_id).await;
    let models = format!("{API}/registered-models");
    let versions = format!("{API}/model-versions");

    api.ok(
        "POST",
        &format!("{models}/create"),
        json!({"name": "risk", "description": "d"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{models}/create"),
        json!({"name": "risk"}),
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    .await;
    let got = api
        .ok("GET", &format!("{models}/get?name=risk"), Value::Null)
        .await;
    assert_eq!(got["registered_model"]["name"], "risk");
    api.fails(
        "GET",
        &format!("{models}/get?name=nope"),
        Value::Null,
        404,
        MISSING,
    )
    .await;
    api.ok(
        "PATCH",
        &format!("{models}/update"),
        json!({"name": "risk", "description": "e"}),
    )
    .await;
    api.fails(
        "PATCH",
        &format!("{models}/update"),
        json!({"name": "nope", "description": "e"}),
        404,
        MISSING,
    )
    .await;
    api.ok(
        "POST",
        &format!("{models}/set-tag"),
        json!({"name": "risk", "key": "team", "value": "quant"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{models}/set-tag"),
        json!({"name": "risk"}),
        400,
        BAD,
    )
    .await;
    api.ok(
        "DELETE",
        &format!("{models}/delete-tag"),
        json!({"name": "risk", "key": "team"}),
    )
    .await;
    api.fails(
        "DELETE",
        &format!("{models}/delete-tag"),
        json!({"name": "nope", "key": "team"}),
        404,
        MISSING,
    )
    .await;

    let created = api
        .ok(
            "POST",
            &format!("{versions}/create"),
            json!({"name": "risk", "source": format!("runs:/{id}/model"), "run_id": id}),
        )
        .await;
    assert_eq!(created["model_version"]["version"], "1", "{created}");
    api.fails(
        "POST",
        &format!("{versions}/create"),
        json!({"name": "risk"}),
        400,
        BAD,
    )
    .await;
    api.ok(
        "POST",
        &format!("{versions}/create"),
        json!({"name": "risk", "source": "mlflow-artifacts:/x"}),
    )
    .await;
    let got = api
        .ok(
            "GET",
            &format!("{versions}/get?name=risk&version=1"),
            Value::Null,
        )
        .await;
    assert_eq!(got["model_version"]["run_id"], id.as_str());
    api.fails(
        "GET",
        &format!("{versions}/get?name=risk&version=9"),
        Value::Null,
        404,
        MISSING,
    )
    .await;
    api.ok(
        "PATCH",
        &format!("{versions}/update"),
        json!({"name": "risk", "version": "1", "description": "first"}),
    )
    .await;
    api.fails(
        "PATCH",
        &format!("{versions}/update"),
        json!({"name": "risk", "version": "one"}),
        400,
        BAD,
    )
    .await;
    api.ok(
        "POST",
        &format!("{versions}/set-tag"),
        json!({"name": "risk", "version": "1", "key": "k", "value": "v"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{versions}/set-tag"),
        json!({"name": "risk", "version": "9", "key": "k", "value": "v"}),
        404,
        MISSING,
    )
    .await;
    api.ok(
        "DELETE",
        &format!("{versions}/delete-tag"),
        json!({"name": "risk", "version": "1", "key": "k"}),
    )
    .await;
    api.fails(
        "DELETE",
        &format!("{versions}/delete-tag"),
        json!({"name": "risk", "version": "1"}),
        400,
        BAD,
    )
    .await;
    let download = api
        .ok(
            "GET",
            &format!("{versions}/get-download-uri?name=risk&version=1"),
            Value::Null,
        )
        .await;
    assert!(
        download["artifact_uri"]
            .as_str()
            .is_some_and(|uri| uri.ends_with("/model")),
        "{download}"
    );
    api.fails(
        "GET",
        &format!("{versions}/get-download-uri?name=risk&version=9"),
        Value::Null,
        404,
        MISSING,
    )
    .await;
    api.ok("POST", &format!("{versions}/transition-stage"), json!({"name": "risk", "version": "1", "stage": "Staging", "archive_existing_versions": false}))
        .await;
    api.fails(
        "POST",
        &format!("{versions}/transition-stage"),
        json!({"name": "risk", "version": "1", "stage": "Later"}),
        400,
        BAD,
    )
    .await;

    let found = api
        .ok(
            "GET",
            &format!("{versions}/search?filter=name%3D%27risk%27"),
            Value::Null,
        )
        .await;
    assert_eq!(
        found["model_versions"].as_array().map(Vec::len),
        Some(2),
        "{found}"
    );
    api.fails(
        "POST",
        &format!("{versions}/search"),
        json!({"filter": "name =="}),
        400,
        BAD,
    )
    .await;
    let found = api
        .ok(
            "POST",
            &format!("{models}/search"),
            json!({"filter": "name LIKE 'ri%'"}),
        )
        .await;
    assert_eq!(
        found["registered_models"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    api.fails(
        "GET",
        &format!("{models}/search?filter=name%20%3D%3D"),
        Value::Null,
        400,
        BAD,
    )
    .await;
    let latest = api
        .ok(
            "POST",
            &format!("{models}/get-latest-versions"),
            json!({"name": "risk", "stages": ["Staging"]}),
        )
        .await;
    assert_eq!(latest["model_versions"][0]["version"], "1", "{latest}");
    api.fails(
        "POST",
        &format!("{models}/get-latest-versions"),
        json!({"name": "risk", "stages": ["Later"]}),
        400,
        BAD,
    )
    .await;

    // Aliases: MLflow's set / get / delete.
    api.ok(
        "POST",
        &format!("{models}/alias"),
        json!({"name": "risk", "alias": "champion", "version": "2"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{models}/alias"),
        json!({"name": "risk", "alias": "v3", "version": "2"}),
        400,
        BAD,
    )
    .await;
    let by_alias = api
        .ok(
            "GET",
            &format!("{models}/alias?name=risk&alias=champion"),
            Value::Null,
        )
        .await;
    assert_eq!(by_alias["model_version"]["version"], "2", "{by_alias}");
    api.fails(
        "GET",
        &format!("{models}/alias?name=risk&alias=nope"),
        Value::Null,
        404,
        MISSING,
    )
    .await;
    api.ok(
        "DELETE",
        &format!("{models}/alias"),
        json!({"name": "risk", "alias": "champion"}),
    )
    .await;
    api.fails(
        "DELETE",
        &format!("{models}/alias"),
        json!({"name": "risk"}),
        400,
        BAD,
    )
    .await;

    // keel's registry extras: gate results, promotion (refused without
    // passed gates unless forced), rollback, audit log, change feed.
    let keel = "/api/2.0/keel/registry";
    api.ok(
        "POST",
        &format!("{keel}/gates"),
        json!({"name": "risk", "version": "1", "gate_results": {"passed": true, "gates": []}}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{keel}/gates"),
        json!({"name": "risk", "version": "1", "gate_results": {"gates": []}}),
        400,
        BAD,
    )
    .await;
    api.ok(
        "POST",
        &format!("{keel}/promote"),
        json!({"name": "risk", "version": "1", "alias": "production"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{keel}/promote"),
        json!({"name": "risk", "version": "2", "alias": "production"}),
        400,
        "INVALID_STATE",
    )
    .await;
    api.ok("POST", &format!("{keel}/promote"), json!({"name": "risk", "version": "2", "alias": "production", "force": true, "reason": "approved"}))
        .await;
    let rolled = api
        .ok(
            "POST",
            &format!("{keel}/rollback"),
            json!({"name": "risk", "alias": "production"}),
        )
        .await;
    assert!(
        rolled.to_string().contains("\"to_version\":\"1\"")
            || rolled.to_string().contains("\"to_version\":1"),
        "{rolled}"
    );
    api.fails(
        "POST",
        &format!("{keel}/rollback"),
        json!({"name": "risk", "alias": "never-set"}),
        404,
        MISSING,
    )
    .await;
    let audit = api
        .ok("GET", &format!("{keel}/audit?name=risk"), Value::Null)
        .await;
    assert!(audit.to_string().contains("set_alias"), "{audit}");
    api.fails(
        "GET",
        &format!("{keel}/audit?max_results=many"),
        Value::Null,
        400,
        BAD,
    )
    .await;
    let changes = api
        .ok(
            "GET",
            &format!("{keel}/changes?since=0&timeout_ms=0"),
            Value::Null,
        )
        .await;
    assert!(
        changes["changes"].as_array().is_some_and(|c| !c.is_empty()),
        "{changes}"
    );
    api.fails(
        "GET",
        &format!("{keel}/changes?since=soon"),
        Value::Null,
        400,
        BAD,
    )
    .await;

    // Deletion last: a version, a model, then renaming what is left.
    api.ok(
        "DELETE",
        &format!("{versions}/delete"),
        json!({"name": "risk", "version": "2"}),
    )
    .await;
    api.fails(
        "DELETE",
        &format!("{versions}/delete"),
        json!({"name": "risk", "version": "9"}),
        404,
        MISSING,
    )
    .await;
    api.ok(
        "POST",
        &format!("{models}/rename"),
        json!({"name": "risk", "new_name": "risk-2"}),
    )
    .await;
    api.fails(
        "POST",
        &format!("{models}/rename"),
        json!({"name": "risk", "new_name": "x"}),
        404,
        MISSING,
    )
    .await;
    api.ok(
        "DELETE",
        &format!("{models}/delete"),
        json!({"name": "risk-2"}),
    )
    .await;
    api.fails(
        "DELETE",
        &format!("{models}/delete"),
        json!({"name": "risk-2"}),
        404,
        MISSING,
    )
    .await;
}

#[tokio::test]
async fn artifact_proxy() {
    let api = Api::new().await;
    let root = "/api/2.0/mlflow-artifacts/artifacts";
    let (status, _) = api
        .send(
            "PUT",
            &format!("{root}/1/run/model/model.json"),
            Body::from("{}"),
        )
        .await;
    assert_eq!(status, 200);
    api.fails(
        "PUT",
        &format!("{root}/1/../../escape"),
        Value::Null,
        400,
        BAD,
    )
    .await;
    let (status, bytes) = api
        .send(
            "GET",
            &format!("{root}/1/run/model/model.json"),
            Body::empty(),
        )
        .await;
    assert_eq!((status, bytes.as_slice()), (200, b"{}".as_slice()));
    api.fails(
        "GET",
        &format!("{root}/1/run/nothing.bin"),
        Value::Null,
        404,
        MISSING,
    )
    .await;
    let listed = api
        .ok("GET", &format!("{root}?path=1/run/model"), Value::Null)
        .await;
    assert_eq!(listed["files"][0]["path"], "model.json", "{listed}");
    api.fails("GET", &format!("{root}?path=../x"), Value::Null, 400, BAD)
        .await;
    api.ok(
        "DELETE",
        &format!("{root}/1/run/model/model.json"),
        Value::Null,
    )
    .await;
    api.fails("DELETE", &format!("{root}/%2e%2e/x"), Value::Null, 400, BAD)
        .await;
}

#[tokio::test]
async fn server_info_health_version_and_unknown_routes() {
    let api = Api::new().await;
    for path in [
        "/api/3.0/mlflow/server-info",
        "/ajax-api/3.0/mlflow/server-info",
    ] {
        let info = api.ok("GET", path, Value::Null).await;
        assert!(info.is_object(), "{info}");
    }
    let (status, body) = api.send("GET", "/health", Body::empty()).await;
    assert_eq!((status, body.as_slice()), (200, b"OK".as_slice()));
    let (status, body) = api.send("GET", "/version", Body::empty()).await;
    assert_eq!(
        (status, body.as_slice()),
        (200, env!("CARGO_PKG_VERSION").as_bytes())
    );
    // The ajax-api twin answers like the API.
    api.ok(
        "GET",
        "/ajax-api/2.0/mlflow/experiments/get?experiment_id=0",
        Value::Null,
    )
    .await;
    api.fails("GET", "/api/2.0/mlflow/nope", Value::Null, 404, MISSING)
        .await;
    api.fails(
        "GET",
        "/ajax-api/2.0/mlflow/experiments/get?experiment_id=999",
        Value::Null,
        404,
        MISSING,
    )
    .await;
    // A wrong method on a known path is refused.
    let (status, _) = api
        .call("DELETE", &format!("{API}/experiments/create"), Value::Null)
        .await;
    assert_eq!(status, 405);
    // A body that is not JSON is a 400 in the envelope, naming the problem.
    let (status, bytes) = api
        .send(
            "POST",
            &format!("{API}/experiments/create"),
            Body::from("{name"),
        )
        .await;
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        (status, value["error_code"].as_str()),
        (400, Some(BAD)),
        "{value}"
    );
}
