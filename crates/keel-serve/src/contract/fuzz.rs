//! Fuzz targets for the inference parsers (MLflow's JSON layouts and CSV,
//! Open Inference Protocol tensors), run by `cargo test` with proptest's
//! case count (`PROPTEST_CASES`, 256 by default).
//!
//! Properties: no body makes a parser panic; what is accepted is a
//! consistent batch (every column `rows` long, at most `max_rows`); what is
//! refused carries a message (the HTTP layer answers it with 400); a batch
//! written in any of the eight request layouts parses back to itself.

use proptest::prelude::*;
use serde_json::json;

use super::tests::signature;
use super::*;

const MAX_ROWS: usize = 50;

/// What every accepted request must look like.
fn check(result: Checked<Parsed>) -> std::result::Result<(), TestCaseError> {
    match result {
        Ok(parsed) => {
            let rows = parsed.batch.rows;
            prop_assert!(rows <= MAX_ROWS, "{rows} rows accepted");
            prop_assert_eq!(parsed.batch.columns.len(), 2);
            for column in &parsed.batch.columns {
                let len = match column {
                    Column::Numeric(values) => values.len(),
                    Column::Categorical(values) => values.len(),
                };
                prop_assert_eq!(len, rows);
            }
            prop_assert!(parsed.flags.rows.is_empty() || parsed.flags.rows.len() == rows);
        }
        Err(error) => prop_assert!(!error.message.is_empty()),
    }
    Ok(())
}

fn mlflow(body: &[u8], csv: bool) -> Checked<Parsed> {
    parse_mlflow(body, csv, &signature(), &Policies::default(), MAX_ROWS)
}

/// JSON values shaped like request bodies: the layouts' keys, rows, columns,
/// tensors, and every kind of cell.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "north",
            "south",
            "west",
            "income",
            "region",
            "?",
            "NaN",
            "inf",
            "1e999",
            "-0",
            "",
            " 7.5 ",
            "dataframe_split",
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "dataframe_split",
                        "dataframe_records",
                        "instances",
                        "inputs",
                        "params",
                        "columns",
                        "data",
                        "income",
                        "region",
                        "name",
                        "shape",
                        "datatype",
                        "x",
                    ]),
                    inner,
                ),
                0..5,
            )
            .prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// One Open Inference Protocol tensor, with shapes that overflow, go
/// negative or disagree with the data.
fn tensor() -> impl Strategy<Value = Value> {
    let dim = prop_oneof![
        0i64..5,
        Just(-1i64),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(1i64 << 62),
        Just((1i64 << 32) + 2),
        any::<i64>(),
    ];
    (
        prop::sample::select(vec!["income", "region", "x", "input"]),
        prop::collection::vec(dim, 0..4),
        prop::sample::select(vec!["FP64", "FP32", "BYTES", "INT64", "BOOL", "NOPE"]),
        json_value(),
    )
        .prop_map(|(name, shape, datatype, data)| {
            json!({"name": name, "shape": shape, "datatype": datatype, "data": data})
        })
}

/// A batch to write in every layout: income (maybe missing), region (maybe
/// missing or unknown).
fn batch() -> impl Strategy<Value = Vec<(Option<f64>, Option<&'static str>)>> {
    prop::collection::vec(
        (
            prop::option::of(prop_oneof![-1e3f64..1e3, Just(-0.0), Just(1e300)]),
            prop::option::of(prop::sample::select(vec!["north", "south", "west"])),
        ),
        1..20,
    )
}

fn cell_json(row: &(Option<f64>, Option<&str>)) -> (Value, Value) {
    (
        row.0.map_or(Value::Null, |n| json!(n)),
        row.1.map_or(Value::Null, Value::from),
    )
}

