//! Entity → JSON in MLflow's wire shapes. Protobuf JSON conventions apply:
//! empty lists and unset optionals are omitted, non-finite doubles are the
//! strings "NaN", "Infinity" and "-Infinity".

use keel_core::{
    DatasetInput, Experiment, LoggedModel, Metric, ModelInput, ModelOutput, Page, Param, Run,
    RunInfo, Tag,
};
use serde_json::{Map, Value, json};

use crate::json_out::{JsonOut, Obj};

fn insert_list(object: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    if !items.is_empty() {
        object.insert(key.to_string(), Value::Array(items));
    }
}

/// Tags in MLflow's wire shape (as in a run).
pub fn tags(tags: &[Tag]) -> Vec<Value> {
    tags.iter().map(|t| to_value(|o| write_tag(o, t))).collect()
}

/// Params in MLflow's wire shape (as in a run).
pub fn params(params: &[Param]) -> Vec<Value> {
    params
        .iter()
        .map(|p| to_value(|o| write_param(o, p)))
        .collect()
}

/// A metric in MLflow's wire shape.
pub fn metric(metric: &Metric) -> Value {
    to_value(|o| write_metric(o, metric))
}

pub fn experiment(experiment: &Experiment) -> Value {
    let mut object = Map::new();
    object.insert("experiment_id".into(), json!(experiment.experiment_id));
    object.insert("name".into(), json!(experiment.name));
    object.insert(
        "artifact_location".into(),
        json!(experiment.artifact_location),
    );
    object.insert(
        "lifecycle_stage".into(),
        json!(experiment.lifecycle_stage.as_str()),
    );
    object.insert(
        "last_update_time".into(),
        json!(experiment.last_update_time),
    );
    object.insert("creation_time".into(), json!(experiment.creation_time));
    insert_list(&mut object, "tags", tags(&experiment.tags));
    object.insert("workspace".into(), json!("default"));
    Value::Object(object)
}

/// A run's info in MLflow's wire shape.
pub fn run_info(info: &RunInfo) -> Value {
    to_value(|o| write_run_info(o, info))
}

/// A run in MLflow's wire shape.
pub fn run(run: &Run) -> Value {
    to_value(|o| write_run(o, run))
}

