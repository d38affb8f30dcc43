//! One CSV file with every missing spelling (`?`, `n/a`, `NA`, `null`,
//! `None`, the empty cell, `nan`, ` ? `) fed through training (`keel
//! train`), validation (`keel schema infer` + `keel validate`), serving
//! (`/invocations` of `keel serve`, as CSV and as JSON) and monitoring (`keel
//! monitor profile`): the same cell means the same thing in all four (issue
//! 15: a `?` was missing when training and a 400 when serving).

use serde_json::{Value, json};

use crate::util::{self, ok};

/// Spellings of "missing" in the numeric column `x` (rows 0..8) and the
/// categorical column `c` (rows 8..12).
const NUMERIC_MISSING: [&str; 8] = ["?", "n/a", "NA", "null", "None", "", "nan", " ? "];
const CATEGORICAL_MISSING: [&str; 4] = ["?", "N/A", "NULL", "none"];
const ROWS: usize = 40;

/// `x`, `c` and the target `y` (`y` follows `x`, so the model is not constant).
fn rows() -> Vec<[String; 3]> {
    (0..ROWS)
        .map(|i| {
            let x = NUMERIC_MISSING
                .get(i)
                .map_or_else(|| i.to_string(), |s| s.to_string());
            let c = match i.checked_sub(8).and_then(|j| CATEGORICAL_MISSING.get(j)) {
                Some(missing) => missing.to_string(),
                None => ["a", "b"][i % 2].to_string(),
            };
            [x, c, u8::from(i >= ROWS / 2).to_string()]
        })
        .collect()
}

fn csv(rows: &[[String; 3]], with_target: bool) -> String {
    let mut text = String::from(if with_target { "x,c,y\n" } else { "x,c\n" });
    for [x, c, y] in rows {
        // Quote every cell so the spaces of " ? " survive as written.
        if with_target {
            text.push_str(&format!("\"{x}\",\"{c}\",{y}\n"));
        } else {
            text.push_str(&format!("\"{x}\",\"{c}\"\n"));
        }
    }
    text
}

fn column<'a>(document: &'a Value, name: &str) -> &'a Value {
    document["columns"]
        .as_array()
        .and_then(|columns| columns.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no column {name} in {document}"))
}

#[test]
fn a_missing_cell_means_the_same_at_training_validation_serving_and_monitoring() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let rows = rows();
    std::fs::write(root.join("data.csv"), csv(&rows, true)).unwrap();

    // Training: x is numeric (a `?` that were text would make it categorical),
    // with exactly the eight spellings missing; c's categories are a and b.
    ok(
        root,
        &[
            "train",
            "--algo",
            "logistic",
            "--data",
            "data.csv",
            "--target",
            "y",
            "--out",
            "model",
            "--test-fraction",
            "0",
        ],
    );
    let signature: Value =
        serde_json::from_slice(&std::fs::read(root.join("model/signature.json")).unwrap()).unwrap();
    let input = |name: &str| {
        signature["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap()
            .clone()
    };
    let x = input("x");
    assert_eq!(x["type"], "numeric", "x must be numeric: {x}");
    assert_eq!(x["missing_fraction"], json!(8.0 / ROWS as f64), "{x}");
    let c = input("c");
    assert_eq!(c["type"], "categorical", "{c}");
    let mut categories: Vec<&str> = c["categories"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    categories.sort_unstable();
    assert_eq!(categories, ["a", "b"], "{c}");
    assert_eq!(c["missing_fraction"], json!(4.0 / ROWS as f64), "{c}");

    // Validation: the inferred schema reads x as a nullable number and c as
    // nullable categories a, b; the file then passes its own schema.
    let schema = ok(root, &["schema", "infer", "data.csv"]);
    std::fs::write(root.join("schema.yaml"), &schema).unwrap();
    let x_schema = schema_block(&schema, "x");
    assert!(x_schema.contains("type: integer"), "{schema}");
    assert!(x_schema.contains("nullable: true"), "{schema}");
    let c_schema = schema_block(&schema, "c");
    assert!(c_schema.contains("nullable: true"), "{schema}");
    assert!(
        !c_schema.contains('?') && !c_schema.contains("N/A"),
        "{schema}"
    );
    let report = ok(root, &["validate", "data.csv", "--schema", "schema.yaml"]);
    assert!(!report.contains("type"), "{report}");

    // Monitoring: the same cells are nulls, not type violations.
    ok(
        root,
        &["monitor", "profile", "data.csv", "--output", "profile.json"],
    );
    let profile: Value =
        serde_json::from_slice(&std::fs::read(root.join("profile.json")).unwrap()).unwrap();
    let x_profile = column(&profile, "x");
    assert_eq!(x_profile["kind"], "numeric", "{x_profile}");
    assert_eq!(x_profile["nulls"], 8, "{x_profile}");
    assert_eq!(x_profile["types"]["texts"], 0, "{x_profile}");
    let c_profile = column(&profile, "c");
    assert_eq!(c_profile["nulls"], 4, "{c_profile}");

    // Serving: the CSV body, the same strings as JSON, and JSON nulls in
    // their place all answer 200 with the same predictions, flagged `null`.
    let served = util::Serve::start(&root.join("model"), &[]);
    let url = format!("http://{}/invocations", served.address);
    let as_json = |missing_as_null: bool| {
        let data: Vec<Value> = rows
            .iter()
            .map(|[x, c, _]| {
                let cell = |text: &str, missing: bool| {
                    if missing && missing_as_null {
                        Value::Null
                    } else {
                        Value::String(text.to_string())
                    }
                };
                let x_missing = NUMERIC_MISSING.contains(&x.as_str());
                let c_missing = CATEGORICAL_MISSING.contains(&c.as_str());
                json!([cell(x, x_missing), cell(c, c_missing)])
            })
            .collect();
        json!({"dataframe_split": {"columns": ["x", "c"], "data": data}}).to_string()
    };
    let answers: Vec<Value> = [
        ("text/csv", csv(&rows, false)),
        ("application/json", as_json(false)),
        ("application/json", as_json(true)),
    ]
    .into_iter()
    .map(|(content_type, body)| post(&url, content_type, body))
    .collect();
    assert_eq!(
        answers[0]["predictions"].as_array().map(Vec::len),
        Some(ROWS),
        "{}",
        answers[0]
    );
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
}

/// The lines of `column:`'s entry in a rendered schema.yaml.
fn schema_block<'a>(schema: &'a str, column: &str) -> &'a str {
    let start = schema
        .find(&format!("name: \"{column}\"\n"))
        .unwrap_or_else(|| panic!("no column {column} in\n{schema}"));
    let rest = &schema[start..];
    let end = rest[1..].find("- name:").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

/// POSTs `body` and returns the JSON answer, asserting 200 and the `null` flag.
fn post(url: &str, content_type: &str, body: String) -> Value {
    let answer = util::request("POST", url, &[("content-type", content_type)], Some(&body))
        .expect("keel serve answers");
    let flags = answer
        .headers
        .get("x-keel-flags")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(answer.status, 200, "{content_type}: {}", answer.body);
    assert_eq!(flags, "null", "{content_type}: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}
