//! The page shell, the error page, and how values are written on pages
//! (times, durations, numbers, links). maud escapes every interpolated
//! string, so user input (run names, tags, params) never becomes markup; the
//! only unescaped insertions are SVG produced by keel-chart, which escapes its
//! own text.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_core::{Error, ErrorCode, RunStatus};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::assets;

/// A page handler's answer.
pub type PageResult = Result<Response, PageError>;

/// What a page handler can fail with.
#[derive(Debug)]
pub enum PageError {
    /// A store or artifact error: 4xx shown as it is, 5xx hidden behind an id.
    Core(Error),
    /// The caller may not read this.
    Forbidden(String),
    /// A request refused with its own status and message (a stale form, a
    /// form from another site, a body too large).
    Refused(StatusCode, String),
}

impl From<Error> for PageError {
    fn from(error: Error) -> Self {
        PageError::Core(error)
    }
}

impl From<keel_artifacts::ArtifactError> for PageError {
    fn from(error: keel_artifacts::ArtifactError) -> Self {
        PageError::Core(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match self {
            PageError::Forbidden(what) => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                format!("You may not read {what}."),
            ),
            PageError::Refused(status, message) => (status, "Not done", message),
            PageError::Core(error) => {
                let status = StatusCode::from_u16(error.code.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                if status.is_server_error() {
                    // The log has the details; the page only the id to find them.
                    let id = keel_core::ids::new_uuid();
                    tracing::error!(request_id = %id, error_code = error.code.as_str(), message = %error.message, "page failed");
                    (
                        status,
                        "Something went wrong",
                        format!(
                            "The server could not build this page (request id {id}, in the server log)."
                        ),
                    )
                } else if error.code == ErrorCode::ResourceDoesNotExist {
                    (status, "Not found", error.message)
                } else {
                    (status, "Cannot show this page", error.message)
                }
            }
        };
        let body = page(
            heading,
            &[],
            html! { h1 { (heading) } p.error { (message) } p { a href="/" { "Back to the experiments" } } },
        );
        (status, body).into_response()
    }
}

tokio::task_local! {
    /// Who is looking at the page being built (set around every page
    /// request by keel-ui's middleware).
    static VIEWER: Viewer;
}

/// Who is looking: shown in the top bar; their CSRF token goes into forms.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// The authenticated user (none on an open server).
    pub user: Option<String>,
    /// The token every state-changing form carries.
    pub csrf: Option<String>,
    /// Logged in through the login form (so a logout button makes sense).
    pub session: bool,
}

/// Runs `future` (a page request) with `viewer` as the page's viewer.
pub async fn with_viewer<F: std::future::Future>(viewer: Viewer, future: F) -> F::Output {
    VIEWER.scope(viewer, future).await
}

/// The viewer of the page being built.
pub fn viewer() -> Viewer {
    VIEWER.try_with(Clone::clone).unwrap_or_default()
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf_field() -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer().csrf.unwrap_or_default()); }
}

/// The shell of every page: head with the stylesheet and script, the top
/// bar, breadcrumbs (`(text, link)`; the last one is the page itself), body.
pub fn page(title: &str, crumbs: &[(String, String)], body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · keel" }
                // No favicon request (and no 404 in the console).
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(assets::url(assets::CSS));
                // Not deferred: the hash router must redirect before the page paints.
                script src=(assets::url(assets::JS)) {}
            }
            body {
                header.top {
                    a.brand href="/" { "keel" }
                    @let viewer = viewer();
                    // Without a caller (the login form of a server with
                    // users) every link would lead back to the login.
                    @if viewer.csrf.is_some() {
                        nav {
                            a href="/" { "Experiments" }
                            a href="/models" { "Models" }
                            a href="/monitoring" { "Monitoring" }
                        }
                    }
                    @if let Some(user) = &viewer.user {
                        div.who {
                            span #user { (user) }
                            @if viewer.session {
                                form.logout method="post" action="/logout" {
                                    (csrf_field())
                                    button type="submit" #logout { "Log out" }
                                }
                            }
                        }
                    }
                }
                main {
                    @if !crumbs.is_empty() {
                        nav.crumbs aria-label="breadcrumbs" {
                            @for (i, (text, link)) in crumbs.iter().enumerate() {
                                @if i > 0 { span.sep { "/" } }
                                @if i + 1 == crumbs.len() { span { (text) } } @else { a href=(link) { (text) } }
                            }
                        }
                    }
                    (body)
                }
            }
        }
    }
}

