//! keel's own REST API (`/api/2.0/keel/…`, docs/api.md) for what MLflow's
//! lacks: full runs and versions in keel's JSON shape (with gate results,
//! lineage and where a version's files are), versions registered with their
//! gate results, gated promotion (the check and the alias move in one
//! transaction) and rollback. Bodies are keel-client's `api` types; every
//! operation runs through keel-client's direct client over the server's
//! store, with the authenticated caller as the actor, so a command on a
//! database and a command through the server obey the same code.

use axum::Json;
use axum::extract::{Extension, RawQuery, State};
use bytes::Bytes;
use keel_client::{Direct, api};
use keel_core::Error;
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::request::{QueryParams, parse_json};

fn direct(state: &AppState, caller: &Caller) -> Direct {
    Direct::new(state.store.clone(), "", state.artifacts.uri(), &caller.user)
}

fn reply<T: Serialize>(value: T) -> ApiResult<Json<T>> {
    Ok(Json(value))
}

/// `GET runs/get?run_id=…`: a run with every field keel records.
pub async fn get_run(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<api::RunReply>> {
    let query = QueryParams::parse(q.as_deref());
    let run = state.store.get_run(query.required("run_id")?).await?;
    reply(api::RunReply { run })
}

/// `POST runs/search {experiment_ids, filter, max_results, order_by}`.
pub async fn search_runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<api::RunsReply>> {
    let request: api::SearchRuns = parse_json(&body)?;
    let runs = direct(&state, &caller).search_runs(request).await?;
    reply(api::RunsReply { runs })
}

/// `GET model-versions/get?uri=models:/…` or `?name=…&version=…`: the
/// version and where its files are.
pub async fn get_model_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<api::VersionReply>> {
    let query = QueryParams::parse(q.as_deref());
    let uri = match query.get("uri") {
        Some(uri) => uri.to_string(),
        None => {
            let name = query.required("name")?;
            let version = keel_store::parse_version(name, query.required("version")?)?;
            format!("{}{name}/{version}", keel_core::uri::MODELS_SCHEME)
        }
    };
    reply(direct(&state, &caller).resolve_model_uri(&uri).await?)
}

/// `POST model-versions/search {filter, max_results}`.
pub async fn search_model_versions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<api::VersionsReply>> {
    let request: api::SearchVersions = parse_json(&body)?;
    let model_versions = direct(&state, &caller)
        .search_model_versions(
            request.filter.as_deref().unwrap_or_default(),
            request.max_results.unwrap_or(1000),
        )
        .await?;
    reply(api::VersionsReply { model_versions })
}

/// `POST model-versions/create`: registers a version with its gate results
/// and lineage; the registered model is created when missing; the audit row
/// names the caller.
pub async fn create_model_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<api::ModelVersionReply>> {
    let request: api::CreateVersion = parse_json(&body)?;
    if request.name.is_empty() || request.source.is_empty() {
        return Err(Error::invalid_parameter("'name' and 'source' are required").into());
    }
    crate::registry::check_source(&state, &request.source)?;
    let model_version = direct(&state, &caller)
        .create_model_version(request)
        .await?;
    state.registry_changed();
    reply(api::ModelVersionReply { model_version })
}

/// `GET registered-models/get?name=…`.
pub async fn get_registered_model(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<api::RegisteredModelReply>> {
    let query = QueryParams::parse(q.as_deref());
    let registered_model = state
        .store
        .get_registered_model(query.required("name")?)
        .await?;
    reply(api::RegisteredModelReply { registered_model })
}

/// `GET registered-models/list?max_results=…` (at most 1000).
pub async fn list_registered_models(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<api::RegisteredModelsReply>> {
    let query = QueryParams::parse(q.as_deref());
    let max = query
        .get("max_results")
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                Error::invalid_parameter(format!("Invalid value {v:?} for 'max_results'"))
            })
        })
        .transpose()?
        .unwrap_or(1000);
    let registered_models = direct(&state, &caller).list_registered_models(max).await?;
    reply(api::RegisteredModelsReply { registered_models })
}

/// Promotes as `caller` (the REST API and the web UI's button): the gate
/// check and the alias move in one transaction, the caller in the audit row.
/// The permission (see [`AppState::alias_permission`]) is the caller's to check first.
pub async fn promote_as(
    state: &AppState,
    caller: &Caller,
    request: api::Promote,
) -> Result<keel_core::AuditEntry, Error> {
    if request.name.is_empty() || request.alias.is_empty() || request.version.is_empty() {
        return Err(Error::invalid_parameter(
            "'name', 'version' and 'alias' are required",
        ));
    }
    let entry = direct(state, caller).promote(request).await?;
    state.registry_changed();
    Ok(entry)
}

/// Rolls an alias back as `caller` (the REST API and the web UI's button);
/// needs MANAGE on the model, the caller's to check first.
pub async fn rollback_as(
    state: &AppState,
    caller: &Caller,
    request: api::Rollback,
) -> Result<keel_core::AuditEntry, Error> {
    if request.name.is_empty() || request.alias.is_empty() {
        return Err(Error::invalid_parameter("'name' and 'alias' are required"));
    }
    let entry = direct(state, caller).rollback(request).await?;
    state.registry_changed();
    Ok(entry)
}

/// `POST registry/promote {name, version, alias, force?, reason?, cause?}`:
/// the gate check and the alias move in one transaction.
pub async fn promote(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<api::EntryReply>> {
    let request: api::Promote = parse_json(&body)?;
    let entry = promote_as(&state, &caller, request).await?;
    reply(api::EntryReply {
        entry: (&entry).into(),
    })
}

/// `POST registry/rollback {name, alias, reason?, cause?}`.
pub async fn rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<api::EntryReply>> {
    let request: api::Rollback = parse_json(&body)?;
    let entry = rollback_as(&state, &caller, request).await?;
    reply(api::EntryReply {
        entry: (&entry).into(),
    })
}

/// `GET runs/lineage?run_id=…`: git state, stages, datasets, params, gates,
/// and the versions registered from the run.
pub async fn lineage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<api::Lineage>> {
    let query = QueryParams::parse(q.as_deref());
    reply(
        direct(&state, &caller)
            .lineage(query.required("run_id")?)
            .await?,
    )
}

/// `POST monitor/verdicts {model, window_start, rows, drifted, verdict}`.
pub async fn record_verdict(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<api::VerdictReply>> {
    let request: api::RecordVerdict = parse_json(&body)?;
    let verdict = direct(&state, &caller).record_verdict(request).await?;
    reply(api::VerdictReply { verdict })
}

/// `GET monitor/verdicts?model=…&max_results=…`, newest first.
pub async fn verdicts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<api::VerdictsReply>> {
    let query = QueryParams::parse(q.as_deref());
    let max = match query.get("max_results") {
        Some(v) => v.parse::<i64>().map_err(|_| {
            Error::invalid_parameter(format!("Invalid value {v:?} for 'max_results'"))
        })?,
        None => 100,
    };
    let verdicts = direct(&state, &caller)
        .verdicts(query.get("model"), max)
        .await?;
    reply(api::VerdictsReply { verdicts })
}
