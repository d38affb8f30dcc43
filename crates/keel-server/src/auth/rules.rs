//! The permission table: what every route needs, in one place.
//!
//! [`rule`] maps (method, route) to a [`Rule`]; [`authorize`] resolves the
//! resource the request names (from its query, its JSON body or its path),
//! asks [`super::Auth::permission`] what the caller holds there and refuses
//! with 403 `PERMISSION_DENIED` naming the permission needed. Admins never
//! get here. A route under `/api/` that the table does not know is refused
//! (fail closed); the web UI's pages check readability themselves through
//! keel-ui's `access.rs`, which asks the same [`super::Auth`].
//!
//! MLflow's levels (`mlflow/server/auth/permissions.py`): READ reads, USE
//! reads (and uses), EDIT writes (log, tag, rename, create runs and
//! versions), MANAGE deletes and grants. keel's rules on top: moving or
//! deleting a protected alias (`--protected-alias`, default `production`) and
//! rollback need MANAGE on the model; recording gates needs EDIT on the run's
//! experiment.

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use keel_core::Error;
use keel_core::access::{Permission, ResourceType};
use keel_core::uri::ModelUri;
use serde::Deserialize;
use serde_json::Value;

use super::Caller;
use crate::AppState;
use crate::request::QueryParams;

/// Where an experiment is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exp {
    /// `experiment_id` (query or body); `default_zero` where the handler
    /// defaults it to the Default experiment (runs/create).
    Id { default_zero: bool },
    /// `experiment_name` (query).
    Name,
    /// Every id in `experiment_ids` (body).
    Ids,
    /// The experiment of `run_id` / `run_uuid`.
    Run,
    /// The experiments of every `run_ids` value (query).
    Runs,
    /// The experiment of the logged model in the path.
    LoggedModel,
    /// The first segment of an artifact path (`mlflow-artifacts:/<experiment>/…`).
    ArtifactPath,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Any authenticated caller.
    Authenticated,
    /// Admins only.
    Admin,
    /// The user named by `username` (absent: the caller), or an admin.
    SelfOrAdmin,
    /// A permission on an experiment.
    Experiment(Exp, Permission),
    /// A permission on the registered model `name` (or `uri`'s model).
    Model(Permission),
    /// Setting or deleting an alias (and keel's promote): EDIT, MANAGE when the alias is protected.
    Alias,
    /// A new version: EDIT on an existing model; a new model is a creation
    /// (its creator gets MANAGE).
    CreateVersion,
    /// A new registered model; its creator gets MANAGE.
    CreateModel,
    /// A new experiment; its creator gets MANAGE.
    CreateExperiment,
    /// Gate results on a version: EDIT on the version's run's experiment.
    Gates,
    /// Grant or revoke: MANAGE on the resource named (`*`: admins only).
    ManageResource,
    /// A token revocation: its owner or an admin.
    TokenOwner,
    /// A listing: allowed, and answered with what the caller may read.
    Listing,
}

/// What to do once the handler succeeded.
pub(crate) enum After {
    GrantExperiment,
    GrantModel(String),
    FilterListing,
}

