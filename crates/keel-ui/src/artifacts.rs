//! A run's artifacts: the directory listing, bounded previews (text, JSON,
//! CSV as a table, images, HTML such as keel's monitor reports in a sandboxed
//! frame) and the raw bytes behind image and frame previews. Downloads go
//! through the artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/...`).
//! Paths are checked by keel-artifacts on every call (no `..`, no escaping
//! symlinks); nothing here touches files.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use keel_core::uri::{ProxiedUri, join};
use keel_core::{Error, Run, RunInfo};
use keel_server::AppState;
use keel_server::auth::Caller;
use maud::{Markup, html};

use crate::access;
use crate::html::{self, PageError, PageResult};

/// Most entries listed for one directory.
pub const MAX_LISTED: usize = 500;
/// Most bytes read for a text or CSV preview.
const TEXT_PREVIEW_BYTES: usize = 64 * 1024;
/// Most bytes of a JSON file pretty-printed whole (larger ones preview as text).
const JSON_PREVIEW_BYTES: u64 = 1024 * 1024;
/// Most rows and columns of a CSV preview.
const CSV_ROWS: usize = 100;
const CSV_COLUMNS: usize = 50;
/// Longest cell shown in a CSV preview.
const CSV_CELL_CHARS: usize = 200;

/// The policy of raw artifact bytes: a unique origin, no script, no requests
/// (inline styles and data: images allowed, as keel's reports use them).
const RAW_POLICY: &str =
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:";

/// The artifact-store path of a run's artifact root, if this server proxies
/// it (keel-core parses `mlflow-artifacts:` URIs).
pub fn run_root(info: &RunInfo) -> Option<String> {
    ProxiedUri::parse(&info.artifact_uri)?
        .ok()
        .map(|uri| uri.path)
}

/// One listed entry, its path relative to the run's artifact root.
pub struct Entry {
    pub path: String,
    pub is_dir: bool,
    pub size: Option<u64>,
}

impl Entry {
    fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// The entries of `dir` (relative to the run root), at most [`MAX_LISTED`],
/// and whether there were more.
pub async fn listing(
    state: &AppState,
    root: &str,
    dir: &str,
) -> Result<(Vec<Entry>, bool), PageError> {
    let mut entries = state.artifacts.list(&join(root, dir)).await?;
    let more = entries.len() > MAX_LISTED;
    entries.truncate(MAX_LISTED);
    let prefix = if root.is_empty() {
        String::new()
    } else {
        format!("{root}/")
    };
    let entries = entries
        .into_iter()
        .map(|info| Entry {
            path: info
                .path
                .strip_prefix(&prefix)
                .unwrap_or(&info.path)
                .to_string(),
            is_dir: info.is_dir,
            size: info.file_size,
        })
        .collect();
    Ok((entries, more))
}

/// A directory listing as links to the artifact pages.
pub fn tree(run: &Run, entries: &[Entry], more: bool, selected: &str) -> Markup {
    let info = &run.info;
    html! {
        ul.artifact-tree {
            @for entry in entries {
                li class=(if entry.is_dir { "dir" } else { "file" }) {
                    a href=(html::artifact_url(&info.experiment_id, &info.run_id, &entry.path))
                        aria-current=[(entry.path == selected).then_some("page")] {
                        (entry.name()) @if entry.is_dir { "/" }
                    }
                    @if let Some(size) = entry.size { " " span.muted { (html::bytes(size)) } }
                }
            }
            @if more { li.muted { "… more than " (MAX_LISTED) " entries; download the folder to see all" } }
        }
    }
}

/// The artifact proxy URL that downloads `path` of the run.
fn download_url(root: &str, path: &str) -> String {
    format!(
        "/api/2.0/mlflow-artifacts/artifacts/{}",
        html::path_segments(&join(root, path))
    )
}

fn raw_url(info: &RunInfo, path: &str) -> String {
    format!(
        "{}/raw/{}",
        html::run_url(&info.experiment_id, &info.run_id),
        html::path_segments(path)
    )
}

/// Loads the run named in the URL, checks it belongs to that experiment and
/// that the caller may read it, and finds its artifact root.
async fn run_and_root(
    state: &AppState,
    caller: &Caller,
    experiment_id: &str,
    run_id: &str,
) -> Result<(Run, String), PageError> {
    let run = state.store.get_run(run_id).await?;
    if run.info.experiment_id != experiment_id {
        return Err(Error::not_found(format!(
            "Run '{run_id}' is not in experiment {experiment_id}"
        ))
        .into());
    }
    access::check_experiment(state, caller, experiment_id).await?;
    let root = run_root(&run.info).ok_or_else(|| {
        Error::invalid_parameter(format!(
            "This run's artifacts live at '{}', which this server does not serve",
            run.info.artifact_uri
        ))
    })?;
    Ok((run, root))
}

pub async fn root(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((experiment_id, run_id)): Path<(String, String)>,
) -> PageResult {
    artifact_page(&state, &caller, &experiment_id, &run_id, "").await
}

pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((experiment_id, run_id, path)): Path<(String, String, String)>,
) -> PageResult {
    artifact_page(&state, &caller, &experiment_id, &run_id, &path).await
}

