//! Entity → JSON in MLflow's wire shapes. Protobuf JSON conventions apply:
//! empty lists and unset optionals are omitted, non-finite doubles are the
//! strings "NaN", "Infinity" and "-Infinity".

use keel_core::{DatasetInput, Experiment, LoggedModel, Metric, Param, Run, RunInfo, Tag};
use serde_json::{Map, Value, json};

/// A double in protobuf JSON form.
pub fn double(value: f64) -> Value {
    if value.is_nan() {
        Value::String("NaN".into())
    } else if value == f64::INFINITY {
        Value::String("Infinity".into())
    } else if value == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        json!(value)
    }
}

fn insert_list(object: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    if !items.is_empty() {
        object.insert(key.to_string(), Value::Array(items));
    }
}

pub fn tags(tags: &[Tag]) -> Vec<Value> {
    tags.iter()
        .map(|t| json!({"key": t.key, "value": t.value}))
        .collect()
}

pub fn params(params: &[Param]) -> Vec<Value> {
    params
        .iter()
        .map(|p| json!({"key": p.key, "value": p.value}))
        .collect()
}

pub fn metric(metric: &Metric) -> Value {
    let mut object = Map::new();
    object.insert("key".into(), json!(metric.key));
    object.insert("value".into(), double(metric.value));
    object.insert("timestamp".into(), json!(metric.timestamp));
    object.insert("step".into(), json!(metric.step));
    for (key, value) in [
        ("model_id", &metric.model_id),
        ("run_id", &metric.run_id),
        ("dataset_name", &metric.dataset_name),
        ("dataset_digest", &metric.dataset_digest),
    ] {
        if let Some(value) = value {
            object.insert(key.into(), json!(value));
        }
    }
    Value::Object(object)
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

pub fn run_info(info: &RunInfo) -> Value {
    let mut object = Map::new();
    object.insert("run_uuid".into(), json!(info.run_id));
    object.insert("run_id".into(), json!(info.run_id));
    object.insert("experiment_id".into(), json!(info.experiment_id));
    object.insert("run_name".into(), json!(info.run_name));
    object.insert("user_id".into(), json!(info.user_id));
    object.insert("status".into(), json!(info.status.as_str()));
    object.insert("start_time".into(), json!(info.start_time));
    if let Some(end_time) = info.end_time {
        object.insert("end_time".into(), json!(end_time));
    }
    object.insert("artifact_uri".into(), json!(info.artifact_uri));
    object.insert(
        "lifecycle_stage".into(),
        json!(info.lifecycle_stage.as_str()),
    );
    Value::Object(object)
}

fn dataset_input(input: &DatasetInput) -> Value {
    let dataset = &input.dataset;
    let mut object = Map::new();
    object.insert("name".into(), json!(dataset.name));
    object.insert("digest".into(), json!(dataset.digest));
    object.insert("source_type".into(), json!(dataset.source_type));
    object.insert("source".into(), json!(dataset.source));
    if let Some(schema) = &dataset.schema {
        object.insert("schema".into(), json!(schema));
    }
    if let Some(profile) = &dataset.profile {
        object.insert("profile".into(), json!(profile));
    }
    let mut outer = Map::new();
    insert_list(&mut outer, "tags", tags(&input.tags));
    outer.insert("dataset".into(), Value::Object(object));
    Value::Object(outer)
}

pub fn run(run: &Run) -> Value {
    let mut data = Map::new();
    insert_list(
        &mut data,
        "metrics",
        run.data.metrics.iter().map(metric).collect(),
    );
    insert_list(&mut data, "params", params(&run.data.params));
    insert_list(&mut data, "tags", tags(&run.data.tags));
    let mut inputs = Map::new();
    insert_list(
        &mut inputs,
        "dataset_inputs",
        run.dataset_inputs.iter().map(dataset_input).collect(),
    );
    insert_list(
        &mut inputs,
        "model_inputs",
        run.model_inputs
            .iter()
            .map(|m| json!({"model_id": m.model_id}))
            .collect(),
    );
    let mut outputs = Map::new();
    insert_list(
        &mut outputs,
        "model_outputs",
        run.model_outputs
            .iter()
            .map(|m| json!({"model_id": m.model_id, "step": m.step}))
            .collect(),
    );
    let mut object = Map::new();
    object.insert("info".into(), run_info(&run.info));
    object.insert("data".into(), Value::Object(data));
    object.insert("inputs".into(), Value::Object(inputs));
    if !outputs.is_empty() {
        object.insert("outputs".into(), Value::Object(outputs));
    }
    Value::Object(object)
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