/// The permission table.
pub(crate) fn rule(method: &Method, path: &str) -> Rule {
    use Exp::*;
    use Permission::*;
    use Rule::*;
    let path = path
        .strip_prefix("/ajax-api/")
        .map_or_else(|| path.to_string(), |rest| format!("/api/{rest}"));
    let get = method == Method::GET;
    let post = method == Method::POST;
    let delete = method == Method::DELETE;
    let patch = method == Method::PATCH;
    let put = method == Method::PUT;
    if let Some(rest) = path.strip_prefix("/api/2.0/mlflow-artifacts/artifacts") {
        let _ = rest;
        return match () {
            _ if get => Experiment(ArtifactPath, Read),
            _ if put => Experiment(ArtifactPath, Edit),
            _ if delete => Experiment(ArtifactPath, Manage),
            _ => Admin,
        };
    }
    if let Some(route) = path.strip_prefix("/api/2.0/mlflow/") {
        if let Some(id_route) = route.strip_prefix("logged-models/") {
            if id_route == "search" {
                return if post { Experiment(Ids, Read) } else { Admin };
            }
            let segments = id_route.split('/').count();
            return match (
                segments,
                id_route.contains("/tags"),
                id_route.ends_with("/params"),
            ) {
                (1, _, _) if get => Experiment(LoggedModel, Read),
                (1, _, _) if patch => Experiment(LoggedModel, Edit),
                (1, _, _) if delete => Experiment(LoggedModel, Manage),
                (2, true, _) if patch => Experiment(LoggedModel, Edit),
                (3, true, _) if delete => Experiment(LoggedModel, Edit),
                (2, _, true) if post => Experiment(LoggedModel, Edit),
                _ => Admin,
            };
        }
        return match (route, get, post, patch, delete) {
            ("experiments/create", _, true, _, _) => CreateExperiment,
            ("experiments/get", true, ..) => Experiment(
                Id {
                    default_zero: false,
                },
                Read,
            ),
            ("experiments/get-by-name", true, ..) => Experiment(Name, Read),
            ("experiments/search", ..) => Listing,
            ("experiments/update", _, true, _, _)
            | ("experiments/set-experiment-tag", _, true, _, _)
            | ("experiments/delete-experiment-tag", _, true, _, _) => Experiment(
                Id {
                    default_zero: false,
                },
                Edit,
            ),
            ("experiments/delete", _, true, _, _) | ("experiments/restore", _, true, _, _) => {
                Experiment(
                    Id {
                        default_zero: false,
                    },
                    Manage,
                )
            }
            ("runs/create", _, true, _, _) => Experiment(Id { default_zero: true }, Edit),
            ("runs/get", true, ..) | ("metrics/get-history", true, ..) => Experiment(Run, Read),
            ("artifacts/list", true, ..) => Experiment(Run, Read),
            ("metrics/get-history-bulk-interval", true, ..) => Experiment(Runs, Read),
            ("runs/search", _, true, _, _) => Experiment(Ids, Read),
            ("runs/update", _, true, _, _)
            | ("runs/log-metric", _, true, _, _)
            | ("runs/log-parameter", _, true, _, _)
            | ("runs/log-batch", _, true, _, _)
            | ("runs/log-inputs", _, true, _, _)
            | ("runs/outputs", _, true, _, _)
            | ("runs/log-model", _, true, _, _)
            | ("runs/set-tag", _, true, _, _)
            | ("runs/delete-tag", _, true, _, _) => Experiment(Run, Edit),
            ("runs/delete", _, true, _, _) | ("runs/restore", _, true, _, _) => {
                Experiment(Run, Manage)
            }
            ("logged-models", _, true, _, _) => Experiment(
                Id {
                    default_zero: false,
                },
                Edit,
            ),
            ("registered-models/create", _, true, _, _) => CreateModel,
            ("registered-models/get", true, ..)
            | ("registered-models/get-latest-versions", ..)
            | ("model-versions/get", true, ..)
            | ("model-versions/get-download-uri", true, ..)
            | ("registered-models/alias", true, ..) => Model(Read),
            ("registered-models/rename", _, true, _, _)
            | ("registered-models/update", _, _, true, _)
            | ("registered-models/set-tag", _, true, _, _)
            | ("registered-models/delete-tag", _, _, _, true)
            | ("model-versions/update", _, _, true, _)
            | ("model-versions/transition-stage", _, true, _, _)
            | ("model-versions/set-tag", _, true, _, _)
            | ("model-versions/delete-tag", _, _, _, true) => Model(Edit),
            ("registered-models/delete", _, _, _, true)
            | ("model-versions/delete", _, _, _, true) => Model(Manage),
            ("registered-models/alias", _, true, _, _)
            | ("registered-models/alias", _, _, _, true) => Alias,
            ("registered-models/search", ..) | ("model-versions/search", ..) => Listing,
            ("model-versions/create", _, true, _, _) => CreateVersion,
            ("users/create", _, true, _, _)
            | ("users/update-admin", _, _, true, _)
            | ("users/delete", _, _, _, true) => Admin,
            ("users/get", true, ..) | ("users/update-password", _, _, true, _) => SelfOrAdmin,
            ("users/list", true, ..) | ("users/current", true, ..) => Authenticated,
            _ => Admin,
        };
    }
    if let Some(route) = path.strip_prefix("/api/3.0/mlflow/") {
        return match (route, get, post) {
            ("users/permissions/grant", _, true) | ("users/permissions/revoke", _, true) => {
                ManageResource
            }
            ("users/permissions/get", true, _) | ("users/permissions/list", true, _) => SelfOrAdmin,
            ("users/current/permissions", true, _) => Authenticated,
            _ => Admin,
        };
    }
    if let Some(route) = path.strip_prefix("/api/2.0/keel/") {
        return match (route, get, post) {
            ("registry/audit", ..) => Listing,
            ("registry/promote", _, true) => Alias,
            ("registry/rollback", _, true) => Model(Manage),
            ("registry/gates", _, true) => Gates,
            ("registry/changes", true, _) => Authenticated,
            ("runs/get", true, _) | ("runs/lineage", true, _) => Experiment(Run, Read),
            // A served model need not be registered: any authenticated
            // watcher may record, any authenticated user may read.
            ("monitor/verdicts", ..) => Authenticated,
            ("runs/search", _, true) => Experiment(Ids, Read),
            ("model-versions/get", true, _) | ("registered-models/get", true, _) => Model(Read),
            ("model-versions/search", _, true) | ("registered-models/list", true, _) => Listing,
            ("model-versions/create", _, true) => CreateVersion,
            ("tokens/create", _, true) | ("tokens/list", true, _) => SelfOrAdmin,
            ("tokens/revoke", _, true) => TokenOwner,
            _ => Admin,
        };
    }
    if path.starts_with("/api/") {
        return Admin;
    }
    // The web UI's pages: each checks what it shows (keel-ui's access.rs).
    Authenticated
}

