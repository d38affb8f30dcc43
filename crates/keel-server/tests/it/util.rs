//! An in-process keel server: `keel_server::router` over a temporary SQLite
//! store and artifact folder, called with tower's `oneshot` (no socket).

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use keel_server::{AppState, ServerConfig};
use serde_json::Value;
use tower::ServiceExt;

pub struct Api {
    app: Router,
    _dir: tempfile::TempDir,
}

/// The server settings `Api::new` uses, for tests that change some.
pub fn config(dir: &std::path::Path) -> ServerConfig {
    ServerConfig {
        backend_store_uri: format!("sqlite:///{}", dir.join("keel.db").display()),
        artifacts_destination: dir.join("artifacts").display().to_string(),
        host: "127.0.0.1".into(),
        port: 0,
        auth_token: None,
        allow_unauthenticated: false,
        basic_auth: None,
        tls: None,
        protected_aliases: vec!["production".into()],
    }
}

impl Api {
    /// The server's temporary folder (its `artifacts/` is the artifact store).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// A server over `config(dir)` (a temporary SQLite file).
    pub async fn new() -> Api {
        Api::with(|_| {}).await
    }

    /// A server on `backend_store_uri` (default: a temporary SQLite file).
    pub async fn open(backend_store_uri: Option<String>) -> Api {
        Api::with(|config| {
            if let Some(uri) = backend_store_uri {
                config.backend_store_uri = uri;
            }
        })
        .await
    }

    /// A router over `config(dir)` changed by `change`.
    pub async fn with(change: impl FnOnce(&mut ServerConfig)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        change(&mut config);
        let state = AppState::open(&config).await.unwrap();
        Api {
            app: keel_server::router(state),
            _dir: dir,
        }
    }

    /// Sends one request with an `Authorization` header; returns the status,
    /// the `WWW-Authenticate` header and the JSON (or text) answer.
    pub async fn call_as(
        &self,
        authorization: &str,
        method: &str,
        uri: &str,
        body: Value,
    ) -> (u16, Option<String>, Value) {
        let mut request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri)
            .header("content-type", "application/json");
        if !authorization.is_empty() {
            request = request.header("authorization", authorization);
        }
        let body = match body {
            Value::Null => Body::empty(),
            value => Body::from(value.to_string()),
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, challenge, value)
    }

    /// Sends one request; returns the status and the body.
    pub async fn send(&self, method: &str, uri: &str, body: Body) -> (u16, Vec<u8>) {
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri)
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    /// Sends `body` as JSON (none for `Value::Null`); returns the status and the JSON answer.
    pub async fn call(&self, method: &str, uri: &str, body: Value) -> (u16, Value) {
        let body = match body {
            Value::Null => Body::empty(),
            value => Body::from(value.to_string()),
        };
        let (status, bytes) = self.send(method, uri, body).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// Asserts a 200 and returns the answer.
    pub async fn ok(&self, method: &str, uri: &str, body: Value) -> Value {
        let (status, value) = self.call(method, uri, body).await;
        assert_eq!(status, 200, "{method} {uri}: {value}");
        value
    }

    /// Asserts `status` with MLflow's error envelope `{"error_code": code, "message": …}`.
    pub async fn fails(&self, method: &str, uri: &str, body: Value, status: u16, code: &str) {
        let (got, value) = self.call(method, uri, body).await;
        assert_eq!(got, status, "{method} {uri}: {value}");
        assert_eq!(value["error_code"], code, "{method} {uri}: {value}");
        assert!(
            value["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {uri}: no message in {value}"
        );
    }
}

/// One request the server must refuse: method, URI, JSON body, status, `error_code`.
pub type Refusal<'a> = (&'a str, String, Value, u16, &'a str);

impl Api {
    /// Asserts every refusal, in order.
    pub async fn refuses(&self, cases: &[Refusal<'_>]) {
        for (method, uri, body, status, code) in cases {
            self.fails(method, uri, body.clone(), *status, code).await;
        }
    }
}
