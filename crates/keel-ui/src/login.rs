//! The login form and logout: a basic-auth user's name and password (or the
//! shared `--auth-token` as the password) traded for keel-server's session
//! cookie. `/login` is public (keel-server's middleware lets it through
//! without a credential); a browser sent here from a page comes back to it
//! (`next`, a local path only).

use std::net::SocketAddr;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use keel_server::AppState;
use keel_server::auth::LoginRefused;
use keel_server::auth::session::Session;
use maud::html;

use crate::html::{self, PageError, PageResult};
use crate::query::Query;

/// Where to go after logging in: a local path, never another site
/// (`//evil`, `/\evil`) and never the login page itself.
fn local_target(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.starts_with("/login")
                && !next.chars().any(char::is_control) =>
        {
            next.to_string()
        }
        _ => "/".to_string(),
    }
}

fn login_page(
    state: &AppState,
    status: StatusCode,
    next: &str,
    username: &str,
    error: Option<String>,
) -> Response {
    let users = state.auth.users_enabled();
    let body = html! {
        h1 { "Log in" }
        @if let Some(error) = &error { p.error #login-error role="alert" { (error) } }
        form.login #login-form method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            @if users {
                label { "User" input #username type="text" name="username" value=(username) autocomplete="username" required autofocus; }
                label { "Password" input #password type="password" name="password" autocomplete="current-password" required; }
            } @else {
                input type="hidden" name="username" value="token";
                label { "Access token" input #password type="password" name="password" autocomplete="current-password" required autofocus; }
            }
            button type="submit" #login-button { "Log in" }
        }
        p.muted {
            @if users {
                "The users of this server's basic-auth app (MLflow's " code { "--app-name basic-auth" } "); the shared token works with the user " code { "token" } "."
            } @else {
                "This server is protected by a shared token (" code { "--auth-token" } ")."
            }
            " The session lasts 12 hours."
        }
    };
    (status, html::page("Log in", &[], body)).into_response()
}

/// `GET /login?next=…`.
pub async fn form(State(state): State<AppState>, RawQuery(raw): RawQuery) -> PageResult {
    if !state.auth.is_enabled() {
        return Ok(Redirect::to("/").into_response());
    }
    let query = Query::parse(raw.as_deref());
    let next = local_target(query.get("next"));
    Ok(login_page(&state, StatusCode::OK, &next, "", None))
}

/// `POST /login` (form: username, password, next).
pub async fn submit(State(state): State<AppState>, request: Request) -> PageResult {
    if !state.auth.is_enabled() {
        return Ok(Redirect::to("/").into_response());
    }
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let bytes = axum::body::to_bytes(request.into_body(), crate::MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            PageError::Refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("A form is at most {} bytes.", crate::MAX_FORM_BYTES),
            )
        })?;
    let form = Query::parse(std::str::from_utf8(&bytes).ok());
    let username = form.get("username").unwrap_or_default().trim();
    let password = form.get("password").unwrap_or_default();
    let next = local_target(form.get("next"));
    match state
        .auth
        .login(&state.store, username, password, address)
        .await
    {
        Ok((caller, cookie)) => {
            tracing::info!(user = %caller.user, "logged in to the web UI");
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Err(LoginRefused::Wrong) => Ok(login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            &next,
            username,
            Some("Wrong user name or password.".into()),
        )),
        Err(LoginRefused::Throttled(wait)) => {
            let seconds = wait.as_secs().max(1);
            let mut response = login_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                username,
                Some(format!(
                    "Too many failed logins for this user from this address: try again in {seconds} s."
                )),
            );
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Ok(response)
        }
        Err(LoginRefused::NotNeeded) => Ok(Redirect::to("/").into_response()),
    }
}

/// `POST /logout` (a form with the CSRF token): ends the session.
pub async fn logout(State(state): State<AppState>, request: Request) -> PageResult {
    let Some(session) = request.extensions().get::<Session>() else {
        return Ok(Redirect::to("/").into_response());
    };
    let cookie = state.auth.logout(session);
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_targets() {
        assert_eq!(
            local_target(Some("/experiments/1?x=1")),
            "/experiments/1?x=1"
        );
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "/login?next=/",
            "/a\nb",
            "",
        ] {
            assert_eq!(local_target(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_target(None), "/");
    }
}
