//! Authentication and permissions in process: the shared token, MLflow's
//! basic-auth app (users, grants, tokens), the failed-login throttle, the
//! loopback rule and HTTPS.

use base64::Engine;
use keel_core::access::Permission;
use keel_server::auth::BasicAuthConfig;
use serde_json::{Value, json};

use crate::util::{Api, config};

const ADMIN_PASSWORD: &str = "admin-password-123";

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn admin() -> String {
    basic("admin", ADMIN_PASSWORD)
}

async fn basic_auth_api(default_permission: Permission) -> Api {
    Api::with(|config| {
        config.auth_token = Some("shared-token-value".into());
        config.basic_auth = Some(BasicAuthConfig {
            default_permission,
            admin_password: Some(ADMIN_PASSWORD.into()),
            ..BasicAuthConfig::default()
        });
    })
    .await
}

#[tokio::test]
async fn shared_token_and_empty_credentials() {
    let api = Api::with(|config| config.auth_token = Some("team-token".into())).await;
    let (status, challenge, body) = api
        .call_as(
            "",
            "GET",
            "/api/2.0/mlflow/experiments/get?experiment_id=0",
            Value::Null,
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error_code"], "UNAUTHENTICATED");
    assert!(challenge.unwrap().starts_with("Bearer"));
    for wrong in ["Bearer ", "Bearer team-tokex", "Basic Og=="] {
        let (status, ..) = api
            .call_as(
                wrong,
                "GET",
                "/api/2.0/mlflow/experiments/get?experiment_id=0",
                Value::Null,
            )
            .await;
        assert_eq!(status, 401, "{wrong}");
    }
    let (status, ..) = api
        .call_as(
            "Bearer team-token",
            "GET",
            "/api/2.0/mlflow/experiments/get?experiment_id=0",
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    // /health stays open; a token in the query string is refused.
    assert_eq!(api.call_as("", "GET", "/health", Value::Null).await.0, 200);
    let (status, _, body) = api
        .call_as(
            "",
            "GET",
            "/api/2.0/mlflow/experiments/get?experiment_id=0&access_token=team-token",
            Value::Null,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // An empty token is no token: the server is open (loopback).
    let open = Api::with(|config| config.auth_token = Some(String::new())).await;
    assert_eq!(
        open.call_as(
            "",
            "GET",
            "/api/2.0/mlflow/experiments/get?experiment_id=0",
            Value::Null
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn users_grants_and_the_read_users_write() {
    let api = basic_auth_api(Permission::Read).await;
    let (status, challenge, _) = api
        .call_as("", "GET", "/api/2.0/mlflow/experiments/search", Value::Null)
        .await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().starts_with("Basic"));
    let create = |user: &str, password: &str| json!({"username": user, "password": password});
    let (status, _, body) = api
        .call_as(
            &admin(),
            "POST",
            "/api/2.0/mlflow/users/create",
            create("reader", "short"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("12 characters"));
    for user in ["reader", "writer"] {
        let (status, _, body) = api
            .call_as(
                &admin(),
                "POST",
                "/api/2.0/mlflow/users/create",
                create(user, "long-enough-password"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user"]["username"], user);
    }
    let reader = basic("reader", "long-enough-password");
    let writer = basic("writer", "long-enough-password");

    // Wrong password and unknown user: the same 401.
    let (s1, _, wrong) = api
        .call_as(
            &basic("reader", "long-enough-passwore"),
            "GET",
            "/api/2.0/mlflow/experiments/search",
            Value::Null,
        )
        .await;
    let (s2, _, unknown) = api
        .call_as(
            &basic("nobody", "long-enough-password"),
            "GET",
            "/api/2.0/mlflow/experiments/search",
            Value::Null,
        )
        .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong, unknown);

    // The writer creates an experiment and a run (MANAGE as creator).
    let (status, _, body) = api
        .call_as(
            &writer,
            "POST",
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "team"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let experiment = body["experiment_id"].as_str().unwrap().to_string();
    let (_, _, body) = api
        .call_as(
            &writer,
            "POST",
            "/api/2.0/mlflow/runs/create",
            json!({"experiment_id": experiment}),
        )
        .await;
    let run_id = body["run"]["info"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(body["run"]["info"]["user_id"], "writer");
    let (_, _, held) = api
        .call_as(
            &admin(),
            "GET",
            &format!("/api/3.0/mlflow/users/permissions/get?username=writer&resource_type=experiment&resource_id={experiment}"),
            Value::Null,
        )
        .await;
    assert_eq!(held["permission"], "MANAGE");

    // The reader reads, and its write is refused naming EDIT and changes nothing.
    let (status, ..) = api
        .call_as(
            &reader,
            "GET",
            &format!("/api/2.0/mlflow/runs/get?run_id={run_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, body) = api
        .call_as(
            &reader,
            "POST",
            "/api/2.0/mlflow/runs/log-parameter",
            json!({"run_id": run_id, "key": "a", "value": "1"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error_code"], "PERMISSION_DENIED");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("needs EDIT on experiment"),
        "{body}"
    );
    let (_, _, body) = api
        .call_as(
            &writer,
            "GET",
            &format!("/api/2.0/mlflow/runs/get?run_id={run_id}"),
            Value::Null,
        )
        .await;
    assert!(body["run"]["data"].get("params").is_none(), "{body}");

    // A grant opens the write; admins and the shared token pass everything.
    let (status, _, body) = api
        .call_as(
            &writer,
            "POST",
            "/api/3.0/mlflow/users/permissions/grant",
            json!({"username": "reader", "resource_type": "experiment", "resource_id": experiment, "permission": "EDIT"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, ..) = api
        .call_as(
            &reader,
            "POST",
            "/api/2.0/mlflow/runs/log-parameter",
            json!({"run_id": run_id, "key": "a", "value": "1"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, ..) = api
        .call_as(
            "Bearer shared-token-value",
            "POST",
            "/api/2.0/mlflow/runs/delete",
            json!({"run_id": run_id}),
        )
        .await;
    assert_eq!(status, 200);

    // Only admins manage users.
    let (status, ..) = api
        .call_as(
            &reader,
            "POST",
            "/api/2.0/mlflow/users/create",
            create("x", "long-enough-password"),
        )
        .await;
    assert_eq!(status, 403);

    // Tokens act as their user and die with it.
    let (status, _, body) = api
        .call_as(
            &admin(),
            "POST",
            "/api/2.0/keel/tokens/create",
            json!({"username": "reader", "expires_in": "1d"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = format!("Bearer {}", body["token"].as_str().unwrap());
    let (_, _, listed) = api
        .call_as(&reader, "GET", "/api/2.0/keel/tokens/list", Value::Null)
        .await;
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(body["token"].as_str().unwrap()));
    let (_, _, me) = api
        .call_as(&token, "GET", "/api/2.0/mlflow/users/current", Value::Null)
        .await;
    assert_eq!(me["user"]["username"], "reader");
    let (status, ..) = api
        .call_as(
            &admin(),
            "DELETE",
            "/api/2.0/mlflow/users/delete",
            json!({"username": "reader"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, ..) = api
        .call_as(&token, "GET", "/api/2.0/mlflow/users/current", Value::Null)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn no_permissions_default_hides_and_failures_are_slowed() {
    let api = basic_auth_api(Permission::NoPermissions).await;
    api.call_as(
        &admin(),
        "POST",
        "/api/2.0/mlflow/users/create",
        json!({"username": "outsider", "password": "long-enough-password"}),
    )
    .await;
    let outsider = basic("outsider", "long-enough-password");
    api.call_as(
        &admin(),
        "POST",
        "/api/2.0/mlflow/experiments/create",
        json!({"name": "secret"}),
    )
    .await;
    let (status, _, body) = api
        .call_as(
            &outsider,
            "POST",
            "/api/2.0/mlflow/experiments/search",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["experiments"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{body}"
    );
    let (status, ..) = api
        .call_as(
            &outsider,
            "GET",
            "/api/2.0/mlflow/experiments/get?experiment_id=1",
            Value::Null,
        )
        .await;
    assert_eq!(status, 403);

    // Five wrong passwords, then even the right one must wait (429 without a check).
    for _ in 0..5 {
        let (status, ..) = api
            .call_as(
                &basic("outsider", "wrong-password-xx"),
                "GET",
                "/api/2.0/mlflow/users/current",
                Value::Null,
            )
            .await;
        assert_eq!(status, 401);
    }
    let (status, ..) = api
        .call_as(
            &basic("outsider", "other-password-x"),
            "GET",
            "/api/2.0/mlflow/users/current",
            Value::Null,
        )
        .await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn bootstrap_needs_an_admin_password_and_binds_check_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(dir.path());
    settings.basic_auth = Some(BasicAuthConfig::default());
    let error = keel_server::AppState::open(&settings).await.err().unwrap();
    assert!(
        error.message.contains("MLFLOW_AUTH_ADMIN_PASSWORD"),
        "{error}"
    );

    // A name that looks like loopback is not loopback; an empty token is no token.
    let mut open = config(dir.path());
    open.host = "127.0.0.1.nip.io".into();
    open.auth_token = Some(String::new());
    let error = keel_server::bind(&open).await.err().unwrap();
    assert!(error.message.contains("without authentication"), "{error}");
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures");
    let mut settings = config(dir.path());
    settings.tls = Some(keel_server::TlsFiles {
        cert: fixtures.join("test-cert.pem"),
        key: fixtures.join("test-key.pem"),
    });
    let (server, _state) = keel_server::bind(&settings).await.unwrap();
    let port = server.addr.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let cert =
        reqwest::Certificate::from_pem(&std::fs::read(fixtures.join("test-ca.pem")).unwrap())
            .unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([cert])
        .build()
        .unwrap();
    let answer = client
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "OK");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/health")).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