async fn artifact_page(
    state: &AppState,
    caller: &Caller,
    experiment_id: &str,
    run_id: &str,
    path: &str,
) -> PageResult {
    let path = path.trim_matches('/');
    let (run, root) = run_and_root(state, caller, experiment_id, run_id).await?;
    let experiment = state.store.get_experiment(experiment_id).await?;
    let info = &run.info;
    let head = if path.is_empty() {
        None
    } else {
        Some(
            state
                .artifacts
                .head(&join(&root, path))
                .await?
                .ok_or_else(|| Error::not_found(format!("No artifact '{path}' in run {run_id}")))?,
        )
    };
    let is_file = head.as_ref().is_some_and(|h| !h.is_dir);
    let dir = if is_file {
        path.rsplit_once('/').map_or("", |(dir, _)| dir)
    } else {
        path
    };
    let (entries, more) = listing(state, &root, dir).await?;
    let preview = match &head {
        Some(head) if !head.is_dir => {
            preview(state, &run, &root, path, head.file_size.unwrap_or(0)).await?
        }
        _ => html! { p.muted { "Choose a file to preview it." } },
    };
    let run_name = display_name(info);
    let mut crumbs = vec![
        ("Experiments".to_string(), "/".to_string()),
        (
            experiment.name.clone(),
            html::experiment_url(&info.experiment_id),
        ),
        (
            run_name.clone(),
            html::run_url(&info.experiment_id, &info.run_id),
        ),
        (
            "artifacts".to_string(),
            html::artifact_url(&info.experiment_id, &info.run_id, ""),
        ),
    ];
    let mut sofar = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        sofar = join(&sofar, part);
        crumbs.push((
            part.to_string(),
            html::artifact_url(&info.experiment_id, &info.run_id, &sofar),
        ));
    }
    if path.is_empty()
        && let Some(last) = crumbs.last_mut()
    {
        last.1 = String::new();
    }
    let body = html! {
        h1 { "Artifacts of " (run_name) }
        div.artifacts {
            nav.artifact-pane aria-label="artifact files" {
                p.dir-name {
                    @if dir.is_empty() { "/" } @else {
                        a href=(html::artifact_url(&info.experiment_id, &info.run_id, dir.rsplit_once('/').map_or("", |(up, _)| up))) { "↑ up" }
                        " " span.mono { (dir) "/" }
                    }
                }
                @if entries.is_empty() { p.muted { "No artifacts." } }
                (tree(&run, &entries, more, path))
            }
            section.preview-pane {
                @if is_file {
                    div.preview-head {
                        span.mono { (path) }
                        " " span.muted { (html::bytes(head.as_ref().and_then(|h| h.file_size).unwrap_or(0))) }
                        " " a.button href=(download_url(&root, path)) download { "Download" }
                    }
                }
                (preview)
            }
        }
    };
    Ok(html::page(&format!("{path} · {run_name}"), &crumbs, body).into_response())
}

pub fn display_name(info: &RunInfo) -> String {
    if info.run_name.is_empty() {
        info.run_id.clone()
    } else {
        info.run_name.clone()
    }
}

/// What a file's name says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Html,
    Csv(u8),
    Json,
    Text,
    Unknown,
}