/// A JSON value that may be a string or a number (ids come both ways).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Lenient {
    Text(String),
    Number(serde_json::Number),
    Other(serde::de::IgnoredAny),
}

impl Lenient {
    fn text(self) -> Option<String> {
        match self {
            Lenient::Text(text) => Some(text),
            Lenient::Number(number) => Some(number.to_string()),
            Lenient::Other(_) => None,
        }
    }
}

/// The fields of a request body the table reads; everything else is skipped
/// without being built.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BodyFields {
    experiment_id: Option<Lenient>,
    experiment_ids: Option<Vec<Lenient>>,
    run_id: Option<String>,
    run_uuid: Option<String>,
    name: Option<String>,
    alias: Option<String>,
    version: Option<Lenient>,
    username: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<Lenient>,
    id: Option<Lenient>,
    uri: Option<String>,
}

/// A request's query and the table's body fields.
struct Fields {
    query: QueryParams,
    body: BodyFields,
}

impl Fields {
    fn text(&self, key: &str) -> Option<String> {
        let from_body = match key {
            "experiment_id" => self.body.experiment_id.clone().and_then(Lenient::text),
            "run_id" => self.body.run_id.clone(),
            "run_uuid" => self.body.run_uuid.clone(),
            "name" => self.body.name.clone(),
            "alias" => self.body.alias.clone(),
            "version" => self.body.version.clone().and_then(Lenient::text),
            "username" => self.body.username.clone(),
            "resource_type" => self.body.resource_type.clone(),
            "resource_id" => self.body.resource_id.clone().and_then(Lenient::text),
            "id" => self.body.id.clone().and_then(Lenient::text),
            "uri" => self.body.uri.clone(),
            _ => None,
        };
        from_body
            .or_else(|| self.query.get(key).map(str::to_string))
            .filter(|v| !v.is_empty())
    }

    fn required(&self, key: &str) -> Result<String, Error> {
        self.text(key).ok_or_else(|| {
            Error::invalid_parameter(format!("Missing value for required parameter '{key}'"))
        })
    }

    fn run_id(&self) -> Result<String, Error> {
        self.text("run_id")
            .or_else(|| self.text("run_uuid"))
            .ok_or_else(|| {
                Error::invalid_parameter("Missing value for required parameter 'run_id'")
            })
    }

