//! The artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/...`): streaming
//! upload and download, directory listing and delete, over the artifact store.
//! Paths are checked by the artifact store; nothing here touches the filesystem.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use keel_core::Error;
use keel_core::uri::{ProxiedUri, join};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiResult;
use crate::request::{QueryParams, run_id};

pub async fn upload(
    State(state): State<AppState>,
    Path(path): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    state.artifacts.put_stream(&path, stream).await?;
    Ok((axum::http::StatusCode::OK, "").into_response())
}

pub async fn download(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> ApiResult<Response> {
    let object = state.artifacts.get(&path).await?;
    let file_name = path
        .rsplit('/')
        .next()
        .unwrap_or("artifact")
        .replace('"', "");
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let stream = object
        .stream
        .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(mime.as_ref()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(object.size));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Lists the immediate children of `?path=DIR`, with names relative to DIR.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let query = QueryParams::parse(query.as_deref());
    let dir = query
        .get("path")
        .unwrap_or("")
        .trim_matches('/')
        .to_string();
    Ok(Json(list_dir(&state, &dir, "").await?))
}

async fn list_dir(state: &AppState, dir: &str, prefix_in_reply: &str) -> Result<Value, Error> {
    if !dir.is_empty()
        && let Some(info) = state.artifacts.head(dir).await?
        && !info.is_dir
    {
        return Ok(json!({}));
    }
    let entries = state.artifacts.list(dir).await?;
    let files: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let name = entry
                .path
                .strip_prefix(dir)
                .unwrap_or(&entry.path)
                .trim_start_matches('/');
            let path = format!("{prefix_in_reply}{name}");
            let mut file = json!({"path": path, "is_dir": entry.is_dir});
            if let (false, Some(size)) = (entry.is_dir, entry.file_size) {
                file["file_size"] = json!(size);
            }
            file
        })
        .collect();
    if files.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({"files": files}))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> ApiResult<Json<Value>> {
    state.artifacts.delete(&path).await?;
    Ok(Json(json!({})))
}

/// The tracking API's `artifacts/list?run_id=&path=`: paths relative to the run's artifact root.
pub async fn list_run_artifacts(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let query = QueryParams::parse(query.as_deref());
    let id = run_id(
        query.get("run_id").map(str::to_string),
        query.get("run_uuid").map(str::to_string),
    )?;
    let info = state.store.get_run_info(&id).await?;
    let root = ProxiedUri::parse(&info.artifact_uri).ok_or_else(|| {
        Error::invalid_parameter(format!(
            "The run's artifacts live at '{}', which this server does not proxy",
            info.artifact_uri
        ))
    })??;
    let sub = query.get("path").unwrap_or("").trim_matches('/');
    let dir = join(&root.path, sub);
    let prefix = if sub.is_empty() {
        String::new()
    } else {
        format!("{sub}/")
    };
    let mut reply = list_dir(&state, &dir, &prefix).await?;
    reply["root_uri"] = json!(info.artifact_uri);
    Ok(Json(reply))
}
