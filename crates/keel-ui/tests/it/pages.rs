//! Pages over real HTTP, without a browser: escaping, status codes, bounds,
//! paging, headers, and the API left as it was.

use bytes::Bytes;
use keel_core::{Metric, Param, Tag};
use keel_store::CreateRun;

use crate::util;

const XSS: &str = "<script>alert(1)</script>";

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let answer = reqwest::get(url).await.expect("GET");
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    (status, headers, answer.text().await.expect("body"))
}

async fn run(server: &util::Server, experiment_id: &str, name: &str, start: i64) -> String {
    server
        .state
        .store
        .create_run(CreateRun {
            experiment_id: experiment_id.into(),
            user_id: "bob".into(),
            run_name: Some(name.into()),
            start_time: Some(start),
            tags: vec![],
        })
        .await
        .expect("create run")
        .info
        .run_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_input_is_escaped_everywhere() {
    let server = util::start_server().await;
    let store = &server.state.store;
    let experiment = store
        .create_experiment(&format!("exp {XSS}"), None, &[Tag::new("owner", XSS)])
        .await
        .unwrap();
    let id = run(&server, &experiment, XSS, 1_000).await;
    store
        .log_batch(
            &id,
            vec![Metric::new("acc", 0.5, 1_000, 1), Metric::new("acc", 0.7, 2_000, 2)],
            vec![Param {
                key: "p".into(),
                value: XSS.into(),
            }],
            vec![
                Tag::new("team", XSS),
                Tag::new("mlflow.note.content", XSS),
                Tag::new(
                    "keel.gates",
                    serde_json::json!({"passed": false, "gates": [{"expression": XSS, "passed": false, "note": XSS}]})
                        .to_string(),
                ),
            ],
        )
        .await
        .unwrap();
    let root = format!("{}/artifacts", &id);
    server
        .state
        .artifacts
        .put_bytes(
            &format!("{experiment}/{root}/t.csv"),
            Bytes::from(format!("h,{XSS}\n1,{XSS}\n")),
        )
        .await
        .unwrap();
    let pages = [
        "/".to_string(),
        format!("/experiments/{experiment}?col=params.p&col=tags.team&col=metrics.acc"),
        format!("/experiments/{experiment}/runs/{id}"),
        format!("/experiments/{experiment}/runs/{id}/artifacts/t.csv"),
        format!("/compare-runs?runs={id},{id}"),
    ];
    for page in pages {
        let (status, headers, body) = get(&format!("{}{page}", server.url)).await;
        assert_eq!(status, 200, "{page}: {body}");
        assert!(
            !body.contains("<script>alert"),
            "{page} lets a script through"
        );
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page} does not show the text"
        );
        assert!(
            headers[reqwest::header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"),
            "{page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_bounds_and_the_api() {
    let server = util::start_server().await;
    let url = &server.url;
    let experiment = server
        .state
        .store
        .create_experiment("paged", None, &[])
        .await
        .unwrap();
    for i in 0..230 {
        run(&server, &experiment, &format!("run-{i:03}"), 1_000 + i).await;
    }
    // Server-side paging, newest first.
    let (_, _, first) = get(&format!("{url}/experiments/{experiment}")).await;
    assert_eq!(first.matches("name=\"runs\"").count(), 100);
    assert!(first.contains("run-229") && !first.contains("run-129"));
    assert!(
        first.contains("230</span>") || first.contains(" of 230"),
        "total shown"
    );
    let (_, _, last) = get(&format!("{url}/experiments/{experiment}?offset=200&n=100")).await;
    assert_eq!(last.matches("name=\"runs\"").count(), 30);
    assert!(last.contains("rel=\"prev\"") && !last.contains("rel=\"next\""));
    let (_, _, sorted) = get(&format!(
        "{url}/experiments/{experiment}?order=attributes.run_name+ASC&n=5"
    ))
    .await;
    assert_eq!(sorted.matches("name=\"runs\"").count(), 5);
    assert!(sorted.contains("run-000") && !sorted.contains("run-229"));

    // A semantic filter error is shown on the page (400), not a crash.
    let (status, _, body) = get(&format!(
        "{url}/experiments/{experiment}?filter=metrics.acc+%3D+%27high%27"
    ))
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("filter-error"), "{body}");

    // Missing things are 404 pages; odd paths are refused by the artifact store.
    let run_id = run(&server, &experiment, "one", 5).await;
    for (path, code) in [
        ("/experiments/999".to_string(), 404),
        (
            format!("/experiments/{experiment}/runs/{}", "0".repeat(32)),
            404,
        ),
        ("/models/nope".to_string(), 404),
        ("/models/nope/versions/x".to_string(), 400),
        (
            format!("/experiments/{experiment}/runs/{run_id}/artifacts/..%2F..%2Fkeel.db"),
            400,
        ),
        (
            format!("/experiments/{experiment}/runs/{run_id}/raw/..%2Fx"),
            400,
        ),
        (
            format!("/experiments/{experiment}/runs/{run_id}/artifacts/missing.txt"),
            404,
        ),
        (
            format!(
                "/compare-runs?runs={}",
                (0..51)
                    .map(|i| format!("{i:032x}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            400,
        ),
    ] {
        let (status, headers, body) = get(&format!("{url}{path}")).await;
        assert_eq!(status, code, "{path}: {body}");
        assert!(
            headers[reqwest::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert!(
            !body.contains("SQLITE") && !body.contains("sqlx"),
            "{path}: {body}"
        );
    }
    // A run under the wrong experiment goes to its own.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = client
        .get(format!("{url}/experiments/0/runs/{run_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    assert_eq!(
        answer.headers()[reqwest::header::LOCATION],
        format!("/experiments/{experiment}/runs/{run_id}").as_str()
    );
    let answer = client
        .get(format!("{url}/runs/{run_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);

    // Raw artifacts are sandboxed; assets are cached for good.
    server
        .state
        .artifacts
        .put_bytes(
            &format!("{experiment}/{run_id}/artifacts/r.html"),
            Bytes::from_static(b"<script>alert(1)</script>"),
        )
        .await
        .unwrap();
    let (status, headers, _) = get(&format!(
        "{url}/experiments/{experiment}/runs/{run_id}/raw/r.html"
    ))
    .await;
    assert_eq!(status, 200);
    assert!(
        headers[reqwest::header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    let (_, _, home) = get(&format!("{url}/")).await;
    let css = home
        .split("href=\"")
        .find(|s| s.starts_with("/static/ui.css"))
        .and_then(|s| s.split('"').next())
        .expect("stylesheet link");
    let (status, headers, _) = get(&format!("{url}{css}")).await;
    assert_eq!(status, 200);
    assert!(
        headers[reqwest::header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );

    // The API is where it was.
    let (status, _, body) = get(&format!("{url}/health")).await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, _, body) = get(&format!(
        "{url}/api/2.0/mlflow/experiments/get?experiment_id={experiment}"
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = get(&format!("{url}/no/such/page")).await;
    assert_eq!(status, 404);
    assert!(
        headers[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(body.contains("No endpoint GET /no/such/page"));
}

/// The value of the first hidden `csrf` field on a page.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf field")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sessions_and_csrf_over_http() {
    let server = util::start_server_with_users().await;
    let url = &server.url;
    let store = &server.state.store;
    let hash = keel_server::auth::secret::hash_password_with("bob-password-12", 1_000).unwrap();
    store.create_user("bob", &hash, false).await.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let html = "text/html,application/xhtml+xml";

    // A browser is sent to the login form; an API client gets the JSON 401.
    let answer = client
        .get(format!("{url}/models?x=1"))
        .header("accept", html)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    assert_eq!(
        answer.headers()["location"],
        "/login?next=%2Fmodels%3Fx%3D1"
    );
    let answer = client.get(format!("{url}/models")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let (status, _, form) = get(&format!("{url}/login?next=/models")).await;
    assert_eq!(status, 200);
    assert!(form.contains("name=\"password\"") && form.contains("value=\"/models\""));

    let login = |user: &str, password: &str, next: &str| {
        client
            .post(format!("{url}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username={user}&password={password}&next={next}"))
            .send()
    };
    let answer = login("bob", "wrong-password-1", "/").await.unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    assert!(answer.headers().get("set-cookie").is_none());
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("Wrong user name or password")
    );
    // The API's failed-login throttle guards the form too: after a few
    // failures for a user, the form answers 429 with Retry-After.
    let mut throttled = None;
    for _ in 0..10 {
        let answer = login("carol", "wrong-password-1", "/").await.unwrap();
        if answer.status().as_u16() == 429 {
            throttled = Some(answer);
            break;
        }
        assert_eq!(answer.status().as_u16(), 401);
    }
    let throttled = throttled.expect("the form is throttled after repeated failures");
    assert!(throttled.headers().contains_key("retry-after"));
    assert!(
        throttled
            .text()
            .await
            .unwrap()
            .contains("Too many failed logins")
    );

    // Another site's address is never where a login leads.
    let answer = login("bob", "bob-password-12", "%2F%2Fevil.example%2F")
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    assert_eq!(answer.headers()["location"], "/");
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in ["keel_session=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let session = cookie.split(';').next().unwrap().to_string();

    // The session reads pages, shows who is logged in, and carries a CSRF token.
    let page = client
        .get(format!("{url}/models"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("id=\"user\">bob<"), "{page}");
    let csrf = csrf_of(&page);
    // …but never the REST API: that takes a credential of its own.
    let answer = client
        .get(format!("{url}/api/2.0/mlflow/registered-models/search"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);

    // State-changing requests: without the token, with a wrong one, from another origin.
    let post = |path: &str, body: String, origin: Option<&str>| {
        let mut request = client
            .post(format!("{url}{path}"))
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    for (body, origin) in [
        ("alias=a&version=1".to_string(), None),
        ("alias=a&version=1&csrf=forged".to_string(), None),
        (
            format!("alias=a&version=1&csrf={csrf}"),
            Some("http://evil.example"),
        ),
    ] {
        let answer = post("/models/none/promote", body.clone(), origin)
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 403, "{body} {origin:?}");
    }
    // The right token from this origin reaches the handler (a missing model: 404).
    let answer = post(
        "/models/none/promote",
        format!("alias=a&version=1&csrf={csrf}"),
        Some(url.as_str()),
    )
    .await
    .unwrap();
    assert_eq!(answer.status().as_u16(), 404);

    // Logout clears the cookie and ends the session on the server.
    let answer = post("/logout", format!("csrf={csrf}"), None).await.unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    assert!(
        answer.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let answer = client
        .get(format!("{url}/models"))
        .header("cookie", &session)
        .header("accept", html)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303, "the old cookie is worthless");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_token_logs_in_too() {
    let server = util::start_server_with_token("shared-token-123").await;
    let url = &server.url;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (_, _, form) = get(&format!("{url}/login")).await;
    assert!(form.contains("Access token") && !form.contains("id=\"username\""));
    let login = |password: &str| {
        client
            .post(format!("{url}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username=token&password={password}&next=%2Fmodels"))
            .send()
    };
    assert_eq!(login("wrong").await.unwrap().status().as_u16(), 401);
    let answer = login("shared-token-123").await.unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    assert_eq!(answer.headers()["location"], "/models");
    let session = answer.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = client
        .get(format!("{url}/models"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("id=\"user\">token<"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_hide_what_a_user_may_not_read() {
    let server = util::start_server_with_users().await;
    let url = &server.url;
    let store = &server.state.store;
    let hash = keel_server::auth::secret::hash_password_with("dave-password-12", 1_000).unwrap();
    store.create_user("dave", &hash, false).await.unwrap();
    let experiment = store.create_experiment("shared", None, &[]).await.unwrap();
    let run_id = run(&server, &experiment, "trained", 1_000).await;
    for name in ["visible-model", "hidden-model"] {
        store
            .create_registered_model(name, None, &[])
            .await
            .unwrap();
        store
            .create_model_version(
                keel_store::CreateModelVersion {
                    name: name.into(),
                    source: "mlflow-artifacts:/x".into(),
                    run_id: Some(run_id.clone()),
                    user_id: "admin".into(),
                    ..Default::default()
                },
                &keel_store::Actor {
                    user: "admin".into(),
                    reason: String::new(),
                    cause: String::new(),
                },
            )
            .await
            .unwrap();
    }
    store
        .grant(
            "dave",
            keel_core::access::ResourceType::RegisteredModel,
            "hidden-model",
            keel_core::access::Permission::NoPermissions,
        )
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = client
        .post(format!("{url}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=dave&password=dave-password-12&next=%2F")
        .send()
        .await
        .unwrap();
    let session = answer.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = |path: String| {
        let client = &client;
        let session = &session;
        async move {
            let answer = client
                .get(format!("{url}{path}"))
                .header("cookie", session)
                .send()
                .await
                .unwrap();
            (answer.status().as_u16(), answer.text().await.unwrap())
        }
    };
    let (status, body) = page(format!("/experiments/{experiment}/runs/{run_id}")).await;
    assert_eq!(status, 200);
    assert!(body.contains("visible-model") && !body.contains("hidden-model"));
    let (_, body) = page("/models".into()).await;
    assert!(body.contains("visible-model") && !body.contains("hidden-model"));
    for path in ["/models/hidden-model", "/models/hidden-model/versions/1"] {
        assert_eq!(page(path.into()).await.0, 403, "{path}");
    }
    // READ (the default) shows no registry buttons.
    let (_, body) = page("/models/visible-model".into()).await;
    assert!(!body.contains("promote-form") && body.contains("You hold READ"));
}