/// Characters escaped in one URL path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One URL path segment (a model name, a run id) percent-encoded.
pub fn seg(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// A relative path (`dir/file.csv`) percent-encoded segment by segment.
pub fn path_segments(path: &str) -> String {
    path.split('/').map(seg).collect::<Vec<_>>().join("/")
}

/// A query-string value.
pub fn query_value(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub fn experiment_url(experiment_id: &str) -> String {
    format!("/experiments/{}", seg(experiment_id))
}

pub fn run_url(experiment_id: &str, run_id: &str) -> String {
    format!("/experiments/{}/runs/{}", seg(experiment_id), seg(run_id))
}

pub fn artifact_url(experiment_id: &str, run_id: &str, path: &str) -> String {
    let base = format!("{}/artifacts", run_url(experiment_id, run_id));
    if path.is_empty() {
        base
    } else {
        format!("{base}/{}", path_segments(path))
    }
}

pub fn logged_model_url(experiment_id: &str, model_id: &str) -> String {
    format!(
        "/experiments/{}/models/{}",
        seg(experiment_id),
        seg(model_id)
    )
}

pub fn model_url(name: &str) -> String {
    format!("/models/{}", seg(name))
}

pub fn monitoring_url(model: &str) -> String {
    format!("/monitoring/{}", seg(model))
}

pub fn version_url(name: &str, version: i64) -> String {
    format!("/models/{}/versions/{version}", seg(name))
}

/// `2026-11-27 19:00:41Z`.
pub fn time(millis: i64) -> String {
    keel_core::civil::utc_text(millis)
}

/// A time cell: short text, the full UTC time on hover.
pub fn time_cell(millis: i64) -> Markup {
    let full = time(millis);
    html! { time datetime=(full) title=(full) { (full.get(..16).unwrap_or(&full)) } }
}

/// `420 ms`, `12.5 s`, `3 min 07 s`, `2 h 05 min`.
pub fn duration(millis: i64) -> String {
    let millis = millis.max(0);
    if millis < 1000 {
        return format!("{millis} ms");
    }
    let seconds = millis as f64 / 1000.0;
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let total = millis / 1000;
    if total < 3600 {
        return format!("{} min {:02} s", total / 60, total % 60);
    }
    if total < 86_400 {
        return format!("{} h {:02} min", total / 3600, total % 3600 / 60);
    }
    format!("{} d {:02} h", total / 86_400, total % 86_400 / 3600)
}

/// A run's duration: end − start, or "running" while it runs.
pub fn run_duration(start: i64, end: Option<i64>, status: RunStatus) -> String {
    match end {
        Some(end) if end >= start => duration(end - start),
        _ if status == RunStatus::Running => "running".into(),
        _ => "–".into(),
    }
}

/// A metric value as people read it.
pub fn number(value: f64) -> String {
    keel_chart::format_number(value)
}

pub fn status_badge(status: RunStatus) -> Markup {
    let text = status.as_str();
    html! { span class={ "badge status-" (text.to_ascii_lowercase()) } { (text) } }
}

/// SVG drawn by keel-chart (which escapes its own text).
pub fn svg(text: String) -> Markup {
    PreEscaped(text)
}

/// Byte counts: `812 B`, `14.2 KB`, `3.1 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The first `n` characters of `text`, with an ellipsis when cut.
pub fn short(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(n.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(420), "420 ms");
        assert_eq!(duration(12_500), "12.5 s");
        assert_eq!(duration(187_000), "3 min 07 s");
        assert_eq!(duration(7_500_000), "2 h 05 min");
        assert_eq!(duration(90_000_000), "1 d 01 h");
        assert_eq!(run_duration(10, None, RunStatus::Running), "running");
        assert_eq!(run_duration(10, None, RunStatus::Failed), "–");
    }

    #[test]
    fn urls_encode_user_text() {
        assert_eq!(model_url("a b/c"), "/models/a%20b%2Fc");
        assert_eq!(
            artifact_url("1", "abc", "plots/roc curve.png"),
            "/experiments/1/runs/abc/artifacts/plots/roc%20curve.png"
        );
        assert_eq!(query_value("metrics.a > 1"), "metrics.a+%3E+1");
        assert_eq!(bytes(15_000), "14.6 KB");
        assert_eq!(short("abcdef", 4), "abc…");
    }
}