fn kind_of(path: &str) -> Kind {
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" | "svg" | "bmp" | "avif" => Kind::Image,
        "html" | "htm" => Kind::Html,
        "csv" => Kind::Csv(b','),
        "tsv" => Kind::Csv(b'\t'),
        "json" | "ipynb" => Kind::Json,
        "txt" | "log" | "md" | "yaml" | "yml" | "py" | "toml" | "lock" | "cfg" | "ini" | "sh"
        | "r" | "sql" | "jsonl" | "out" | "err" | "rst" | "xml" | "keel" => Kind::Text,
        _ if matches!(
            name,
            "MLmodel" | "Dockerfile" | "LICENSE" | "requirements.txt"
        ) =>
        {
            Kind::Text
        }
        _ => Kind::Unknown,
    }
}

/// Reads at most `limit` bytes from the start of an artifact.
async fn read_prefix(state: &AppState, path: &str, limit: usize) -> Result<Bytes, PageError> {
    let object = state.artifacts.get(path).await?;
    let mut stream = object.stream;
    let mut out = BytesMut::new();
    while out.len() < limit {
        match stream.next().await {
            Some(chunk) => out.extend_from_slice(&chunk?),
            None => break,
        }
    }
    out.truncate(limit);
    Ok(out.freeze())
}

async fn preview(
    state: &AppState,
    run: &Run,
    root: &str,
    path: &str,
    size: u64,
) -> Result<Markup, PageError> {
    let full = join(root, path);
    let cut_note = |shown: usize| {
        html! {
            @if (shown as u64) < size {
                p.muted { "Showing the first " (html::bytes(shown as u64)) " of " (html::bytes(size)) "; download for the rest." }
            }
        }
    };
    Ok(match kind_of(path) {
        Kind::Image => html! {
            img.preview-image src=(raw_url(&run.info, path)) alt=(path);
        },
        Kind::Html => html! {
            p.muted { "Shown in a sandboxed frame: its scripts do not run." }
            iframe.preview-frame sandbox="" src=(raw_url(&run.info, path)) title=(path) {}
        },
        Kind::Csv(delimiter) => {
            let bytes = read_prefix(state, &full, TEXT_PREVIEW_BYTES).await?;
            let truncated = (bytes.len() as u64) < size;
            csv_table(&bytes, delimiter, truncated)
        }
        Kind::Json if size <= JSON_PREVIEW_BYTES => {
            let bytes = read_prefix(state, &full, JSON_PREVIEW_BYTES as usize).await?;
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(value) => {
                    let pretty = serde_json::to_string_pretty(&value).unwrap_or_default();
                    let shown: String = pretty.chars().take(TEXT_PREVIEW_BYTES).collect();
                    html! {
                        pre.preview-text.json { (shown) }
                        @if shown.len() < pretty.len() { p.muted { "JSON cut at 64 KB; download for the rest." } }
                    }
                }
                Err(error) => html! {
                    p.warning { "Not valid JSON: " (error.to_string()) }
                    (text_preview(&bytes, size))
                },
            }
        }
        Kind::Json | Kind::Text => {
            let bytes = read_prefix(state, &full, TEXT_PREVIEW_BYTES).await?;
            html! { (text_preview(&bytes, size)) (cut_note(bytes.len())) }
        }
        Kind::Unknown => {
            let bytes = read_prefix(state, &full, TEXT_PREVIEW_BYTES).await?;
            if looks_like_text(&bytes) {
                html! { (text_preview(&bytes, size)) (cut_note(bytes.len())) }
            } else {
                html! { p.muted { "No preview for this kind of file; download it." } }
            }
        }
    })
}

/// Valid UTF-8 (a character cut at the end is fine) without NUL bytes.
fn looks_like_text(bytes: &[u8]) -> bool {
    if bytes.contains(&0) {
        return false;
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(error) => error.error_len().is_none() && error.valid_up_to() + 4 > bytes.len(),
    }
}

fn text_preview(bytes: &[u8], _size: u64) -> Markup {
    let text = String::from_utf8_lossy(bytes);
    html! { pre.preview-text { (text) } }
}