/// The eight ways a client can send `rows`.
fn layouts(rows: &[(Option<f64>, Option<&'static str>)]) -> Vec<(bool, String)> {
    let cells: Vec<(Value, Value)> = rows.iter().map(cell_json).collect();
    let positional: Vec<Value> = cells.iter().map(|(a, b)| json!([a, b])).collect();
    let swapped: Vec<Value> = cells.iter().map(|(a, b)| json!([b, a])).collect();
    let records: Vec<Value> = cells
        .iter()
        .map(|(a, b)| json!({"region": b, "income": a}))
        .collect();
    let incomes: Vec<&Value> = cells.iter().map(|(a, _)| a).collect();
    let regions: Vec<&Value> = cells.iter().map(|(_, b)| b).collect();
    let mut csv = String::from("region,income\n");
    for (income, region) in rows {
        let income = income.map(|n| n.to_string()).unwrap_or_default();
        csv.push_str(&format!("{},{income}\n", region.unwrap_or("")));
    }
    vec![
        (
            false,
            json!({"dataframe_split": {"columns": ["region", "income"], "data": swapped}})
                .to_string(),
        ),
        (
            false,
            json!({"dataframe_split": {"data": positional}}).to_string(),
        ),
        (false, json!({"dataframe_records": records}).to_string()),
        (false, json!({"instances": records}).to_string()),
        (
            false,
            json!({"instances": positional, "params": {"k": 1}}).to_string(),
        ),
        (
            false,
            json!({"inputs": {"income": incomes, "region": regions}}).to_string(),
        ),
        (false, json!({"inputs": positional}).to_string()),
        (true, csv),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..200), csv in any::<bool>()) {
        check(mlflow(&body, csv))?;
    }

    #[test]
    fn request_shaped_json_never_panics(value in json_value()) {
        let body = value.to_string();
        check(mlflow(body.as_bytes(), false))?;
        let wrapped = json!({"inputs": value}).to_string();
        check(mlflow(wrapped.as_bytes(), false))?;
    }

    #[test]
    fn csv_shaped_text_never_panics(
        lines in prop::collection::vec(
            prop::collection::vec(
                prop::sample::select(vec!["income", "region", "north", "1.5", "", "?", "\"", "\"a,b\"", " ", "x", "1e999", "-"]),
                0..4,
            ),
            0..8,
        ),
    ) {
        let text: Vec<String> = lines.iter().map(|cells| cells.join(",")).collect();
        check(mlflow(text.join("\n").as_bytes(), true))?;
    }

    #[test]
    fn open_inference_tensors_never_panic(inputs in prop::collection::vec(tensor(), 0..3)) {
        check(parse_v2(&inputs, &signature(), &Policies::default(), MAX_ROWS))?;
    }

    #[test]
    fn every_layout_gives_the_batch_back(rows in batch()) {
        for (csv, body) in layouts(&rows) {
            let parsed = mlflow(body.as_bytes(), csv)
                .map_err(|error| TestCaseError::fail(format!("{body}: {}", error.message)))?;
            prop_assert_eq!(parsed.batch.rows, rows.len(), "{}", body);
            let (Column::Numeric(income), Column::Categorical(region)) =
                (&parsed.batch.columns[0], &parsed.batch.columns[1])
            else {
                return Err(TestCaseError::fail(format!("{body}: columns of the wrong kind")));
            };
            for (i, (want_income, want_region)) in rows.iter().enumerate() {
                match want_income {
                    Some(n) => prop_assert_eq!(income[i], *n, "{} row {}", body, i),
                    None => prop_assert!(income[i].is_nan(), "{} row {}", body, i),
                }
                prop_assert_eq!(region[i].as_deref(), *want_region, "{} row {}", body, i);
                let flagged = parsed.flags.rows.get(i).cloned().flatten().unwrap_or_default();
                let out_of_range = want_income.is_some_and(|n| !(0.0..=100.0).contains(&n));
                prop_assert_eq!(flagged.contains("out_of_range:income"), out_of_range, "{}", body);
                prop_assert_eq!(flagged.contains("null:income"), want_income.is_none(), "{}", body);
                prop_assert_eq!(flagged.contains("unknown_category:region"), *want_region == Some("west"), "{}", body);
            }
        }
    }
}

#[test]
fn overflowing_tensor_shapes_are_refused() {
    for shape in [
        json!([i64::MAX, 2]),
        json!([1i64 << 62, 2]),
        json!([-1, 2]),
        json!([(1i64 << 63) / 2 + 1, 2]),
        json!([i64::MIN, 2]),
    ] {
        let inputs = vec![json!({"name": "input", "shape": shape, "datatype": "FP64", "data": []})];
        let error = parse_v2(&inputs, &signature(), &Policies::default(), MAX_ROWS).unwrap_err();
        assert!(error.message.contains("shape"), "{shape}: {error:?}");
    }
}
