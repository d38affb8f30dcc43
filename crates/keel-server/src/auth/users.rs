//! The REST endpoints of MLflow's basic-auth app that
//! `mlflow.server.get_app_client("basic-auth", uri)` calls (users; per-user
//! grants on experiments and registered models), and keel's access tokens
//! (`/api/2.0/keel/tokens/…`). Who may call which is in [`super::rules`];
//! these handlers validate, hash and store. Passwords are never logged and
//! never returned; a token's secret is returned once, by `tokens/create`.

use axum::Json;
use axum::extract::{Extension, RawQuery, State};
use bytes::Bytes;
use keel_client::api;
use keel_core::Error;
use keel_core::access::{Permission, ResourceType, validate_password};
use keel_store::{AccessToken, User};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Caller, hash_blocking, secret};
use crate::AppState;
use crate::error::ApiResult;
use crate::request::{lenient_string, params};

type Reply = ApiResult<Json<Value>>;

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserBody {
    username: Option<String>,
    password: Option<String>,
    current_password: Option<String>,
    #[serde(deserialize_with = "lenient_bool")]
    is_admin: Option<bool>,
    resource_type: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    resource_id: Option<String>,
    permission: Option<String>,
}

/// `true`/`false` as JSON booleans or as the strings a query sends.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<bool>, D::Error> {
    let value = Option::<Value>::deserialize(de)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected true or false, found {other}"
        ))),
    }
}

fn required(value: Option<String>, key: &str) -> Result<String, Error> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| {
        Error::invalid_parameter(format!("Missing value for required parameter '{key}'"))
    })
}

fn user_json(user: &User) -> Value {
    json!({"id": user.id, "username": user.username, "is_admin": user.is_admin})
}

fn token_info(token: AccessToken) -> api::TokenInfo {
    api::TokenInfo {
        id: token.id,
        username: token.username,
        name: token.name,
        created_at: token.created_at,
        expires_at: token.expires_at,
    }
}

fn users_enabled(state: &AppState) -> Result<(), Error> {
    if state.auth.users_enabled() {
        Ok(())
    } else {
        Err(Error::not_implemented(
            "Users, grants and tokens need `keel server --app-name basic-auth`",
        ))
    }
}

/// `POST users/create {username, password}`.
pub async fn create_user(State(state): State<AppState>, q: RawQuery, body: Bytes) -> Reply {
    users_enabled(&state)?;
    let body: UserBody = params(q.0, &body)?;
    let username = required(body.username, "username")?;
    let password = required(body.password, "password")?;
    keel_core::access::validate_username(&username)?;
    validate_password(&password)?;
    let hash = hash_blocking(password).await?;
    let user = state.store.create_user(&username, &hash, false).await?;
    Ok(Json(json!({"user": user_json(&user)})))
}

/// `GET users/get?username=…`.
pub async fn get_user(State(state): State<AppState>, q: RawQuery, body: Bytes) -> Reply {
    users_enabled(&state)?;
    let body: UserBody = params(q.0, &body)?;
    let user = state
        .store
        .get_user(&required(body.username, "username")?)
        .await?;
    Ok(Json(json!({"user": user_json(&user)})))
}

/// `GET users/current`: who the caller is.
pub async fn current_user(Extension(caller): Extension<Caller>) -> Reply {
    Ok(Json(json!({
        "user": {"id": caller.user_id, "username": caller.user, "is_admin": caller.admin},
        "is_basic_auth": true,
    })))
}

/// `GET users/list`.
pub async fn list_users(State(state): State<AppState>) -> Reply {
    users_enabled(&state)?;
    let users = state.store.list_users().await?;
    Ok(Json(
        json!({"users": users.iter().map(user_json).collect::<Vec<_>>()}),
    ))
}

/// `PATCH users/update-password {username, password[, current_password]}`:
/// changing one's own password needs the current one, as in MLflow.
pub async fn update_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: RawQuery,
    body: Bytes,
) -> Reply {
    users_enabled(&state)?;
    let body: UserBody = params(q.0, &body)?;
    let username = required(body.username, "username")?;
    let password = required(body.password, "password")?;
    validate_password(&password)?;
    if username == caller.user {
        let current = body
            .current_password
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Error::invalid_parameter(
                    "Current password is required when changing your own password.",
                )
            })?;
        let stored = state
            .store
            .user_credential(&username)
            .await?
            .map(|c| c.password_hash)
            .unwrap_or_default();
        let check = current.clone();
        let matches = tokio::task::spawn_blocking(move || secret::verify_password(&check, &stored))
            .await
            .unwrap_or(false);
        if !matches {
            return Err(Error::invalid_parameter("Current password does not match.").into());
        }
        if password == current {
            return Err(Error::invalid_parameter(
                "New password must differ from the current password.",
            )
            .into());
        }
    }
    let hash = hash_blocking(password).await?;
    state.store.update_user_password(&username, &hash).await?;
    state.auth.forget_credentials();
    state.auth.end_sessions_of(&username);
    Ok(Json(json!({})))
}

/// `PATCH users/update-admin {username, is_admin}`.
pub async fn update_admin(State(state): State<AppState>, q: RawQuery, body: Bytes) -> Reply {
    users_enabled(&state)?;
    let body: UserBody = params(q.0, &body)?;
    let username = required(body.username, "username")?;
    let is_admin = body.is_admin.ok_or_else(|| {
        Error::invalid_parameter("Missing value for required parameter 'is_admin'")
    })?;
    state.store.update_user_admin(&username, is_admin).await?;
    state.auth.forget_credentials();
    Ok(Json(json!({})))
}