/// A `Value` of one entity written by `write` (for answers built as `Value`
/// trees; the entity's shape has one writer, below).
fn to_value(write: impl FnOnce(&mut Obj<'_>)) -> Value {
    let mut out = JsonOut::with_capacity(256);
    let mut object = out.object();
    write(&mut object);
    object.end();
    // Cannot fail: the writer writes valid JSON.
    serde_json::from_slice(&out.into_bytes()).unwrap_or(Value::Null)
}

// The entities below are written straight into the answer's bytes
// ([`JsonOut`]): runs/search answers hundreds of runs. Keys are written in
// sorted order, as a `serde_json::Map` writes them.

/// A key/value pair (tag or param): `{"key", "value"}`.
fn write_tag(o: &mut Obj<'_>, tag: &Tag) {
    o.str("key", &tag.key).str("value", &tag.value);
}

fn write_param(o: &mut Obj<'_>, param: &Param) {
    o.str("key", &param.key).str("value", &param.value);
}

fn write_metric(o: &mut Obj<'_>, metric: &Metric) {
    if let Some(digest) = &metric.dataset_digest {
        o.str("dataset_digest", digest);
    }
    if let Some(name) = &metric.dataset_name {
        o.str("dataset_name", name);
    }
    o.str("key", &metric.key);
    if let Some(model_id) = &metric.model_id {
        o.str("model_id", model_id);
    }
    if let Some(run_id) = &metric.run_id {
        o.str("run_id", run_id);
    }
    o.int("step", metric.step)
        .int("timestamp", metric.timestamp)
        .double("value", metric.value);
}

fn write_run_info(o: &mut Obj<'_>, info: &RunInfo) {
    o.str("artifact_uri", &info.artifact_uri);
    if let Some(end_time) = info.end_time {
        o.int("end_time", end_time);
    }
    o.str("experiment_id", &info.experiment_id)
        .str("lifecycle_stage", info.lifecycle_stage.as_str())
        .str("run_id", &info.run_id)
        .str("run_name", &info.run_name)
        .str("run_uuid", &info.run_id)
        .int("start_time", info.start_time)
        .str("status", info.status.as_str())
        .str("user_id", &info.user_id);
}

fn write_dataset_input(o: &mut Obj<'_>, input: &DatasetInput) {
    o.object("dataset", |o| {
        let dataset = &input.dataset;
        o.str("digest", &dataset.digest).str("name", &dataset.name);
        if let Some(profile) = &dataset.profile {
            o.str("profile", profile);
        }
        if let Some(schema) = &dataset.schema {
            o.str("schema", schema);
        }
        o.str("source", &dataset.source)
            .str("source_type", &dataset.source_type);
    })
    .list("tags", &input.tags, write_tag);
}

/// A run: `{"data", "info", "inputs"}` and `"outputs"` when the run has any;
/// empty lists are omitted.
fn write_run(o: &mut Obj<'_>, run: &Run) {
    o.object("data", |o| {
        o.list("metrics", &run.data.metrics, write_metric)
            .list("params", &run.data.params, write_param)
            .list("tags", &run.data.tags, write_tag);
    })
    .object("info", |o| write_run_info(o, &run.info))
    .object("inputs", |o| {
        o.list("dataset_inputs", &run.dataset_inputs, write_dataset_input)
            .list(
                "model_inputs",
                &run.model_inputs,
                |o, input: &ModelInput| {
                    o.str("model_id", &input.model_id);
                },
            );
    });
    if !run.model_outputs.is_empty() {
        o.object("outputs", |o| {
            o.list(
                "model_outputs",
                &run.model_outputs,
                |o, output: &ModelOutput| {
                    o.str("model_id", &output.model_id).int("step", output.step);
                },
            );
        });
    }
}

/// A runs/search answer's bytes: `{"next_page_token", "runs"}`, each omitted
/// when there is none.
pub fn runs_page(page: &Page<Run>) -> Vec<u8> {
    // Sized up front (about 1 KB a run): growing a ~100 KB answer step by step
    // costs reallocations.
    let mut out = JsonOut::with_capacity(1024 * (page.items.len() + 1));
    let mut object = out.object();
    if let Some(token) = &page.next_page_token {
        object.str("next_page_token", token);
    }
    object.list("runs", &page.items, write_run);
    object.end();
    out.into_bytes()
}

pub fn logged_model(model: &LoggedModel) -> Value {
    let mut info = Map::new();
    info.insert("model_id".into(), json!(model.model_id));
    info.insert("experiment_id".into(), json!(model.experiment_id));
    info.insert("name".into(), json!(model.name));
    info.insert(
        "creation_timestamp_ms".into(),
        json!(model.creation_timestamp_ms),
    );
    info.insert(
        "last_updated_timestamp_ms".into(),
        json!(model.last_updated_timestamp_ms),
    );
    info.insert("artifact_uri".into(), json!(model.artifact_location));
    info.insert("status".into(), json!(model.status.as_str()));
    if let Some(message) = &model.status_message {
        info.insert("status_message".into(), json!(message));
    }
    info.insert(
        "model_type".into(),
        json!(model.model_type.clone().unwrap_or_default()),
    );
    if let Some(run_id) = &model.source_run_id {
        info.insert("source_run_id".into(), json!(run_id));
    }
    insert_list(&mut info, "tags", tags(&model.tags));
    let mut data = Map::new();
    insert_list(&mut data, "params", params(&model.params));
    insert_list(
        &mut data,
        "metrics",
        model.metrics.iter().map(metric).collect(),
    );
    json!({"info": Value::Object(info), "data": Value::Object(data)})
}

pub fn model_version(version: &keel_core::ModelVersion, with_aliases: bool) -> Value {
    let mut object = Map::new();
    object.insert("name".into(), json!(version.name));
    object.insert("version".into(), json!(version.version.to_string()));
    object.insert(
        "creation_timestamp".into(),
        json!(version.creation_timestamp),
    );
    object.insert(
        "last_updated_timestamp".into(),
        json!(version.last_updated_timestamp),
    );
    object.insert(
        "current_stage".into(),
        json!(version.current_stage.as_str()),
    );
    object.insert("description".into(), json!(version.description));
    if !version.user_id.is_empty() {
        object.insert("user_id".into(), json!(version.user_id));
    }
    object.insert("source".into(), json!(version.source));
    object.insert(
        "run_id".into(),
        json!(version.run_id.clone().unwrap_or_default()),
    );
    object.insert("status".into(), json!(version.status));
    insert_list(&mut object, "tags", tags(&version.tags));
    object.insert(
        "run_link".into(),
        json!(version.run_link.clone().unwrap_or_default()),
    );
    if with_aliases {
        insert_list(
            &mut object,
            "aliases",
            version.aliases.iter().map(|a| json!(a)).collect(),
        );
    }
    if let Some(model_id) = &version.model_id {
        object.insert("model_id".into(), json!(model_id));
    }
    Value::Object(object)
}

pub fn registered_model(model: &keel_core::RegisteredModel) -> Value {
    let mut object = Map::new();
    object.insert("name".into(), json!(model.name));
    object.insert("creation_timestamp".into(), json!(model.creation_timestamp));
    object.insert(
        "last_updated_timestamp".into(),
        json!(model.last_updated_timestamp),
    );
    object.insert("description".into(), json!(model.description));
    insert_list(
        &mut object,
        "latest_versions",
        model
            .latest_versions
            .iter()
            .map(|v| model_version(v, false))
            .collect(),
    );
    insert_list(&mut object, "tags", tags(&model.tags));
    insert_list(
        &mut object,
        "aliases",
        model
            .aliases
            .iter()
            .map(|(alias, version)| json!({"alias": alias, "version": version.to_string()}))
            .collect(),
    );
    Value::Object(object)
}

pub fn audit_entry(entry: &keel_core::AuditEntry) -> Value {
    json!({
        "id": entry.id,
        "name": entry.name,
        "action": entry.action,
        "target": entry.target,
        "from_version": entry.from_version.map(|v| v.to_string()),
        "to_version": entry.to_version.map(|v| v.to_string()),
        "user": entry.user,
        "reason": entry.reason,
        "cause": entry.cause,
        "timestamp": entry.timestamp,
        "registry_version": entry.registry_version,
    })
}

/// One page of a search: `{KEY: [...], "next_page_token": ...}`, with the list
/// and the token omitted when empty, as MLflow's protobuf JSON does.
pub fn page(key: &str, items: Vec<Value>, next_page_token: Option<String>) -> Value {
    let mut object = Map::new();
    insert_list(&mut object, key, items);
    if let Some(token) = next_page_token {
        object.insert("next_page_token".into(), json!(token));
    }
    Value::Object(object)
}

#[cfg(test)]
mod wire_tests {
    use super::*;
    use keel_core::{Dataset, LifecycleStage, Page, RunData, RunStatus};

    fn rich_run() -> Run {
        let mut metric = Metric::new("loss", f64::NAN, 5, 2);
        metric.model_id = Some("m-1".into());
        Run {
            info: RunInfo {
                run_id: "r1".into(),
                experiment_id: "3".into(),
                run_name: "bold-owl-1".into(),
                user_id: "ana".into(),
                status: RunStatus::Finished,
                start_time: 10,
                end_time: Some(20),
                artifact_uri: "mlflow-artifacts:/3/r1/artifacts".into(),
                lifecycle_stage: LifecycleStage::Active,
            },
            data: RunData {
                metrics: vec![metric, Metric::new("acc", 0.5, 6, 3)],
                params: vec![Param {
                    key: "lr".into(),
                    value: "0.1".into(),
                }],
                tags: vec![Tag::new("t", "v")],
            },
            dataset_inputs: vec![DatasetInput {
                dataset: Dataset {
                    name: "d".into(),
                    digest: "x1".into(),
                    source_type: "local".into(),
                    source: "{}".into(),
                    schema: Some("s".into()),
                    profile: None,
                },
                tags: vec![Tag::new("mlflow.data.context", "train")],
            }],
            model_inputs: vec![ModelInput {
                model_id: "m-0".into(),
            }],
            model_outputs: vec![ModelOutput {
                model_id: "m-1".into(),
                step: 4,
            }],
        }
    }

    #[test]
    fn runs_page_has_mlflow_wire_shape() {
        let page = Page {
            items: vec![rich_run()],
            next_page_token: Some("tok".into()),
        };
        let expected = json!({
            "next_page_token": "tok",
            "runs": [{
                "info": {
                    "run_uuid": "r1", "run_id": "r1", "experiment_id": "3", "run_name": "bold-owl-1",
                    "user_id": "ana", "status": "FINISHED", "start_time": 10, "end_time": 20,
                    "artifact_uri": "mlflow-artifacts:/3/r1/artifacts", "lifecycle_stage": "active"
                },
                "data": {
                    "metrics": [
                        {"key": "loss", "value": "NaN", "timestamp": 5, "step": 2, "model_id": "m-1"},
                        {"key": "acc", "value": 0.5, "timestamp": 6, "step": 3}
                    ],
                    "params": [{"key": "lr", "value": "0.1"}],
                    "tags": [{"key": "t", "value": "v"}]
                },
                "inputs": {
                    "dataset_inputs": [{
                        "tags": [{"key": "mlflow.data.context", "value": "train"}],
                        "dataset": {"name": "d", "digest": "x1", "source_type": "local", "source": "{}", "schema": "s"}
                    }],
                    "model_inputs": [{"model_id": "m-0"}]
                },
                "outputs": {"model_outputs": [{"model_id": "m-1", "step": 4}]}
            }]
        });
        let text = String::from_utf8(runs_page(&page)).expect("utf-8");
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed, expected);
        // Keys come out sorted, byte for byte what a serde_json::Map writes.
        assert_eq!(text, expected.to_string());
    }

    #[test]
    fn empty_lists_and_unset_fields_are_omitted() {
        let mut run = rich_run();
        run.info.end_time = None;
        run.data = RunData::default();
        run.dataset_inputs.clear();
        run.model_inputs.clear();
        run.model_outputs.clear();
        let value = super::run(&run);
        assert_eq!(value["data"], json!({}));
        assert_eq!(value["inputs"], json!({}));
        assert!(value.get("outputs").is_none());
        assert!(value["info"].get("end_time").is_none());
        let empty = String::from_utf8(runs_page(&Page {
            items: Vec::new(),
            next_page_token: None,
        }))
        .expect("utf-8");
        assert_eq!(empty, "{}");
    }
}
