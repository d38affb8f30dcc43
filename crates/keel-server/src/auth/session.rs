//! Browser sessions for the web UI's login form.
//!
//! A browser cannot send MLflow's basic auth or a bearer token nicely, so
//! keel-ui's login form trades a user's password (or the shared token) for a
//! session: a random 256-bit id in an `HttpOnly; SameSite=Lax` cookie
//! (`Secure` when the server speaks HTTPS), kept in this process's memory as
//! its SHA-256 only, with a CSRF token of its own. The middleware accepts the
//! cookie on the UI's pages only, never on `/api/…` or `/ajax-api/…`, so the
//! REST API's callers still authenticate every request themselves and no API
//! write can be forged through a browser's cookie.
//!
//! A session names its user, not a snapshot of the user: every request
//! re-reads the user (one indexed row), so a deleted user or a changed admin
//! flag counts at once; a password change or a deletion through this server
//! ends the user's sessions. Sessions live 12 hours and do not survive a
//! restart (people log in again); servers sharing one store do not share
//! sessions (a load balancer needs sticky sessions for the UI).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use keel_core::Error;

use super::{Caller, secret};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "keel_session";

/// How long a session lives after its login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Most sessions held; the oldest are dropped first beyond this.
const MAX_SESSIONS: usize = 10_000;

/// The session a page request came with (in its extensions): what keel-ui
/// needs to embed in its forms and to end the session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The CSRF token every state-changing form of this session carries.
    pub csrf: String,
    /// The cookie's value (to end the session on logout).
    pub(crate) key: String,
}

/// The CSRF token of a page request's caller (in its extensions, on every
/// page request): keel-ui embeds it in its forms and refuses a
/// state-changing request without it.
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

impl Csrf {
    /// Whether `token` is this token (constant time; empty never matches).
    pub fn matches(&self, token: &str) -> bool {
        !token.is_empty() && secret::equal(self.0.as_bytes(), token.as_bytes())
    }
}

/// Who a session stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A basic-auth user, re-read on every request.
    User(String),
    /// The holder of the shared `--auth-token`.
    SharedToken,
}

#[derive(Debug)]
struct Entry {
    holder: Holder,
    csrf: String,
    expires: Instant,
}

/// The sessions of this process, keyed by the SHA-256 of their id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    entries: Mutex<HashMap<String, Entry>>,
}

/// A new random id, URL-safe.
fn random_id() -> Result<String, Error> {
    secret::new_token()
        .map(|(secret, _)| secret.trim_start_matches(secret::TOKEN_PREFIX).to_string())
}

impl Sessions {
    /// Starts a session for `holder`: the cookie value and its CSRF token.
    pub(crate) fn start(&self, holder: Holder) -> Result<(String, String), Error> {
        let id = random_id()?;
        let csrf = random_id()?;
        let now = Instant::now();
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| Error::internal("session table poisoned"))?;
        entries.retain(|_, e| e.expires > now);
        if entries.len() >= MAX_SESSIONS {
            // Full of live sessions: the one closest to its end goes first.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            secret::token_hash(&id),
            Entry {
                holder,
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Ok((id, csrf))
    }

    /// The live session of cookie value `id`.
    pub(crate) fn find(&self, id: &str) -> Option<(Holder, Session)> {
        let key = secret::token_hash(id);
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get(&key)?;
        if entry.expires <= Instant::now() {
            entries.remove(&key);
            return None;
        }
        Some((
            entry.holder.clone(),
            Session {
                csrf: entry.csrf.clone(),
                key: id.to_string(),
            },
        ))
    }

    /// Ends the session of cookie value `id` (unknown ids are ignored).
    pub(crate) fn end(&self, id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&secret::token_hash(id));
        }
    }

    /// Ends every session of user `username`.
    pub(crate) fn end_user(&self, username: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, e| e.holder != Holder::User(username.to_string()));
        }
    }
}

/// The session cookie's value in `headers`, if any.
pub(crate) fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// The `Set-Cookie` value that hands `id` to the browser (`None`: clears it).
pub(crate) fn set_cookie(id: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = match id {
        Some(id) => format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            SESSION_TTL.as_secs()
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    // Ids are URL-safe base64, so the value is always a valid header.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The CSRF token of a caller without a session (an open server's anonymous
/// admin, a browser sending cached basic auth): a keyed digest of the user
/// name, which a page of another origin cannot read.
pub(crate) fn user_csrf(keyer: &secret::CacheKeyer, caller: &Caller) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(keyer.digest("\0csrf", &caller.user))
}

/// Whether the request's `Origin` (when the browser sent one) is this
/// server: a form posted from another site carries that site's origin.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_find_and_end() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.start(Holder::User("alice".into())).unwrap();
        let (holder, session) = sessions.find(&id).expect("found");
        assert_eq!(holder, Holder::User("alice".into()));
        assert_eq!(session.csrf, csrf);
        assert_ne!(id, csrf);
        assert!(sessions.find("other").is_none());
        sessions.end_user("bob");
        assert!(sessions.find(&id).is_some());
        sessions.end_user("alice");
        assert!(sessions.find(&id).is_none());
        let (id, _) = sessions.start(Holder::SharedToken).unwrap();
        sessions.end(&id);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn cookies_and_origins() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; keel_session=abc ; b=2"),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some("abc"));
        let cookie = set_cookie(Some("abc"), true);
        let cookie = cookie.to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(
            set_cookie(None, false)
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:5000"));
        assert!(same_origin(&headers), "no Origin sent");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:5000"),
        );
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&headers));
    }
}