    fn experiment_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .body
            .experiment_ids
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(Lenient::text)
            .collect();
        ids.extend(self.query.all("experiment_ids"));
        ids
    }

    /// The model a registry request names: `name`, else `uri`'s model.
    fn model_name(&self) -> Result<String, Error> {
        if let Some(name) = self.text("name") {
            return Ok(name);
        }
        if let Some(uri) = self.text("uri") {
            return match ModelUri::parse(&uri)? {
                ModelUri::Version { name, .. }
                | ModelUri::Alias { name, .. }
                | ModelUri::Latest { name }
                | ModelUri::Stage { name, .. } => Ok(name),
                ModelUri::LoggedModel { .. } => Err(Error::permission_denied(
                    "A models:/m-… URI names no registered model: ask an admin",
                )),
            };
        }
        Err(Error::invalid_parameter(
            "Missing value for required parameter 'name'",
        ))
    }
}

fn needs_body(rule: Rule, method: &Method, path: &str) -> bool {
    if *method == Method::GET || path.contains("/mlflow-artifacts/") {
        return false;
    }
    !matches!(
        rule,
        Rule::Authenticated | Rule::Admin | Rule::CreateExperiment | Rule::Listing
    )
}

/// Checks `request` against the table for a non-admin `caller`; reads (and
/// puts back) a JSON body when the rule needs one of its fields.
pub(crate) async fn authorize(
    state: &AppState,
    caller: &Caller,
    request: &mut Request,
) -> Result<Option<After>, Error> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let rule = rule(&method, &path);
    if caller.admin {
        return Ok(match rule {
            Rule::CreateExperiment => Some(After::GrantExperiment),
            _ => None,
        });
    }
    let mut body = BodyFields::default();
    if needs_body(rule, &method, &path) {
        let taken = std::mem::replace(request.body_mut(), Body::empty());
        let bytes = axum::body::to_bytes(taken, crate::MAX_JSON_BODY)
            .await
            .map_err(|_| {
                Error::bad_request(format!(
                    "The request body is unreadable or larger than {} bytes",
                    crate::MAX_JSON_BODY
                ))
            })?;
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            // A body that is not JSON is the handler's to refuse; the table then
            // finds no field and refuses first.
            body = serde_json::from_slice(&bytes).unwrap_or_default();
        }
        *request.body_mut() = Body::from(bytes);
    }
    let fields = Fields {
        query: QueryParams::parse(request.uri().query()),
        body,
    };
    check(state, caller, &method, &path, rule, &fields).await
}

fn denied(
    caller: &Caller,
    method: &Method,
    path: &str,
    needed: &str,
    resource: &str,
    held: Option<Permission>,
) -> Error {
    let held = held
        .map(|p| format!(" ({} has {p})", caller.user))
        .unwrap_or_default();
    Error::permission_denied(format!(
        "Permission denied: {method} {path} needs {needed} on {resource}{held}"
    ))
}

async fn require(
    state: &AppState,
    caller: &Caller,
    (method, path): (&Method, &str),
    resource_type: ResourceType,
    id: &str,
    needed: Permission,
) -> Result<(), Error> {
    let held = state
        .auth
        .permission(&state.store, caller, resource_type, id)
        .await?;
    if held.allows(needed) {
        return Ok(());
    }
    Err(denied(
        caller,
        method,
        path,
        needed.as_str(),
        &format!("{resource_type} '{id}'"),
        Some(held),
    ))
}

async fn experiments_of(
    state: &AppState,
    exp: Exp,
    fields: &Fields,
    path: &str,
) -> Result<Vec<String>, Error> {
    Ok(match exp {
        Exp::Id { default_zero } => match fields.text("experiment_id") {
            Some(id) => vec![id],
            None if default_zero => vec!["0".to_string()],
            None => return Err(fields.required("experiment_id").unwrap_err()),
        },
        Exp::Name => {
            let name = fields.required("experiment_name")?;
            vec![
                state
                    .store
                    .get_experiment_by_name(&name)
                    .await?
                    .experiment_id,
            ]
        }
        Exp::Ids => fields.experiment_ids(),
        Exp::Run => vec![
            state
                .auth
                .run_experiment(&state.store, &fields.run_id()?)
                .await?,
        ],
        Exp::Runs => {
            let mut ids = Vec::new();
            for run in fields.query.all("run_ids") {
                ids.push(state.auth.run_experiment(&state.store, &run).await?);
            }
            ids
        }
        Exp::LoggedModel => {
            let model_id = path
                .split("/logged-models/")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_default();
            vec![state.store.logged_model_experiment_id(model_id).await?]
        }
        Exp::ArtifactPath => {
            let rest = path
                .split("/mlflow-artifacts/artifacts")
                .nth(1)
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string();
            let rest = if rest.is_empty() {
                fields.text("path").unwrap_or_default()
            } else {
                rest
            };
            let first = rest
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default();
            if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::permission_denied(format!(
                    "Permission denied: artifacts outside an experiment's folder ('{rest}') are for admins"
                )));
            }
            vec![first.to_string()]
        }
    })
}