/// `DELETE users/delete {username}`: the user's grants and tokens go with it.
pub async fn delete_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: RawQuery,
    body: Bytes,
) -> Reply {
    users_enabled(&state)?;
    let body: UserBody = params(q.0, &body)?;
    let username = required(body.username, "username")?;
    if username == caller.user {
        return Err(Error::bad_request(
            "Users cannot delete their own account. Ask another admin to delete this user instead.",
        )
        .into());
    }
    state.store.delete_user(&username).await?;
    state.auth.forget_credentials();
    state.auth.end_sessions_of(&username);
    Ok(Json(json!({})))
}

struct GrantTarget {
    username: String,
    resource_type: ResourceType,
    resource_id: String,
}

fn grant_target(body: &mut UserBody) -> Result<GrantTarget, Error> {
    Ok(GrantTarget {
        username: required(body.username.take(), "username")?,
        resource_type: ResourceType::parse(&required(body.resource_type.take(), "resource_type")?)?,
        resource_id: required(body.resource_id.take(), "resource_id")?,
    })
}

/// `POST /api/3.0/mlflow/users/permissions/grant {username, resource_type, resource_id, permission}`.
pub async fn grant(State(state): State<AppState>, q: RawQuery, body: Bytes) -> Reply {
    users_enabled(&state)?;
    let mut body: UserBody = params(q.0, &body)?;
    let target = grant_target(&mut body)?;
    let permission = Permission::parse(&required(body.permission, "permission")?)?;
    state
        .store
        .grant(
            &target.username,
            target.resource_type,
            &target.resource_id,
            permission,
        )
        .await?;
    Ok(Json(json!({})))
}

/// `POST /api/3.0/mlflow/users/permissions/revoke {username, resource_type, resource_id}`.
pub async fn revoke(State(state): State<AppState>, q: RawQuery, body: Bytes) -> Reply {
    users_enabled(&state)?;
    let mut body: UserBody = params(q.0, &body)?;
    let target = grant_target(&mut body)?;
    state
        .store
        .revoke(&target.username, target.resource_type, &target.resource_id)
        .await?;
    Ok(Json(json!({})))
}

/// `GET /api/3.0/mlflow/users/permissions/get?username=…&resource_type=…&resource_id=…`:
/// the permission in force (grant, else default) and whether it reaches USE.
pub async fn get_permission(State(state): State<AppState>, q: RawQuery, body: Bytes) -> Reply {
    users_enabled(&state)?;
    let mut body: UserBody = params(q.0, &body)?;
    let target = grant_target(&mut body)?;
    let user = state.store.get_user(&target.username).await?;
    let subject = Caller {
        user: user.username.clone(),
        admin: user.is_admin,
        authenticated: true,
        user_id: Some(user.id),
    };
    let permission = state
        .auth
        .permission(
            &state.store,
            &subject,
            target.resource_type,
            &target.resource_id,
        )
        .await?;
    Ok(Json(json!({
        "allowed": permission.allows(Permission::Use),
        "permission": permission.as_str(),
    })))
}

/// `GET /api/3.0/mlflow/users/permissions/list?username=…`: the user's grants.
pub async fn list_permissions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: RawQuery,
    body: Bytes,
) -> Reply {
    users_enabled(&state)?;
    let body: UserBody = params(q.0, &body)?;
    let username = body.username.unwrap_or(caller.user);
    let user = state.store.get_user(&username).await?;
    let grants = state.store.list_grants(&username).await?;
    Ok(Json(json!({
        "is_admin": user.is_admin,
        "permissions": grants.iter().map(|g| json!({
            "resource_type": g.resource_type.as_str(),
            "resource_pattern": g.resource_id,
            "permission": g.permission.as_str(),
        })).collect::<Vec<_>>(),
    })))
}

/// `POST /api/2.0/keel/tokens/create {username, name?, expires_in?}`: the
/// secret is in this answer and nowhere else; the store keeps its SHA-256.
pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: RawQuery,
    body: Bytes,
) -> ApiResult<Json<api::TokenCreated>> {
    users_enabled(&state)?;
    let request: api::CreateToken = params(q.0, &body)?;
    let username = request
        .username
        .filter(|u| !u.is_empty())
        .unwrap_or(caller.user);
    let expires_at = match request.expires_in.as_deref().filter(|e| !e.is_empty()) {
        Some(text) => {
            let duration = keel_core::duration::parse("expires_in", text)?;
            let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
            Some(keel_core::now_millis().saturating_add(millis))
        }
        None => None,
    };
    let (secret, hash) = secret::new_token()?;
    let token = state
        .store
        .create_token(&username, &request.name, &hash, expires_at)
        .await?;
    Ok(Json(api::TokenCreated {
        token: secret,
        token_info: token_info(token),
    }))
}

/// `GET /api/2.0/keel/tokens/list[?username=…]`: tokens without secrets
/// (an admin without `username` sees everyone's).
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: RawQuery,
    body: Bytes,
) -> ApiResult<Json<api::TokensReply>> {
    users_enabled(&state)?;
    let body: UserBody = params(q.0, &body)?;
    let username = match body.username {
        Some(name) => Some(name),
        None if caller.admin => None,
        None => Some(caller.user),
    };
    let tokens = state.store.list_tokens(username.as_deref()).await?;
    Ok(Json(api::TokensReply {
        tokens: tokens.into_iter().map(token_info).collect(),
    }))
}

/// `POST /api/2.0/keel/tokens/revoke {id}`.
pub async fn revoke_token(State(state): State<AppState>, q: RawQuery, body: Bytes) -> Reply {
    users_enabled(&state)?;
    let request: api::RevokeToken = params(q.0, &body)?;
    let id: i64 = request.id.parse().map_err(|_| {
        Error::invalid_parameter(format!("Token id '{}' is not a number", request.id))
    })?;
    state.store.revoke_token(id).await?;
    state.auth.forget_credentials();
    Ok(Json(json!({})))
}
