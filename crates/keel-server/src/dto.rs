//! Entity → JSON in MLflow's wire shapes. Protobuf JSON conventions apply:
//! empty lists and unset optionals are omitted, non-finite doubles are the
//! strings "NaN", "Infinity" and "-Infinity".

use keel_core::{
    DatasetInput, Experiment, LoggedModel, Metric, ModelInput, ModelOutput, Param, Run, RunInfo,
    Tag,
};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};

fn insert_list(object: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    if !items.is_empty() {
        object.insert(key.to_string(), Value::Array(items));
    }
}

/// Tags in MLflow's wire shape (built by [`PairJson`], as in a run).
pub fn tags(tags: &[Tag]) -> Vec<Value> {
    tags.iter().map(|t| to_value(tag_json(t))).collect()
}

/// Params in MLflow's wire shape (built by [`PairJson`], as in a run).
pub fn params(params: &[Param]) -> Vec<Value> {
    params.iter().map(|p| to_value(param_json(p))).collect()
}

/// A metric in MLflow's wire shape (built by [`MetricJson`]).
pub fn metric(metric: &Metric) -> Value {
    to_value(MetricJson(metric))
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

/// A run's info in MLflow's wire shape (built by [`RunInfoJson`]).
pub fn run_info(info: &RunInfo) -> Value {
    to_value(RunInfoJson(info))
}

/// A run in MLflow's wire shape (built by [`RunJson`]).
pub fn run(run: &Run) -> Value {
    to_value(RunJson(run))
}

/// The entities below serialize straight into the answer, with no `Value` tree
/// in between (runs/search answers hundreds of runs). Keys are written in
/// sorted order, as a `serde_json::Map` would write them.
fn to_value(entity: impl Serialize) -> Value {
    // Cannot fail: every map key is a string and no Serialize impl here errors.
    serde_json::to_value(entity).unwrap_or(Value::Null)
}

/// A double in protobuf JSON form: "NaN", "Infinity" and "-Infinity" for non-finite values.
struct Double(f64);

impl Serialize for Double {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let value = self.0;
        if value.is_nan() {
            s.serialize_str("NaN")
        } else if value == f64::INFINITY {
            s.serialize_str("Infinity")
        } else if value == f64::NEG_INFINITY {
            s.serialize_str("-Infinity")
        } else {
            s.serialize_f64(value)
        }
    }
}

/// A list, or nothing when it is empty (protobuf JSON omits empty lists).
fn list_entry<'a, M: SerializeMap, T, W: Serialize>(
    map: &mut M,
    key: &'static str,
    items: &'a [T],
    wrap: fn(&'a T) -> W,
) -> Result<(), M::Error> {
    if items.is_empty() {
        return Ok(());
    }
    map.serialize_entry(key, &Seq(items, wrap))
}

struct Seq<'a, T, W>(&'a [T], fn(&'a T) -> W);

impl<'a, T, W: Serialize> Serialize for Seq<'a, T, W> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(self.1))
    }
}

/// A key/value pair (tag or param): `{"key", "value"}`.
struct PairJson<'a>(&'a str, &'a str);

impl Serialize for PairJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("key", self.0)?;
        map.serialize_entry("value", self.1)?;
        map.end()
    }
}

fn tag_json(tag: &Tag) -> PairJson<'_> {
    PairJson(&tag.key, &tag.value)
}

fn param_json(param: &Param) -> PairJson<'_> {
    PairJson(&param.key, &param.value)
}

pub struct MetricJson<'a>(pub &'a Metric);

impl Serialize for MetricJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let metric = self.0;
        let mut map = s.serialize_map(None)?;
        if let Some(digest) = &metric.dataset_digest {
            map.serialize_entry("dataset_digest", digest)?;
        }
        if let Some(name) = &metric.dataset_name {
            map.serialize_entry("dataset_name", name)?;
        }
        map.serialize_entry("key", &metric.key)?;
        if let Some(model_id) = &metric.model_id {
            map.serialize_entry("model_id", model_id)?;
        }
        if let Some(run_id) = &metric.run_id {
            map.serialize_entry("run_id", run_id)?;
        }
        map.serialize_entry("step", &metric.step)?;
        map.serialize_entry("timestamp", &metric.timestamp)?;
        map.serialize_entry("value", &Double(metric.value))?;
        map.end()
    }
}

pub struct RunInfoJson<'a>(pub &'a RunInfo);

