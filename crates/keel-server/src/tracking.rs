//! MLflow tracking endpoints: experiments, runs, logging, metric history and
//! logged models. Each handler validates the request, calls the store and wraps
//! the answer in MLflow's JSON shape; no SQL and no domain rules live here.

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use keel_core::{
    Dataset, DatasetInput, Error, LoggedModelStatus, Metric, ModelInput, ModelOutput, Param,
    RunStatus, Tag, ViewType, now_millis,
};
use keel_store::{CreateRun, ModelOrder, UpdateRun};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Caller;
use crate::dto;
use crate::error::ApiResult;
use crate::request::{
    QueryParams, lenient_i64, lenient_string, metric_value, parse_json, required, required_with,
    run_id, string_list,
};

type Reply = ApiResult<Json<Value>>;

fn empty() -> Reply {
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TagBody {
    key: Option<String>,
    value: Option<String>,
}

impl TagBody {
    fn into_tag(self, field: &str) -> Result<Tag, Error> {
        Ok(Tag::new(
            required(self.key, &format!("{field}.key"))?,
            self.value.unwrap_or_default(),
        ))
    }
}

fn into_tags(tags: Vec<TagBody>, field: &str) -> Result<Vec<Tag>, Error> {
    tags.into_iter()
        .enumerate()
        .map(|(i, t)| t.into_tag(&format!("{field}[{i}]")))
        .collect()
}

fn view_type(value: Option<&str>) -> Result<ViewType, Error> {
    match value {
        None | Some("") => Ok(ViewType::ActiveOnly),
        Some(v) => ViewType::parse(v).ok_or_else(|| {
            Error::invalid_parameter(format!(
                "Invalid view type '{v}': use ACTIVE_ONLY, DELETED_ONLY or ALL"
            ))
        }),
    }
}

// ---------------------------------------------------------------- experiments

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateExperimentBody {
    name: Option<String>,
    artifact_location: Option<String>,
    tags: Vec<TagBody>,
}

pub async fn create_experiment(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: CreateExperimentBody = parse_json(&body)?;
    let name = required(body.name, "name")?;
    let tags = into_tags(body.tags, "tags")?;
    let id = state
        .store
        .create_experiment(&name, body.artifact_location.as_deref(), &tags)
        .await?;
    Ok(Json(json!({"experiment_id": id})))
}

pub async fn get_experiment(State(state): State<AppState>, RawQuery(query): RawQuery) -> Reply {
    let query = QueryParams::parse(query.as_deref());
    let experiment = state
        .store
        .get_experiment(query.required("experiment_id")?)
        .await?;
    Ok(Json(json!({"experiment": dto::experiment(&experiment)})))
}

pub async fn get_experiment_by_name(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Reply {
    let query = QueryParams::parse(query.as_deref());
    let experiment = state
        .store
        .get_experiment_by_name(query.required("experiment_name")?)
        .await?;
    Ok(Json(json!({"experiment": dto::experiment(&experiment)})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SearchExperimentsBody {
    #[serde(deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    page_token: Option<String>,
    filter: Option<String>,
    order_by: Vec<String>,
    #[serde(deserialize_with = "lenient_string")]
    view_type: Option<String>,
}

async fn search_experiments_with(state: &AppState, body: SearchExperimentsBody) -> Reply {
    let page = state
        .store
        .search_experiments(
            view_type(body.view_type.as_deref())?,
            body.max_results.unwrap_or(1000),
            body.filter.as_deref(),
            &body.order_by,
            body.page_token.as_deref(),
        )
        .await?;
    let mut reply =
        json!({"experiments": page.items.iter().map(dto::experiment).collect::<Vec<_>>()});
    if let Some(token) = page.next_page_token {
        reply["next_page_token"] = json!(token);
    }
    Ok(Json(reply))
}

pub async fn search_experiments(State(state): State<AppState>, body: Bytes) -> Reply {
    search_experiments_with(&state, parse_json(&body)?).await
}

pub async fn search_experiments_get(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Reply {
    let query = QueryParams::parse(query.as_deref());
    let body = SearchExperimentsBody {
        max_results: query.int("max_results")?,
        page_token: query.get("page_token").map(str::to_string),
        filter: query.get("filter").map(str::to_string),
        order_by: query.all("order_by"),
        view_type: query.get("view_type").map(str::to_string),
    };
    search_experiments_with(&state, body).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExperimentIdBody {
    #[serde(deserialize_with = "lenient_string")]
    experiment_id: Option<String>,
    new_name: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub async fn update_experiment(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: ExperimentIdBody = parse_json(&body)?;
    let id = required(body.experiment_id, "experiment_id")?;
    if let Some(name) = body.new_name {
        state.store.rename_experiment(&id, &name).await?;
    }
    empty()
}

pub async fn delete_experiment(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: ExperimentIdBody = parse_json(&body)?;
    state
        .store
        .delete_experiment(&required(body.experiment_id, "experiment_id")?)
        .await?;
    empty()
}

pub async fn restore_experiment(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: ExperimentIdBody = parse_json(&body)?;
    state
        .store
        .restore_experiment(&required(body.experiment_id, "experiment_id")?)
        .await?;
    empty()
}

pub async fn set_experiment_tag(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: ExperimentIdBody = parse_json(&body)?;
    let id = required(body.experiment_id, "experiment_id")?;
    let key = required(body.key, "key")?;
    state
        .store
        .set_experiment_tag(&id, &key, &body.value.unwrap_or_default())
        .await?;
    empty()
}

pub async fn delete_experiment_tag(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: ExperimentIdBody = parse_json(&body)?;
    let id = required(body.experiment_id, "experiment_id")?;
    state
        .store
        .delete_experiment_tag(&id, &required(body.key, "key")?)
        .await?;
    empty()
}

// ----------------------------------------------------------------------- runs

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateRunBody {
    #[serde(deserialize_with = "lenient_string")]
    experiment_id: Option<String>,
    user_id: Option<String>,
    run_name: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    start_time: Option<i64>,
    tags: Vec<TagBody>,
}

/// `runs/create`: on a server that authenticates, the run's owner is the
/// caller it authenticated, not the `user_id` the client sends.
pub async fn create_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Reply {
    let body: CreateRunBody = parse_json(&body)?;
    let user_id = if caller.authenticated {
        caller.user
    } else {
        body.user_id.unwrap_or_default()
    };
    let run = state
        .store
        .create_run(CreateRun {
            experiment_id: body.experiment_id.unwrap_or_else(|| "0".to_string()),
            user_id,
            run_name: body.run_name,
            start_time: body.start_time,
            tags: into_tags(body.tags, "tags")?,
        })
        .await?;
    Ok(Json(json!({"run": dto::run(&run)})))
}

pub async fn get_run(State(state): State<AppState>, RawQuery(query): RawQuery) -> Reply {
    let query = QueryParams::parse(query.as_deref());
    let id = run_id(
        query.get("run_id").map(str::to_string),
        query.get("run_uuid").map(str::to_string),
    )?;
    let run = state.store.get_run(&id).await?;
    Ok(Json(json!({"run": dto::run(&run)})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
    status: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    end_time: Option<i64>,
    run_name: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub async fn update_run(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: RunBody = parse_json(&body)?;
    let id = run_id(body.run_id, body.run_uuid)?;
    let status = match body.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            Error::invalid_parameter(format!("Invalid value '{s}' for parameter 'status'"))
        })?),
    };
    let end_time = match (body.end_time, status) {
        (Some(t), _) => Some(t),
        (None, Some(s)) if s.is_terminated() => Some(now_millis()),
        _ => None,
    };
    let info = state
        .store
        .update_run(
            &id,
            UpdateRun {
                status,
                end_time,
                run_name: body.run_name,
            },
        )
        .await?;
    Ok(Json(json!({"run_info": dto::run_info(&info)})))
}

pub async fn delete_run(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: RunBody = parse_json(&body)?;
    state
        .store
        .delete_run(&run_id(body.run_id, body.run_uuid)?)
        .await?;
    empty()
}

pub async fn restore_run(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: RunBody = parse_json(&body)?;
    state
        .store
        .restore_run(&run_id(body.run_id, body.run_uuid)?)
        .await?;
    empty()
}

pub async fn set_tag(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: RunBody = parse_json(&body)?;
    let id = run_id(body.run_id, body.run_uuid)?;
    let key = required(body.key, "key")?;
    state
        .store
        .set_tag(&id, Tag::new(key, body.value.unwrap_or_default()))
        .await?;
    empty()
}

pub async fn delete_tag(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: RunBody = parse_json(&body)?;
    let id = run_id(body.run_id, body.run_uuid)?;
    state
        .store
        .delete_tag(&id, &required(body.key, "key")?)
        .await?;
    empty()
}

pub async fn log_param(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: RunBody = parse_json(&body)?;
    let id = run_id(body.run_id, body.run_uuid)?;
    let key = required(body.key, "key")?;
    let value = required(body.value, "value")?;
    state.store.log_param(&id, Param { key, value }).await?;
    empty()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MetricBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    #[serde(deserialize_with = "metric_value")]
    value: Option<f64>,
    #[serde(deserialize_with = "lenient_i64")]
    timestamp: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    step: Option<i64>,
    model_id: Option<String>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

impl MetricBody {
    /// `index` is the metric's place in a batch, named in errors (`metrics[3].key`).
    fn into_metric(self, index: Option<usize>) -> Result<Metric, Error> {
        let field = |name: &str| match index {
            Some(i) => format!("metrics[{i}].{name}"),
            None => name.to_string(),
        };
        let mut metric = Metric::new(
            required_with(self.key, || field("key"))?,
            required_with(self.value, || field("value"))?,
            required_with(self.timestamp, || field("timestamp"))?,
            self.step.unwrap_or(0),
        );
        metric.model_id = self.model_id.filter(|s| !s.is_empty());
        metric.dataset_name = self.dataset_name.filter(|s| !s.is_empty());
        metric.dataset_digest = self.dataset_digest.filter(|s| !s.is_empty());
        Ok(metric)
    }
}

pub async fn log_metric(State(state): State<AppState>, body: Bytes) -> Reply {
    let mut body: MetricBody = parse_json(&body)?;
    let id = run_id(body.run_id.take(), body.run_uuid.take())?;
    let metric = body.into_metric(None)?;
    state.store.log_metric(&id, metric).await?;
    empty()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogBatchBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
    metrics: Vec<MetricBody>,
    params: Vec<TagBody>,
    tags: Vec<TagBody>,
}

pub async fn log_batch(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: LogBatchBody = parse_json(&body)?;
    let id = run_id(body.run_id, body.run_uuid)?;
    let metrics = body
        .metrics
        .into_iter()
        .enumerate()
        .map(|(i, m)| m.into_metric(Some(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let params = body
        .params
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(Param {
                key: required_with(p.key, || format!("params[{i}].key"))?,
                value: required_with(p.value, || format!("params[{i}].value"))?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let tags = into_tags(body.tags, "tags")?;
    state.store.log_batch(&id, metrics, params, tags).await?;
    empty()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DatasetBody {
    name: Option<String>,
    digest: Option<String>,
    source_type: Option<String>,
    source: Option<String>,
    schema: Option<String>,
    profile: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DatasetInputBody {
    tags: Vec<TagBody>,
    dataset: Option<DatasetBody>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ModelRefBody {
    model_id: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    step: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogInputsBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
    datasets: Vec<DatasetInputBody>,
    models: Vec<ModelRefBody>,
}

pub async fn log_inputs(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: LogInputsBody = parse_json(&body)?;
    let id = run_id(body.run_id, body.run_uuid)?;
    let mut datasets = Vec::new();
    for (i, input) in body.datasets.into_iter().enumerate() {
        let field = format!("datasets[{i}].dataset");
        let dataset = required(input.dataset, &field)?;
        datasets.push(DatasetInput {
            dataset: Dataset {
                name: required(dataset.name, &format!("{field}.name"))?,
                digest: required(dataset.digest, &format!("{field}.digest"))?,
                source_type: dataset.source_type.unwrap_or_default(),
                source: dataset.source.unwrap_or_default(),
                schema: dataset.schema,
                profile: dataset.profile,
            },
            tags: into_tags(input.tags, &format!("datasets[{i}].tags"))?,
        });
    }
    let models = body
        .models
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(ModelInput {
                model_id: required(m.model_id, &format!("models[{i}].model_id"))?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    state.store.log_inputs(&id, datasets, models).await?;
    empty()
}

pub async fn log_outputs(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: LogInputsBody = parse_json(&body)?;
    let id = run_id(body.run_id, body.run_uuid)?;
    let models = body
        .models
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(ModelOutput {
                model_id: required(m.model_id, &format!("models[{i}].model_id"))?,
                step: m.step.unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    state.store.log_outputs(&id, models).await?;
    empty()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogModelBody {
    run_id: Option<String>,
    run_uuid: Option<String>,
    model_json: Option<String>,
}

/// MLflow 2's `runs/log-model`: appends the model's JSON to the `mlflow.log-model.history` tag.
pub async fn log_model(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: LogModelBody = parse_json(&body)?;
    let id = run_id(body.run_id, body.run_uuid)?;
    let model_json = required(body.model_json, "model_json")?;
    let model: Value = serde_json::from_str(&model_json).map_err(|e| {
        Error::invalid_parameter(format!("Invalid value for parameter 'model_json': {e}"))
    })?;
    let run = state.store.get_run(&id).await?;
    let key = "mlflow.log-model.history";
    let mut history: Vec<Value> = run
        .data
        .tags
        .iter()
        .find(|t| t.key == key)
        .and_then(|t| serde_json::from_str(&t.value).ok())
        .unwrap_or_default();
    history.push(model);
    let value = Value::Array(history).to_string();
    state.store.set_tag(&id, Tag::new(key, value)).await?;
    empty()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SearchRunsBody {
    #[serde(deserialize_with = "string_list")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    run_view_type: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    order_by: Vec<String>,
    page_token: Option<String>,
}

pub async fn search_runs(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let body: SearchRunsBody = parse_json(&body)?;
    let page = state
        .store
        .search_runs(
            &body.experiment_ids,
            body.filter.as_deref(),
            view_type(body.run_view_type.as_deref())?,
            body.max_results.unwrap_or(1000),
            &body.order_by,
            body.page_token.as_deref(),
        )
        .await?;
    let answer = dto::runs_page(&page);
    Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
}

pub async fn get_metric_history(State(state): State<AppState>, RawQuery(query): RawQuery) -> Reply {
    let query = QueryParams::parse(query.as_deref());
    let id = run_id(
        query.get("run_id").map(str::to_string),
        query.get("run_uuid").map(str::to_string),
    )?;
    let key = query.required("metric_key")?;
    let page = state
        .store
        .get_metric_history(&id, key, query.int("max_results")?, query.get("page_token"))
        .await?;
    let mut reply = json!({"metrics": page.items.iter().map(dto::metric).collect::<Vec<_>>()});
    if let Some(token) = page.next_page_token {
        reply["next_page_token"] = json!(token);
    }
    Ok(Json(reply))
}

pub async fn get_metric_history_bulk_interval(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Reply {
    let query = QueryParams::parse(query.as_deref());
    let run_ids = query.all("run_ids");
    let key = query.required("metric_key")?;
    let max_results = query.int("max_results")?.unwrap_or(320).clamp(1, 2500) as usize;
    let metrics = state
        .store
        .get_metric_history_bulk_interval(
            &run_ids,
            key,
            query.int("start_step")?,
            query.int("end_step")?,
            max_results,
        )
        .await?;
    Ok(Json(
        json!({"metrics": metrics.iter().map(dto::metric).collect::<Vec<_>>()}),
    ))
}

// -------------------------------------------------------------- logged models

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateLoggedModelBody {
    #[serde(deserialize_with = "lenient_string")]
    experiment_id: Option<String>,
    name: Option<String>,
    model_type: Option<String>,
    source_run_id: Option<String>,
    params: Vec<TagBody>,
    tags: Vec<TagBody>,
}

fn into_params(params: Vec<TagBody>) -> Result<Vec<Param>, Error> {
    params
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(Param {
                key: required(p.key, &format!("params[{i}].key"))?,
                value: p.value.unwrap_or_default(),
            })
        })
        .collect()
}

pub async fn create_logged_model(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: CreateLoggedModelBody = parse_json(&body)?;
    let experiment_id = required(body.experiment_id, "experiment_id")?;
    let model = state
        .store
        .create_logged_model(
            &experiment_id,
            body.name.as_deref(),
            body.source_run_id.as_deref().filter(|s| !s.is_empty()),
            body.model_type.as_deref().filter(|s| !s.is_empty()),
            into_params(body.params)?,
            into_tags(body.tags, "tags")?,
        )
        .await?;
    Ok(Json(json!({"model": dto::logged_model(&model)})))
}

pub async fn get_logged_model(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
) -> Reply {
    let model = state.store.get_logged_model(&model_id).await?;
    Ok(Json(json!({"model": dto::logged_model(&model)})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FinalizeBody {
    #[serde(deserialize_with = "lenient_string")]
    status: Option<String>,
}

pub async fn finalize_logged_model(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Reply {
    let body: FinalizeBody = parse_json(&body)?;
    let status = required(body.status, "status")?;
    let status = LoggedModelStatus::parse(&status).ok_or_else(|| {
        Error::invalid_parameter(format!("Invalid value '{status}' for parameter 'status'"))
    })?;
    let model = state.store.finalize_logged_model(&model_id, status).await?;
    Ok(Json(json!({"model": dto::logged_model(&model)})))
}

pub async fn delete_logged_model(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
) -> Reply {
    state.store.delete_logged_model(&model_id).await?;
    empty()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TagsBody {
    tags: Vec<TagBody>,
    params: Vec<TagBody>,
}

pub async fn set_logged_model_tags(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Reply {
    let body: TagsBody = parse_json(&body)?;
    state
        .store
        .set_logged_model_tags(&model_id, into_tags(body.tags, "tags")?)
        .await?;
    empty()
}

pub async fn delete_logged_model_tag(
    State(state): State<AppState>,
    Path((model_id, key)): Path<(String, String)>,
) -> Reply {
    state.store.delete_logged_model_tag(&model_id, &key).await?;
    empty()
}

pub async fn log_logged_model_params(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Reply {
    let body: TagsBody = parse_json(&body)?;
    state
        .store
        .log_logged_model_params(&model_id, into_params(body.params)?)
        .await?;
    empty()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ModelOrderBody {
    field_name: Option<String>,
    ascending: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SearchLoggedModelsBody {
    #[serde(deserialize_with = "string_list")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    order_by: Vec<ModelOrderBody>,
    page_token: Option<String>,
}

pub async fn search_logged_models(State(state): State<AppState>, body: Bytes) -> Reply {
    let body: SearchLoggedModelsBody = parse_json(&body)?;
    let order_by = body
        .order_by
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            Ok(ModelOrder {
                field_name: required(o.field_name, &format!("order_by[{i}].field_name"))?,
                ascending: o.ascending.unwrap_or(true),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let page = state
        .store
        .search_logged_models(
            &body.experiment_ids,
            body.filter.as_deref(),
            body.max_results.unwrap_or(100),
            &order_by,
            body.page_token.as_deref(),
        )
        .await?;
    Ok(Json(dto::page(
        "models",
        page.items.iter().map(dto::logged_model).collect(),
        page.next_page_token,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_metric_field_is_named_by_its_place_in_the_batch() {
        let body: MetricBody =
            serde_json::from_str(r#"{"value": 1.0, "timestamp": 5}"#).expect("valid body");
        let error = body.into_metric(Some(3)).expect_err("key is missing");
        assert!(error.to_string().contains("'metrics[3].key'"), "{error}");
        let body: MetricBody =
            serde_json::from_str(r#"{"key": "k", "value": 1.0}"#).expect("valid body");
        let error = body.into_metric(None).expect_err("timestamp is missing");
        assert!(error.to_string().contains("'timestamp'"), "{error}");
        let body: MetricBody =
            serde_json::from_str(r#"{"key": "k", "value": 1.0, "timestamp": 2, "step": 4}"#)
                .expect("valid body");
        let metric = body.into_metric(Some(0)).expect("complete metric");
        assert_eq!(
            (metric.key.as_str(), metric.timestamp, metric.step),
            ("k", 2, 4)
        );
    }
}
