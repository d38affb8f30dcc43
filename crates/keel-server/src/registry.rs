//! MLflow model-registry endpoints (`registered-models/...`, `model-versions/...`)
//! and keel's registry extras: the audit log, gated promotion, rollback and
//! the change feed (`/api/2.0/keel/registry/changes`, a long poll on the
//! registry's change counter).
//!
//! Registry requests arrive as JSON bodies (POST, PATCH, DELETE) or query
//! strings (GET); [`crate::request::params`] merges both so every handler reads one struct.

use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, RawQuery, State};
use bytes::Bytes;
use keel_core::{Error, Stage, Tag};
use keel_store::{Actor, CreateModelVersion, parse_version};
use serde::Deserialize;

use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Caller;
use crate::dto;
use crate::error::ApiResult;
use crate::request::{lenient_i64, lenient_string, params, required, string_list};

type Reply = ApiResult<Json<Value>>;

/// The audit actor of a request: the authenticated caller (never a name the
/// client sends), with the reason and cause it gave.
fn actor(caller: &Caller, reason: Option<String>, cause: Option<String>) -> Actor {
    Actor {
        user: caller.user.clone(),
        reason: reason.unwrap_or_default(),
        cause: cause.unwrap_or_default(),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TagBody {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ModelBody {
    name: Option<String>,
    new_name: Option<String>,
    description: Option<String>,
    tags: Vec<TagBody>,
    key: Option<String>,
    value: Option<String>,
    alias: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    version: Option<String>,
    filter: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    #[serde(deserialize_with = "string_list")]
    order_by: Vec<String>,
    page_token: Option<String>,
    #[serde(deserialize_with = "string_list")]
    stages: Vec<String>,
}

fn into_tags(tags: Vec<TagBody>) -> Result<Vec<Tag>, Error> {
    tags.into_iter()
        .enumerate()
        .map(|(i, t)| {
            Ok(Tag::new(
                required(t.key, &format!("tags[{i}].key"))?,
                t.value.unwrap_or_default(),
            ))
        })
        .collect()
}

fn name_of(body: &mut ModelBody) -> Result<String, Error> {
    required(body.name.take().filter(|n| !n.is_empty()), "name")
}

fn version_of(name: &str, body: &mut ModelBody) -> Result<i64, Error> {
    parse_version(name, &required(body.version.take(), "version")?)
}

// ------------------------------------------------------------ registered models

pub async fn create_registered_model(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let tags = into_tags(body.tags)?;
    let model = state
        .store
        .create_registered_model(&name, body.description.as_deref(), &tags)
        .await?;
    Ok(Json(
        json!({"registered_model": dto::registered_model(&model)}),
    ))
}

pub async fn get_registered_model(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let model = state
        .store
        .get_registered_model(&name_of(&mut body)?)
        .await?;
    Ok(Json(
        json!({"registered_model": dto::registered_model(&model)}),
    ))
}

pub async fn rename_registered_model(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let new_name = required(body.new_name, "new_name")?;
    let model = state
        .store
        .rename_registered_model(&name, &new_name)
        .await?;
    state.registry_changed();
    Ok(Json(
        json!({"registered_model": dto::registered_model(&model)}),
    ))
}

pub async fn update_registered_model(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let model = state
        .store
        .update_registered_model(&name, &body.description.unwrap_or_default())
        .await?;
    Ok(Json(
        json!({"registered_model": dto::registered_model(&model)}),
    ))
}

pub async fn delete_registered_model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    state
        .store
        .delete_registered_model(&name_of(&mut body)?, &actor(&caller, None, None))
        .await?;
    state.registry_changed();
    Ok(Json(json!({})))
}

pub async fn search_registered_models(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let body: ModelBody = params(q, &body)?;
    let page = state
        .store
        .search_registered_models(
            body.filter.as_deref(),
            body.max_results.unwrap_or(100),
            &body.order_by,
            body.page_token.as_deref(),
        )
        .await?;
    Ok(Json(dto::page(
        "registered_models",
        page.items.iter().map(dto::registered_model).collect(),
        page.next_page_token,
    )))
}

pub async fn get_latest_versions(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let stages = body
        .stages
        .iter()
        .map(|s| {
            Stage::parse(s).ok_or_else(|| Error::invalid_parameter(format!("Invalid stage '{s}'")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let versions = state.store.get_latest_versions(&name, &stages).await?;
    Ok(Json(
        json!({"model_versions": versions.iter().map(|v| dto::model_version(v, true)).collect::<Vec<_>>()}),
    ))
}

pub async fn set_registered_model_tag(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let key = required(body.key, "key")?;
    state
        .store
        .set_registered_model_tag(&name, &key, &body.value.unwrap_or_default())
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_registered_model_tag(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    state
        .store
        .delete_registered_model_tag(&name, &required(body.key, "key")?)
        .await?;
    Ok(Json(json!({})))
}

pub async fn set_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let alias = required(body.alias.take(), "alias")?;
    let version = version_of(&name, &mut body)?;
    let actor = actor(&caller, None, None);
    if state.is_protected(&alias) {
        // No side door past the gates: MLflow's set-alias obeys the same
        // promotion rule as `keel models promote` for a protected alias.
        state
            .store
            .promote(&name, &alias, version, false, &actor)
            .await
            .map_err(|e| {
                protected_refusal(e, &format!("alias '{alias}'"), &alias, &name, version)
            })?;
    } else {
        state
            .store
            .set_registered_model_alias(&name, &alias, version, &actor)
            .await?;
    }
    state.registry_changed();
    Ok(Json(json!({})))
}

/// The promotion rule's refusal, told to an MLflow client: which rule, and
/// the keel command that forces the move with an audited reason.
fn protected_refusal(error: Error, what: &str, alias: &str, name: &str, version: i64) -> Error {
    if error.code != keel_core::ErrorCode::InvalidState {
        return error;
    }
    Error::invalid_state(format!(
        "{what} of model '{name}' is protected on this server (keel server --protected-alias {alias}): \
         a version moves there only when its recorded gates passed. {} To move it anyway, with a \
         reason kept in the audit log: keel models promote {name} {version} --alias {alias} --force \
         --reason \"...\"",
        error.message
    ))
}

pub async fn delete_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let alias = required(body.alias.take(), "alias")?;
    state
        .store
        .delete_registered_model_alias(&name, &alias, &actor(&caller, None, None))
        .await?;
    state.registry_changed();
    Ok(Json(json!({})))
}

pub async fn get_by_alias(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let alias = required(body.alias.take(), "alias")?;
    let version = state
        .store
        .get_model_version_by_alias(&name, &alias)
        .await?;
    Ok(Json(
        json!({"model_version": dto::model_version(&version, true)}),
    ))
}

// --------------------------------------------------------------- model versions

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateVersionBody {
    name: Option<String>,
    source: Option<String>,
    run_id: Option<String>,
    run_link: Option<String>,
    model_id: Option<String>,
    description: Option<String>,
    tags: Vec<TagBody>,
}

pub async fn create_model_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let body: CreateVersionBody = params(q, &body)?;
    let name = required(body.name, "name")?;
    let source = required(body.source, "source")?;
    check_source(&state, &source)?;
    // MLflow's create-version needs the registered model (keel's own API creates it).
    state.store.get_registered_model(&name).await?;
    let mut run_id = body.run_id.filter(|r| !r.is_empty());
    let model_id = body.model_id.filter(|m| !m.is_empty());
    if run_id.is_none()
        && let Some(model_id) = &model_id
    {
        run_id = state.store.get_logged_model(model_id).await?.source_run_id;
    }
    let version = state
        .store
        .create_model_version(
            CreateModelVersion {
                name,
                source,
                run_id,
                run_link: body.run_link,
                model_id,
                description: body.description,
                tags: into_tags(body.tags)?,
                user_id: String::new(),
                signature: None,
                lineage: None,
                gate_results: None,
            },
            &actor(&caller, None, None),
        )
        .await?;
    state.registry_changed();
    Ok(Json(
        json!({"model_version": dto::model_version(&version, true)}),
    ))
}

/// A version's files must be in this server's artifact store: `runs:/…`,
/// `models:/…`, `mlflow-artifacts:/…`, or a location under the store's root.
/// Anything else (`/etc/passwd`, another bucket, `http://…`) would make
/// whoever downloads the version read from a place this server never wrote.
pub(crate) fn check_source(state: &AppState, source: &str) -> Result<(), Error> {
    use keel_core::uri::{ModelUri, ProxiedUri, RunUri};
    if let Some(run) = RunUri::parse(source) {
        return run.map(|_| ());
    }
    if let Some(proxied) = ProxiedUri::parse(source) {
        return proxied.map(|_| ());
    }
    if source.starts_with("models:") {
        return ModelUri::parse(source).map(|_| ());
    }
    if in_store(state, source).is_some() {
        return Ok(());
    }
    Err(Error::invalid_parameter(format!(
        "Invalid value '{source}' for parameter 'source': a model version's files must be in this \
         server's artifact store (runs:/RUN_ID/PATH, models:/..., mlflow-artifacts:/PATH, or a \
         location under {})",
        state.artifacts.uri()
    )))
}

/// The path of `location` inside this server's artifact store (`""` for the
/// root), when it is a plain location under the store's root (no `..`).
fn in_store(state: &AppState, location: &str) -> Option<String> {
    let local = |uri: &str| uri.strip_prefix("file://").unwrap_or(uri).to_string();
    let root = local(state.artifacts.uri());
    let root = root.trim_end_matches('/');
    let candidate = local(location);
    if candidate.split('/').any(|segment| segment == "..") {
        return None;
    }
    let rest = candidate.strip_prefix(root)?;
    (rest.is_empty() || rest.starts_with('/')).then(|| rest.trim_start_matches('/').to_string())
}

pub async fn get_model_version(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let version = version_of(&name, &mut body)?;
    let version = state.store.get_model_version(&name, version).await?;
    Ok(Json(
        json!({"model_version": dto::model_version(&version, true)}),
    ))
}

pub async fn update_model_version(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let version = version_of(&name, &mut body)?;
    let version = state
        .store
        .update_model_version(&name, version, &body.description.unwrap_or_default())
        .await?;
    Ok(Json(
        json!({"model_version": dto::model_version(&version, true)}),
    ))
}

pub async fn delete_model_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let version = version_of(&name, &mut body)?;
    state
        .store
        .delete_model_version(&name, version, &actor(&caller, None, None))
        .await?;
    state.registry_changed();
    Ok(Json(json!({})))
}

pub async fn search_model_versions(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let body: ModelBody = params(q, &body)?;
    let page = state
        .store
        .search_model_versions(
            body.filter.as_deref(),
            body.max_results.unwrap_or(10_000),
            &body.order_by,
            body.page_token.as_deref(),
        )
        .await?;
    Ok(Json(dto::page(
        "model_versions",
        page.items
            .iter()
            .map(|v| dto::model_version(v, true))
            .collect(),
        page.next_page_token,
    )))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TransitionBody {
    name: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    version: Option<String>,
    stage: Option<String>,
    #[serde(deserialize_with = "lenient_bool")]
    archive_existing_versions: Option<bool>,
}

fn lenient_bool<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrString {
        B(bool),
        S(String),
    }
    Ok(match Option::<BoolOrString>::deserialize(deserializer)? {
        None => None,
        Some(BoolOrString::B(b)) => Some(b),
        Some(BoolOrString::S(s)) => Some(s.eq_ignore_ascii_case("true")),
    })
}

pub async fn transition_stage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let body: TransitionBody = params(q, &body)?;
    let name = required(body.name, "name")?;
    let version = parse_version(&name, &required(body.version, "version")?)?;
    let stage_text = required(body.stage, "stage")?;
    let stage = Stage::parse(&stage_text).ok_or_else(|| {
        Error::invalid_parameter(format!("Invalid Model Version stage: {stage_text}"))
    })?;
    // A stage named like a protected alias (Production ~ `production`) moves
    // by the same promotion rule as the alias.
    let alias = stage.as_str().to_ascii_lowercase();
    let gated = state.is_protected(&alias);
    let version = state
        .store
        .transition_stage_checked(
            &name,
            version,
            stage,
            body.archive_existing_versions.unwrap_or(false),
            gated,
            &actor(&caller, None, None),
        )
        .await
        .map_err(|e| {
            protected_refusal(
                e,
                &format!("stage '{}'", stage.as_str()),
                &alias,
                &name,
                version,
            )
        })?;
    state.registry_changed();
    Ok(Json(
        json!({"model_version": dto::model_version(&version, true)}),
    ))
}

pub async fn set_model_version_tag(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let version = version_of(&name, &mut body)?;
    let key = required(body.key, "key")?;
    state
        .store
        .set_model_version_tag(&name, version, &key, &body.value.unwrap_or_default())
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_model_version_tag(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let version = version_of(&name, &mut body)?;
    state
        .store
        .delete_model_version_tag(&name, version, &required(body.key, "key")?)
        .await?;
    Ok(Json(json!({})))
}

pub async fn get_download_uri(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let mut body: ModelBody = params(q, &body)?;
    let name = name_of(&mut body)?;
    let version = version_of(&name, &mut body)?;
    let version = state.store.get_model_version(&name, version).await?;
    let mut uri = state.store.version_artifact_uri(&version).await?;
    // A location in this server's store is answered as the proxy's URI, so a
    // client without the store's credentials (a serving replica) can fetch it.
    if keel_core::uri::ProxiedUri::parse(&uri).is_none()
        && let Some(path) = in_store(&state, &uri)
    {
        uri = keel_core::uri::ProxiedUri { host: None, path }.to_string();
    }
    Ok(Json(json!({"artifact_uri": uri})))
}

// ------------------------------------------------------------------ keel extras

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeelBody {
    name: Option<String>,
    alias: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    version: Option<String>,
    #[serde(deserialize_with = "lenient_bool")]
    force: Option<bool>,
    reason: Option<String>,
    cause: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    since: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    timeout_ms: Option<i64>,
}

/// `GET /api/2.0/keel/registry/audit?name=NAME`: the audit log, newest first.
pub async fn audit(State(state): State<AppState>, RawQuery(q): RawQuery, body: Bytes) -> Reply {
    let body: KeelBody = params(q, &body)?;
    let entries = state
        .store
        .registry_audit(body.name.as_deref(), body.max_results.unwrap_or(1000))
        .await?;
    Ok(Json(
        json!({"entries": entries.iter().map(dto::audit_entry).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GatesBody {
    name: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    version: Option<String>,
    gate_results: Option<Value>,
}

/// `POST /api/2.0/keel/registry/gates {name, version, gate_results: {"passed": bool, "gates": [...]}}`:
/// records a version's gate results (what `promote` checks).
pub async fn record_gates(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Reply {
    let body: GatesBody = params(q, &body)?;
    let name = required(body.name, "name")?;
    let version = parse_version(&name, &required(body.version, "version")?)?;
    let gates = required(body.gate_results, "gate_results")?;
    if !gates.get("passed").is_some_and(Value::is_boolean) {
        return Err(
            Error::invalid_parameter("'gate_results' needs a boolean field 'passed'").into(),
        );
    }
    state
        .store
        .set_model_version_gates(&name, version, &gates.to_string())
        .await?;
    Ok(Json(json!({})))
}

/// `GET /api/2.0/keel/registry/changes?since=N&timeout_ms=T`: answers at once
/// with the audit entries after registry version N, or waits up to T ms
/// (at most 60 s) for the next change. Followers keep the returned
/// `registry_version` and ask again.
pub async fn changes(State(state): State<AppState>, RawQuery(q): RawQuery, body: Bytes) -> Reply {
    let body: KeelBody = params(q, &body)?;
    let since = body.since.unwrap_or(0);
    let timeout = Duration::from_millis(body.timeout_ms.unwrap_or(0).clamp(0, 60_000) as u64);
    let mut watch = state.registry_watch();
    if *watch.borrow_and_update() <= since && !timeout.is_zero() {
        let _ = tokio::time::timeout(timeout, async {
            while *watch.borrow_and_update() <= since {
                if watch.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
    let registry_version = state.store.registry_version().await?;
    let entries = if registry_version > since {
        state.store.registry_changes_since(since, 1000).await?
    } else {
        vec![]
    };
    Ok(Json(json!({
        "registry_version": registry_version,
        "changes": entries.iter().map(dto::audit_entry).collect::<Vec<_>>(),
    })))
}
