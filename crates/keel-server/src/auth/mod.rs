//! Who is calling, and what they may do.
//!
//! The middleware ([`middleware`]) authenticates every request but `/health`
//! and server-info, puts a [`Caller`] into its extensions, and checks the
//! route's requirement from the one permission table ([`rules`]) before any
//! handler runs. Handlers that record an actor (audit rows, run owners) take
//! it from the [`Caller`], never from a name the client sends.
//!
//! Three modes: open (no credential; everyone is the anonymous admin), a
//! shared `--auth-token` (its holder is the admin `token`), and MLflow's
//! basic-auth app (`--app-name basic-auth`): users with passwords, access
//! tokens, grants on experiments and registered models, and the shared token
//! still accepted as the admin `token`.

mod cache;
pub mod config;
pub(crate) mod rules;
pub mod secret;
pub mod session;
pub(crate) mod users;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use keel_core::Error;
use keel_core::access::{Permission, ResourceType};
use keel_store::Store;

use crate::{ApiError, AppState};
pub use config::BasicAuthConfig;

/// The authenticated identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user name recorded in the audit log and on runs.
    pub user: String,
    /// Admins pass every permission check.
    pub admin: bool,
    /// Whether the server checked a credential (false on an open server,
    /// where MLflow's clients name their own user on the runs they create).
    pub authenticated: bool,
    /// The user's row in the store (users of the basic-auth app only).
    pub user_id: Option<i64>,
}

impl Caller {
    /// A server with no authentication configured: every caller is the same
    /// anonymous administrator (loopback binds, or `--allow-unauthenticated`).
    pub fn anonymous() -> Caller {
        Caller {
            user: "anonymous".to_string(),
            admin: true,
            authenticated: false,
            user_id: None,
        }
    }

    /// The holder of the server's shared `--auth-token`.
    pub fn shared_token() -> Caller {
        Caller {
            user: "token".to_string(),
            admin: true,
            authenticated: true,
            user_id: None,
        }
    }

    fn user(user: &keel_store::User) -> Caller {
        Caller {
            user: user.username.clone(),
            admin: user.is_admin,
            authenticated: true,
            user_id: Some(user.id),
        }
    }
}

/// How the server authenticates.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// The shared bearer token (`--auth-token`); empty counts as none.
    pub shared_token: Option<String>,
    /// MLflow's basic-auth app (`--app-name basic-auth`).
    pub basic_auth: Option<BasicAuthConfig>,
    /// The UI's session cookie is `Secure` (the server speaks HTTPS).
    pub secure_cookies: bool,
}

impl AuthSettings {
    /// Whether any credential is required (an empty token is no credential).
    pub fn is_enabled(&self) -> bool {
        self.shared_token.as_deref().is_some_and(|t| !t.is_empty()) || self.basic_auth.is_some()
    }
}

/// The server's authentication state: settings, the credential cache, the
/// failure throttle and the run → experiment cache for permission checks.
pub struct Auth {
    shared_token: Option<String>,
    basic: Option<BasicAuthConfig>,
    cache: cache::CredentialCache,
    throttle: cache::Throttle,
    run_experiments: cache::BoundedMap<String, String>,
    keyer: secret::CacheKeyer,
    /// Verified against when the user is unknown, so an unknown name costs
    /// the same time as a wrong password.
    dummy_hash: String,
    /// The web UI's login sessions.
    sessions: session::Sessions,
    secure_cookies: bool,
}

/// Why the UI's login form was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefused {
    /// Wrong user, password or token.
    Wrong,
    /// Too many recent failures for this user and address.
    Throttled(Duration),
    /// The server needs no credential.
    NotNeeded,
}

