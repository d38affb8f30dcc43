//! The bad-input corpus (`bad_input.jsonl`: requests with their expected
//! status) against SQLite and PostgreSQL: no 5xx, every status as
//! expected, every 4xx in MLflow's envelope with a message.

use axum::body::Body;
use serde_json::{Value, json};

use crate::util::Api;

const CORPUS: &str = include_str!("bad_input.jsonl");

struct Case {
    name: String,
    method: String,
    path: String,
    body: Vec<u8>,
    status: u16,
}

fn cases(run: &str, experiment: &str) -> Vec<Case> {
    let fill = |text: &str, expansion: &Option<String>| {
        let text = text.replace("$RUN", run).replace("$EXP", experiment);
        match expansion {
            Some(expansion) => text.replace("@@", expansion),
            None => text,
        }
    };
    CORPUS
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let case: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad_input.jsonl: {e}: {line}"));
            let expansion = case.get("repeat").map(|repeat| {
                let text = repeat[0].as_str().unwrap();
                let times = repeat[1].as_u64().unwrap() as usize;
                vec![text; times].join(repeat[2].as_str().unwrap())
            });
            let body = match (case.get("json"), case.get("raw")) {
                (Some(json), _) => fill(&json.to_string(), &expansion).into_bytes(),
                (None, Some(raw)) => fill(raw.as_str().unwrap(), &expansion).into_bytes(),
                (None, None) => Vec::new(),
            };
            Case {
                name: case["case"].as_str().unwrap().to_string(),
                method: case["method"].as_str().unwrap().to_string(),
                path: fill(case["path"].as_str().unwrap(), &expansion),
                body,
                status: case["status"].as_u64().unwrap() as u16,
            }
        })
        .collect()
}

async fn corpus_against(api: Api, backend: &str) {
    let experiment = api
        .ok(
            "POST",
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "corpus"}),
        )
        .await["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = api
        .ok(
            "POST",
            "/api/2.0/mlflow/runs/create",
            json!({"experiment_id": experiment}),
        )
        .await["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": "m"}),
    )
    .await;
    api.ok(
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        json!({"name": "m", "source": format!("mlflow-artifacts:/{experiment}/{run}/artifacts/model"), "run_id": run}),
    )
    .await;
    let cases = cases(&run, &experiment);
    assert!(cases.len() >= 60, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        eprintln!("{backend}: {}", case.name);
        let (status, body) = api
            .send(&case.method, &case.path, Body::from(case.body.clone()))
            .await;
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let enveloped = answer["error_code"].as_str().is_some_and(|c| !c.is_empty())
            && answer["message"].as_str().is_some_and(|m| !m.is_empty());
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        if status != case.status {
            failures.push(format!(
                "{}: expected {}, got {status}: {text}",
                case.name, case.status
            ));
        } else if (400..500).contains(&status) && !enveloped {
            failures.push(format!(
                "{}: {status} without the envelope: {text}",
                case.name
            ));
        }
        if status >= 500 {
            failures.push(format!("{}: a 5xx ({status}): {text}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{backend}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn bad_input_corpus_gets_4xx_in_the_envelope_on_sqlite() {
    corpus_against(Api::new().await, "sqlite").await;
}

#[tokio::test]
async fn bad_input_corpus_gets_4xx_in_the_envelope_on_postgres() {
    let Some(uri) = keel_store::testing::fresh_postgres_database().await else {
        return;
    };
    corpus_against(Api::open(Some(uri)).await, "postgresql").await;
}