async fn check(
    state: &AppState,
    caller: &Caller,
    method: &Method,
    path: &str,
    rule: Rule,
    fields: &Fields,
) -> Result<Option<After>, Error> {
    let at = (method, path);
    match rule {
        Rule::Authenticated => Ok(None),
        Rule::Listing => Ok(Some(After::FilterListing)),
        Rule::Admin => Err(denied(
            caller,
            method,
            path,
            "admin rights",
            "this server",
            None,
        )),
        Rule::SelfOrAdmin => match fields.text("username") {
            Some(name) if name != caller.user => Err(denied(
                caller,
                method,
                path,
                "admin rights",
                &format!("user '{name}'"),
                None,
            )),
            _ => Ok(None),
        },
        Rule::Experiment(exp, needed) => {
            for id in experiments_of(state, exp, fields, path).await? {
                require(state, caller, at, ResourceType::Experiment, &id, needed).await?;
            }
            Ok(None)
        }
        Rule::Model(needed) => {
            let name = fields.model_name()?;
            require(
                state,
                caller,
                at,
                ResourceType::RegisteredModel,
                &name,
                needed,
            )
            .await?;
            Ok(None)
        }
        Rule::Alias => {
            let name = fields.required("name")?;
            let alias = fields.required("alias")?;
            let needed = state.alias_permission(&alias);
            require(
                state,
                caller,
                at,
                ResourceType::RegisteredModel,
                &name,
                needed,
            )
            .await?;
            Ok(None)
        }
        Rule::CreateModel => Ok(Some(After::GrantModel(fields.required("name")?))),
        Rule::CreateExperiment => Ok(Some(After::GrantExperiment)),
        Rule::CreateVersion => {
            let name = fields.required("name")?;
            match state.store.get_registered_model(&name).await {
                Ok(_) => {
                    require(
                        state,
                        caller,
                        at,
                        ResourceType::RegisteredModel,
                        &name,
                        Permission::Edit,
                    )
                    .await?;
                    Ok(None)
                }
                Err(e) if e.code == keel_core::ErrorCode::ResourceDoesNotExist => {
                    Ok(Some(After::GrantModel(name)))
                }
                Err(e) => Err(e),
            }
        }
        Rule::Gates => {
            let name = fields.required("name")?;
            let version =
                keel_core::validation::parse_version(&name, &fields.required("version")?)?;
            let found = state.store.get_model_version(&name, version).await?;
            match found.run_id.filter(|r| !r.is_empty()) {
                Some(run) => {
                    let experiment = state.auth.run_experiment(&state.store, &run).await?;
                    require(
                        state,
                        caller,
                        at,
                        ResourceType::Experiment,
                        &experiment,
                        Permission::Edit,
                    )
                    .await?;
                }
                None => {
                    require(
                        state,
                        caller,
                        at,
                        ResourceType::RegisteredModel,
                        &name,
                        Permission::Edit,
                    )
                    .await?;
                }
            }
            Ok(None)
        }
        Rule::ManageResource => {
            let resource_type = ResourceType::parse(&fields.required("resource_type")?)?;
            let id = fields.required("resource_id")?;
            if id == "*" {
                return Err(denied(
                    caller,
                    method,
                    path,
                    "admin rights",
                    &format!("every {resource_type}"),
                    None,
                ));
            }
            require(state, caller, at, resource_type, &id, Permission::Manage).await?;
            Ok(None)
        }
        Rule::TokenOwner => {
            let id = fields.required("id")?;
            let id: i64 = id.parse().map_err(|_| {
                Error::invalid_parameter(format!("Token id '{id}' is not a number"))
            })?;
            let token = state.store.get_token(id).await?;
            if token.username != caller.user {
                return Err(denied(
                    caller,
                    method,
                    path,
                    "admin rights",
                    &format!("a token of user '{}'", token.username),
                    None,
                ));
            }
            Ok(None)
        }
    }
}