/// The first rows of a CSV as a table; a last row cut by the byte bound is dropped.
fn csv_table(bytes: &[u8], delimiter: u8, truncated: bool) -> Markup {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(bytes);
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h
            .iter()
            .take(CSV_COLUMNS)
            .map(|c| html::short(c, CSV_CELL_CHARS))
            .collect(),
        Err(error) => return html! { p.warning { "Not readable as CSV: " (error.to_string()) } },
    };
    let total_columns = reader.headers().map(|h| h.len()).unwrap_or(0);
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut error = None;
    for record in reader.records() {
        match record {
            Ok(record) => rows.push(
                record
                    .iter()
                    .take(CSV_COLUMNS)
                    .map(|c| html::short(c, CSV_CELL_CHARS))
                    .collect(),
            ),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
        if rows.len() > CSV_ROWS {
            break;
        }
    }
    let more_rows = rows.len() > CSV_ROWS || truncated;
    if truncated && rows.len() <= CSV_ROWS {
        rows.pop();
    }
    rows.truncate(CSV_ROWS);
    html! {
        div.table-wrap {
            table.csv-preview {
                thead { tr { @for h in &headers { th { (h) } } } }
                tbody { @for row in &rows { tr { @for cell in row { td { (cell) } } } } }
            }
        }
        p.muted {
            (rows.len()) " rows shown"
            @if more_rows { " (the file has more; download it)" }
            @if total_columns > CSV_COLUMNS { "; first " (CSV_COLUMNS) " of " (total_columns) " columns" }
            "."
        }
        @if let Some(error) = error { p.warning { "Stopped at a malformed row: " (error) } }
    }
}

/// The bytes of an artifact, for `<img>` and `<iframe>` previews, under a
/// sandboxing policy (an HTML or SVG artifact can never run script as this site).
pub async fn raw(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((experiment_id, run_id, path)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let (_, root) = run_and_root(&state, &caller, &experiment_id, &run_id).await?;
    let object = state.artifacts.get(&join(&root, &path)).await?;
    let mime = match kind_of(&path) {
        Kind::Html => "text/html; charset=utf-8".to_string(),
        Kind::Image => mime_guess::from_path(&path)
            .first_or_octet_stream()
            .to_string(),
        Kind::Csv(_) | Kind::Json | Kind::Text => "text/plain; charset=utf-8".to_string(),
        Kind::Unknown => "application/octet-stream".to_string(),
    };
    let stream = object
        .stream
        .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(object.size));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(RAW_POLICY),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name() {
        assert_eq!(kind_of("plots/roc.PNG"), Kind::Image);
        assert_eq!(kind_of("report.html"), Kind::Html);
        assert_eq!(kind_of("data/train.csv"), Kind::Csv(b','));
        assert_eq!(kind_of("gates.json"), Kind::Json);
        assert_eq!(kind_of("events.jsonl"), Kind::Text);
        assert_eq!(kind_of("model/MLmodel"), Kind::Text);
        assert_eq!(kind_of("model.pkl"), Kind::Unknown);
    }

    #[test]
    fn csv_preview_is_bounded_and_escaped() {
        let mut text = String::from("a,<b>\n");
        for i in 0..500 {
            text.push_str(&format!("{i},<script>x</script>\n"));
        }
        let html = csv_table(text.as_bytes(), b',', false).into_string();
        assert_eq!(html.matches("<tr>").count(), CSV_ROWS + 1);
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("the file has more"));
        // A file cut by the byte bound loses its (possibly partial) last row.
        let cut = csv_table(b"a,b\n1,2\n3,", b',', true).into_string();
        assert_eq!(cut.matches("<tr>").count(), 2);
    }

    #[test]
    fn text_detection() {
        assert!(looks_like_text(b"hello\nworld"));
        assert!(looks_like_text("caf\u{e9}".as_bytes()));
        assert!(looks_like_text(&"caf\u{e9}".as_bytes()[..4]));
        assert!(!looks_like_text(b"\x89PNG\r\n\x1a\n\0\0"));
        assert!(!looks_like_text(b"\xff\xfe\xfa"));
    }

    #[test]
    fn paths_join_without_doubled_slashes() {
        assert_eq!(
            join("1/abc/artifacts", "plots/a.png"),
            "1/abc/artifacts/plots/a.png"
        );
        assert_eq!(join("1/abc/artifacts", ""), "1/abc/artifacts");
        assert_eq!(join("", "x"), "x");
    }
}