/// Why a request was not authenticated.
pub(crate) enum Refusal {
    /// No or wrong credential: 401.
    Unauthenticated(&'static str),
    /// Too many recent failures for this user and address: 429.
    Throttled(Duration),
}

impl Auth {
    pub fn new(settings: &AuthSettings) -> Result<Auth, Error> {
        let basic = settings.basic_auth.clone();
        let (ttl, size) = basic
            .as_ref()
            .map(|b| (b.cache_ttl, b.cache_max_size))
            .unwrap_or((Duration::ZERO, 0));
        Ok(Auth {
            shared_token: settings.shared_token.clone().filter(|t| !t.is_empty()),
            basic,
            cache: cache::CredentialCache::new(ttl, size),
            throttle: cache::Throttle::new(),
            run_experiments: cache::BoundedMap::new(100_000),
            keyer: secret::CacheKeyer::new()?,
            dummy_hash: secret::hash_password(&uuid_like())?,
            sessions: session::Sessions::default(),
            secure_cookies: settings.secure_cookies,
        })
    }

    /// The UI's login form: checks a basic-auth user's password (through the
    /// same cache and failed-login throttle as the API), or the shared token
    /// given as the password with the user `token` (or none), and starts a
    /// session. Returns the caller and the `Set-Cookie` value.
    pub async fn login(
        &self,
        store: &Store,
        username: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<(Caller, HeaderValue), LoginRefused> {
        if !self.is_enabled() {
            return Err(LoginRefused::NotNeeded);
        }
        let token_holder = username.is_empty() || username == "token";
        let (caller, holder) = match &self.shared_token {
            Some(shared)
                if token_holder && secret::equal(shared.as_bytes(), password.as_bytes()) =>
            {
                (Caller::shared_token(), session::Holder::SharedToken)
            }
            _ if self.basic.is_some() => {
                match self.basic_auth(store, username, password, address).await {
                    Ok(caller) => {
                        let holder = session::Holder::User(caller.user.clone());
                        (caller, holder)
                    }
                    Err(Refusal::Throttled(wait)) => return Err(LoginRefused::Throttled(wait)),
                    Err(Refusal::Unauthenticated(_)) => return Err(LoginRefused::Wrong),
                }
            }
            _ => return Err(LoginRefused::Wrong),
        };
        let (id, _) = self.sessions.start(holder).map_err(|e| {
            tracing::error!(error = %e, "starting a session");
            LoginRefused::Wrong
        })?;
        Ok((caller, session::set_cookie(Some(&id), self.secure_cookies)))
    }

    /// Ends `session`; returns the `Set-Cookie` value that clears the cookie.
    pub fn logout(&self, session: &session::Session) -> HeaderValue {
        self.sessions.end(&session.key);
        session::set_cookie(None, self.secure_cookies)
    }

    /// Ends every UI session of `username` (password changed, user deleted).
    pub fn end_sessions_of(&self, username: &str) {
        self.sessions.end_user(username);
    }

    /// The caller of a session cookie, re-reading the user (a deleted user's
    /// session ends here).
    async fn session_caller(&self, store: &Store, id: &str) -> Option<(Caller, session::Session)> {
        let (holder, session) = self.sessions.find(id)?;
        let caller = match holder {
            session::Holder::SharedToken if self.shared_token.is_some() => Caller::shared_token(),
            session::Holder::SharedToken => return None,
            session::Holder::User(name) => match store.get_user(&name).await {
                Ok(user) => Caller::user(&user),
                Err(e) => {
                    if e.code == keel_core::ErrorCode::ResourceDoesNotExist {
                        self.sessions.end(id);
                    } else {
                        tracing::error!(error = %e, "reading a session's user");
                    }
                    return None;
                }
            },
        };
        Some((caller, session))
    }

    /// The CSRF token `caller`'s forms carry: the session's own, else a keyed
    /// digest of the user (open servers, browsers sending basic auth).
    fn csrf_token(&self, caller: &Caller, session: Option<&session::Session>) -> session::Csrf {
        session::Csrf(match session {
            Some(session) => session.csrf.clone(),
            None => session::user_csrf(&self.keyer, caller),
        })
    }

    /// Whether users, grants and tokens are in force (`--app-name basic-auth`).
    pub fn users_enabled(&self) -> bool {
        self.basic.is_some()
    }

    /// Whether any credential is required.
    pub fn is_enabled(&self) -> bool {
        self.shared_token.is_some() || self.basic.is_some()
    }

    /// Creates the configured admin when no user of that name exists.
    pub async fn bootstrap(&self, store: &Store) -> Result<(), Error> {
        let Some(basic) = &self.basic else {
            return Ok(());
        };
        match store.get_user(&basic.admin_username).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == keel_core::ErrorCode::ResourceDoesNotExist => {
                let password = basic.admin_password.as_deref().ok_or_else(|| {
                    Error::invalid_parameter(format!(
                        "No user '{}' exists yet: set MLFLOW_AUTH_ADMIN_PASSWORD (or admin_password \
                         in MLFLOW_AUTH_CONFIG_PATH) so keel can create the admin",
                        basic.admin_username
                    ))
                })?;
                keel_core::access::validate_password(password)?;
                let hash = hash_blocking(password.to_string()).await?;
                match store.create_user(&basic.admin_username, &hash, true).await {
                    Ok(_) => {
                        tracing::info!(user = %basic.admin_username, "created admin user");
                        Ok(())
                    }
                    // Another server sharing the store created it first.
                    Err(e) if e.code == keel_core::ErrorCode::ResourceAlreadyExists => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Forgets every remembered credential (after a password, admin flag,
    /// user or token change through this server).
    pub fn forget_credentials(&self) {
        self.cache.clear();
    }

    /// Authenticates the `Authorization` header sent from `address`.
    pub(crate) async fn authenticate(
        &self,
        store: &Store,
        authorization: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<Caller, Refusal> {
        if !self.is_enabled() {
            return Ok(Caller::anonymous());
        }
        let Some(credential) = authorization.and_then(parse_authorization) else {
            return Err(Refusal::Unauthenticated("no credential"));
        };
        match credential {
            Credential::Bearer(token) => self.bearer(store, &token).await,
            Credential::Basic(username, password) => {
                if self.basic.is_none() {
                    return Err(Refusal::Unauthenticated("basic auth not enabled"));
                }
                self.basic_auth(store, &username, &password, address).await
            }
        }
    }

    async fn bearer(&self, store: &Store, token: &str) -> Result<Caller, Refusal> {
        if let Some(shared) = &self.shared_token
            && secret::equal(shared.as_bytes(), token.as_bytes())
        {
            return Ok(Caller::shared_token());
        }
        if self.basic.is_none() || !token.starts_with(secret::TOKEN_PREFIX) {
            return Err(Refusal::Unauthenticated("unknown token"));
        }
        let key = self.keyer.digest("\0token", token);
        if let Some(caller) = self.cache.get(&key) {
            return Ok(caller);
        }
        let hash = secret::token_hash(token);
        match store.token_user(&hash, keel_core::now_millis()).await {
            Ok(Some(user)) => {
                let caller = Caller::user(&user);
                self.cache.put(key, caller.clone());
                Ok(caller)
            }
            Ok(None) => Err(Refusal::Unauthenticated("unknown token")),
            Err(e) => {
                tracing::error!(error = %e, "reading access token");
                Err(Refusal::Unauthenticated("token check failed"))
            }
        }
    }

    async fn basic_auth(
        &self,
        store: &Store,
        username: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<Caller, Refusal> {
        if username.is_empty() || password.is_empty() {
            return Err(Refusal::Unauthenticated("empty credential"));
        }
        let key = self.keyer.digest(username, password);
        if let Some(caller) = self.cache.get(&key) {
            return Ok(caller);
        }
        if let Some(wait) = self.throttle.wait(address, username) {
            return Err(Refusal::Throttled(wait));
        }
        let found = match store.user_credential(username).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "reading user");
                return Err(Refusal::Unauthenticated("user check failed"));
            }
        };
        // An unknown user costs one hash like a known one: no enumeration by timing.
        let stored = found
            .as_ref()
            .map(|f| f.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let matches = verify_blocking(password.to_string(), stored).await;
        match found {
            Some(found) if matches => {
                self.throttle.succeeded(address, username);
                let caller = Caller::user(&found.user);
                self.cache.put(key, caller.clone());
                Ok(caller)
            }
            _ => {
                self.throttle.failed(address, username);
                Err(Refusal::Unauthenticated("wrong user or password"))
            }
        }
    }

    /// What `caller` holds on a resource: MANAGE for admins, else its grant
    /// (on the resource, else on `*`), else `default_permission`.
    pub async fn permission(
        &self,
        store: &Store,
        caller: &Caller,
        resource_type: ResourceType,
        resource_id: &str,
    ) -> Result<Permission, Error> {
        if caller.admin {
            return Ok(Permission::Manage);
        }
        let default = self
            .basic
            .as_ref()
            .map(|b| b.default_permission)
            .unwrap_or(Permission::NoPermissions);
        let Some(user_id) = caller.user_id else {
            return Ok(default);
        };
        Ok(store
            .granted(user_id, resource_type, resource_id)
            .await?
            .unwrap_or(default))
    }

    /// May `caller` read experiment `experiment_id`?
    pub async fn may_read_experiment(
        &self,
        store: &Store,
        caller: &Caller,
        experiment_id: &str,
    ) -> Result<bool, Error> {
        Ok(self
            .permission(store, caller, ResourceType::Experiment, experiment_id)
            .await?
            .allows(Permission::Read))
    }

    /// May `caller` read registered model `name`?
    pub async fn may_read_model(
        &self,
        store: &Store,
        caller: &Caller,
        name: &str,
    ) -> Result<bool, Error> {
        Ok(self
            .permission(store, caller, ResourceType::RegisteredModel, name)
            .await?
            .allows(Permission::Read))
    }

    /// The experiment of a run (runs never move, so the answer is cached).
    pub(crate) async fn run_experiment(
        &self,
        store: &Store,
        run_id: &str,
    ) -> Result<String, Error> {
        if let Some(id) = self.run_experiments.get(run_id) {
            return Ok(id);
        }
        let id = store.run_experiment_id(run_id).await?;
        self.run_experiments.put(run_id.to_string(), id.clone());
        Ok(id)
    }
}

fn uuid_like() -> String {
    // A password nobody knows, for the dummy hash.
    secret::new_token()
        .map(|(secret, _)| secret)
        .unwrap_or_else(|_| "keel-dummy-password".to_string())
}

/// Hashes a password off the async threads (PBKDF2 takes a few hundred ms).
pub(crate) async fn hash_blocking(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || secret::hash_password(&password))
        .await
        .map_err(|e| Error::internal(format!("hashing task failed: {e}")))?
}

async fn verify_blocking(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || secret::verify_password(&password, &stored))
        .await
        .unwrap_or(false)
}

enum Credential {
    Bearer(String),
    Basic(String, String),
}

/// `Bearer TOKEN` or `Basic base64(user:password)`; an empty token or
/// password is no credential.
fn parse_authorization(value: &str) -> Option<Credential> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| Credential::Bearer(rest.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some(Credential::Basic(user.to_string(), password.to_string()));
    }
    None
}

/// Query parameters that carry a credential: refused, because URLs end up
/// in logs, proxies and browser history.
const CREDENTIAL_PARAMS: &[&str] = &["access_token", "token", "api_key", "apikey", "password"];

fn credential_in_query(query: Option<&str>) -> Option<String> {
    let query = query?;
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(key, _)| key.to_ascii_lowercase())
        .find(|key| CREDENTIAL_PARAMS.contains(&key.as_str()))
}

fn is_public(path: &str) -> bool {
    path == "/health"
        || path.ends_with("/mlflow/server-info")
        // The UI's login form and the stylesheet and script it needs.
        || path == "/login"
        || path.starts_with("/static/")
}

/// The REST API, where only the `Authorization` header authenticates
/// (never the UI's session cookie).
fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/ajax-api/")
}

/// A browser navigating to a page without a credential: sent to the login
/// form (which comes back here after), instead of a JSON 401.
fn login_redirect(auth: &Auth, request: &Request) -> Option<Response> {
    let method = request.method();
    let navigating = (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
        && !is_api(request.uri().path())
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
    if !navigating || !auth.is_enabled() {
        return None;
    }
    let next = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    let location = HeaderValue::from_str(&format!("/login?next={next}")).ok()?;
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Some(response)
}

fn unauthenticated(auth: &Auth) -> Response {
    let challenge = if auth.users_enabled() {
        "Basic realm=\"keel\""
    } else {
        "Bearer realm=\"keel\""
    };
    let message = if auth.users_enabled() {
        "You are not authenticated: send HTTP basic auth (MLFLOW_TRACKING_USERNAME and \
         MLFLOW_TRACKING_PASSWORD) or 'Authorization: Bearer <token>' (MLFLOW_TRACKING_TOKEN)"
    } else {
        "This server requires 'Authorization: Bearer <token>' (MLFLOW_TRACKING_TOKEN)"
    };
    let mut response = ApiError(Error::unauthenticated(message)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// The authentication and authorization middleware: every route but
/// `/health` and server-info.
pub(crate) async fn middleware(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let auth = state.auth.clone();
    let page = !is_api(request.uri().path());
    if !auth.is_enabled() {
        let caller = Caller::anonymous();
        if page {
            request
                .extensions_mut()
                .insert(auth.csrf_token(&caller, None));
        }
        request.extensions_mut().insert(caller);
        return next.run(request).await;
    }
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    if let Some(key) = credential_in_query(request.uri().query()) {
        return ApiError(Error::bad_request(format!(
            "Credentials are not accepted in the query string ('{key}'): send them in the \
             Authorization header"
        )))
        .into_response();
    }
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The UI's session cookie, on pages only and only without a header credential.
    let cookie = match authorization {
        None if page => session::cookie_value(request.headers()),
        _ => None,
    };
    let mut session = None;
    let authenticated = match cookie {
        Some(id) => match auth.session_caller(&state.store, &id).await {
            Some((caller, found)) => {
                session = Some(found);
                Ok(caller)
            }
            None => Err(Refusal::Unauthenticated("no such session")),
        },
        None => {
            auth.authenticate(&state.store, authorization.as_deref(), address)
                .await
        }
    };
    let caller = match authenticated {
        Ok(caller) => caller,
        Err(Refusal::Unauthenticated(why)) => {
            tracing::debug!(reason = why, "request not authenticated");
            return login_redirect(&auth, &request).unwrap_or_else(|| unauthenticated(&auth));
        }
        Err(Refusal::Throttled(wait)) => {
            let seconds = wait.as_secs().max(1);
            let mut response = ApiError(Error::new(
                keel_core::ErrorCode::BadRequest,
                format!(
                    "Too many failed logins for this user from this address: retry in {seconds} s"
                ),
            ))
            .into_response();
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    };
    if page {
        let csrf = auth.csrf_token(&caller, session.as_ref());
        request.extensions_mut().insert(csrf);
        if let Some(session) = session {
            request.extensions_mut().insert(session);
        }
    }
    request.extensions_mut().insert(caller.clone());
    let after = match rules::authorize(&state, &caller, &mut request).await {
        Ok(after) => after,
        Err(error) => return ApiError(error).into_response(),
    };
    let response = next.run(request).await;
    match after {
        Some(after) => rules::after_success(&state, &caller, after, response).await,
        None => response,
    }
}

/// Shared handle type used by [`AppState`].
pub type SharedAuth = Arc<Auth>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_forms() {
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:pass:word");
        match parse_authorization(&format!("Basic {basic}")) {
            Some(Credential::Basic(user, password)) => {
                assert_eq!(user, "alice");
                assert_eq!(password, "pass:word");
            }
            _ => panic!("basic not parsed"),
        }
        assert!(matches!(
            parse_authorization("bearer abc"),
            Some(Credential::Bearer(t)) if t == "abc"
        ));
        assert!(parse_authorization("Bearer ").is_none());
        assert!(parse_authorization("Digest x").is_none());
    }

    #[test]
    fn credentials_in_query_are_found() {
        assert_eq!(
            credential_in_query(Some("a=1&access_token=x")).as_deref(),
            Some("access_token")
        );
        assert_eq!(credential_in_query(Some("page_token=x")), None);
        assert_eq!(credential_in_query(None), None);
    }
}