impl Serialize for RunInfoJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let info = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("artifact_uri", &info.artifact_uri)?;
        if let Some(end_time) = info.end_time {
            map.serialize_entry("end_time", &end_time)?;
        }
        map.serialize_entry("experiment_id", &info.experiment_id)?;
        map.serialize_entry("lifecycle_stage", info.lifecycle_stage.as_str())?;
        map.serialize_entry("run_id", &info.run_id)?;
        map.serialize_entry("run_name", &info.run_name)?;
        map.serialize_entry("run_uuid", &info.run_id)?;
        map.serialize_entry("start_time", &info.start_time)?;
        map.serialize_entry("status", info.status.as_str())?;
        map.serialize_entry("user_id", &info.user_id)?;
        map.end()
    }
}

struct DatasetInputJson<'a>(&'a DatasetInput);

impl Serialize for DatasetInputJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("dataset", &DatasetJson(&self.0.dataset))?;
        list_entry(&mut map, "tags", &self.0.tags, tag_json)?;
        map.end()
    }
}

struct DatasetJson<'a>(&'a keel_core::Dataset);

impl Serialize for DatasetJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let dataset = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("digest", &dataset.digest)?;
        map.serialize_entry("name", &dataset.name)?;
        if let Some(profile) = &dataset.profile {
            map.serialize_entry("profile", profile)?;
        }
        if let Some(schema) = &dataset.schema {
            map.serialize_entry("schema", schema)?;
        }
        map.serialize_entry("source", &dataset.source)?;
        map.serialize_entry("source_type", &dataset.source_type)?;
        map.end()
    }
}

struct ModelInputJson<'a>(&'a ModelInput);

impl Serialize for ModelInputJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("model_id", &self.0.model_id)?;
        map.end()
    }
}

struct ModelOutputJson<'a>(&'a ModelOutput);

impl Serialize for ModelOutputJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("model_id", &self.0.model_id)?;
        map.serialize_entry("step", &self.0.step)?;
        map.end()
    }
}

/// `{"metrics", "params", "tags"}`, each omitted when empty.
struct RunDataJson<'a>(&'a Run);

impl Serialize for RunDataJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let data = &self.0.data;
        let mut map = s.serialize_map(None)?;
        list_entry(&mut map, "metrics", &data.metrics, MetricJson)?;
        list_entry(&mut map, "params", &data.params, param_json)?;
        list_entry(&mut map, "tags", &data.tags, tag_json)?;
        map.end()
    }
}

/// `{"dataset_inputs", "model_inputs"}`, each omitted when empty.
struct RunInputsJson<'a>(&'a Run);

impl Serialize for RunInputsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let run = self.0;
        let mut map = s.serialize_map(None)?;
        list_entry(
            &mut map,
            "dataset_inputs",
            &run.dataset_inputs,
            DatasetInputJson,
        )?;
        list_entry(&mut map, "model_inputs", &run.model_inputs, ModelInputJson)?;
        map.end()
    }
}

struct RunOutputsJson<'a>(&'a Run);

impl Serialize for RunOutputsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        list_entry(
            &mut map,
            "model_outputs",
            &self.0.model_outputs,
            ModelOutputJson,
        )?;
        map.end()
    }
}

/// A run: `{"data", "info", "inputs"}` and `"outputs"` when the run has any.
pub struct RunJson<'a>(pub &'a Run);

impl Serialize for RunJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let run = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("data", &RunDataJson(run))?;
        map.serialize_entry("info", &RunInfoJson(&run.info))?;
        map.serialize_entry("inputs", &RunInputsJson(run))?;
        if !run.model_outputs.is_empty() {
            map.serialize_entry("outputs", &RunOutputsJson(run))?;
        }
        map.end()
    }
}

/// A runs/search answer, serialized straight from the runs (see [`page`]).
pub struct RunsPage(pub keel_core::Page<Run>);

impl Serialize for RunsPage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(token) = &self.0.next_page_token {
            map.serialize_entry("next_page_token", token)?;
        }
        list_entry(&mut map, "runs", &self.0.items, RunJson)?;
        map.end()
    }
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
        let page = RunsPage(Page {
            items: vec![rich_run()],
            next_page_token: Some("tok".into()),
        });
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
        let text = serde_json::to_string(&page).expect("serializes");
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
        let empty = serde_json::to_string(&RunsPage(Page {
            items: Vec::new(),
            next_page_token: None,
        }))
        .expect("serializes");
        assert_eq!(empty, "{}");
    }
}