/// Runs what a rule asked for after a successful answer: the creator's
/// MANAGE grant, or the listing cut to what the caller may read.
pub(crate) async fn after_success(
    state: &AppState,
    caller: &Caller,
    after: After,
    response: Response,
) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let Some(user_id) = caller.user_id else {
        return response;
    };
    match after {
        After::GrantModel(name) => {
            grant_creator(state, user_id, ResourceType::RegisteredModel, &name).await;
            response
        }
        After::GrantExperiment => {
            let (parts, body) = response.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
                return Response::from_parts(parts, Body::empty());
            };
            if let Some(id) = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
                v.get("experiment_id")
                    .and_then(|id| id.as_str().map(str::to_string))
            }) {
                grant_creator(state, user_id, ResourceType::Experiment, &id).await;
            }
            Response::from_parts(parts, Body::from(bytes))
        }
        After::FilterListing => filter_listing(state, caller, response).await,
    }
}

async fn grant_creator(state: &AppState, user_id: i64, resource_type: ResourceType, id: &str) {
    if let Err(e) = state
        .store
        .set_grant(user_id, resource_type, id, Permission::Manage)
        .await
    {
        tracing::error!(error = %e, resource = id, "granting MANAGE to the creator");
    }
}

/// Cuts a listing's entities (`experiments`, `registered_models`,
/// `model_versions`, `entries`) to those the caller may read, as MLflow's
/// basic-auth app filters its search answers.
async fn filter_listing(state: &AppState, caller: &Caller, response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    for (key, resource_type, id_key) in [
        ("experiments", ResourceType::Experiment, "experiment_id"),
        ("registered_models", ResourceType::RegisteredModel, "name"),
        ("model_versions", ResourceType::RegisteredModel, "name"),
        ("entries", ResourceType::RegisteredModel, "name"),
    ] {
        let Some(items) = value.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        let mut kept = Vec::with_capacity(items.len());
        for item in items.drain(..) {
            let id = item.get(id_key).and_then(Value::as_str).unwrap_or_default();
            let readable = state
                .auth
                .permission(&state.store, caller, resource_type, id)
                .await
                .is_ok_and(|p| p.allows(Permission::Read));
            if readable {
                kept.push(item);
            }
        }
        *items = kept;
    }
    let bytes = value.to_string();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_the_main_routes() {
        use Permission::*;
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(
            rule(&post, "/api/2.0/mlflow/runs/log-batch"),
            Rule::Experiment(Exp::Run, Edit)
        );
        assert_eq!(
            rule(&post, "/ajax-api/2.0/mlflow/runs/search"),
            Rule::Experiment(Exp::Ids, Read)
        );
        assert_eq!(rule(&post, "/api/2.0/keel/registry/promote"), Rule::Alias);
        assert_eq!(
            rule(&post, "/api/2.0/keel/registry/rollback"),
            Rule::Model(Manage)
        );
        assert_eq!(rule(&post, "/api/2.0/mlflow/users/create"), Rule::Admin);
        assert_eq!(
            rule(
                &Method::PUT,
                "/api/2.0/mlflow-artifacts/artifacts/1/x/artifacts/a.txt"
            ),
            Rule::Experiment(Exp::ArtifactPath, Edit)
        );
        assert_eq!(
            rule(&Method::DELETE, "/api/2.0/mlflow/logged-models/m-1"),
            Rule::Experiment(Exp::LoggedModel, Manage)
        );
        // Unknown API routes fail closed; pages check themselves.
        assert_eq!(rule(&get, "/api/2.0/mlflow/not-a-route"), Rule::Admin);
        assert_eq!(rule(&get, "/#/experiments/1"), Rule::Authenticated);
    }
}
