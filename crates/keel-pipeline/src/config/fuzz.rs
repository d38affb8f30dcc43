//! Fuzz targets for keel.yaml (and, through it, keel-yaml and the gate
//! grammar), run by `cargo test` with proptest's case count
//! (`PROPTEST_CASES`, 256 by default; CI runs the default).
//!
//! Properties: no input makes the parser panic; every error is a
//! `YamlError` whose line and column lie inside the text; a pipeline
//! generated from a model, rendered to YAML and parsed back gives the model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::gates;

const PARAMS: &str = "train:\n  seed: 7\n  lr: 0.05\nname: risk\n";

fn parse_text(text: &str) -> Result<Pipeline> {
    Pipeline::parse(text, Path::new("keel.yaml"), Path::new("/p"), |_| {
        Ok(Some((PathBuf::from("params.yaml"), PARAMS.to_string())))
    })
}

/// The lines of `text` as YAML counts them (`\r\n`, `\r` and `\n` end a line).
fn yaml_lines(text: &str) -> Vec<String> {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .split('\n')
        .map(str::to_string)
        .collect()
}

/// Parsing never panics, and an error points inside the text.
fn check_positioned(text: &str) -> std::result::Result<(), TestCaseError> {
    match parse_text(text) {
        Ok(_) => Ok(()),
        Err(PipelineError::Yaml(error)) => {
            let lines = yaml_lines(text);
            prop_assert!(
                error.pos.line >= 1 && error.pos.line <= lines.len(),
                "line {} outside 1..={} for {text:?}: {error}",
                error.pos.line,
                lines.len()
            );
            let width = lines[error.pos.line - 1].chars().count();
            prop_assert!(
                error.pos.column >= 1 && error.pos.column <= width + 1,
                "column {} outside 1..={} for {text:?}: {error}",
                error.pos.column,
                width + 1
            );
            prop_assert!(
                error.to_string().starts_with("keel.yaml:"),
                "{error} does not name the file"
            );
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "{text:?}: error without a position: {other}"
        ))),
    }
}

/// Pieces keel.yaml is made of, so random documents reach deep into the reader.
fn fragment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "stages:",
        "\n",
        "  ",
        "    ",
        "train:",
        "cmd: ",
        "deps:",
        "outs:",
        "params:",
        "metrics:",
        "validate:",
        "feature_check:",
        "data: ",
        "schema: ",
        "reference: ",
        "thresholds:",
        "gates:",
        "register:",
        "model: ",
        "path: ",
        "alias: ",
        "git_tags: ",
        "on_branch: ",
        "monitor:",
        "window: 1h",
        "drift:",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ",",
        ": ",
        "x",
        "data/a.csv",
        "../up",
        "/abs",
        ".keel/x",
        "${train.seed}",
        "${nope}",
        "$$",
        "${",
        "accuracy >= 0.8",
        "((",
        "))",
        "- -",
        "&a ",
        "*a",
        "!!str ",
        "'",
        "\"",
        "#",
        "|",
        ">",
        "\t",
        "\r",
        "\u{feff}",
        "é",
        "1e309",
        "true",
        "null",
        "~",
        "---",
        "...",
        "%YAML 1.2",
    ])
}

/// A generated pipeline: stages with their fields, gates, a register section.
#[derive(Debug, Clone)]
struct Model {
    stages: Vec<(String, String, Vec<String>, Vec<String>)>,
    gates: Vec<String>,
    register: Option<(String, String)>,
}

fn segment() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,5}(\\.[a-z]{1,3})?"
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..4).prop_map(|parts| parts.join("/"))
}

fn command() -> impl Strategy<Value = String> {
    // Anything but `$` (interpolation has its own test) and what YAML
    // double-quoted strings cannot carry unescaped (quote() escapes it).
    "[^$]{1,40}"
}

fn model() -> impl Strategy<Value = Model> {
    let stage = (
        "[a-zA-Z0-9_-]{1,10}",
        command(),
        prop::collection::vec(path(), 0..3),
        prop::collection::vec(path(), 0..3),
    );
    (
        prop::collection::vec(stage, 1..5),
        prop::collection::vec(
            ("[a-z][a-z_]{0,8}", 0.0f64..1.0)
                .prop_map(|(metric, threshold)| format!("{metric} >= {threshold}")),
            0..3,
        ),
        prop::option::of(("[a-z][a-z0-9-]{0,10}", path())),
    )
        .prop_map(|(mut stages, gates, register)| {
            let mut seen = std::collections::HashSet::new();
            stages.retain(|(name, ..)| seen.insert(name.clone()));
            Model {
                stages,
                gates,
                register,
            }
        })
}

fn render(model: &Model) -> String {
    let list = |items: &[String]| {
        let quoted: Vec<String> = items.iter().map(|item| yaml::quote(item)).collect();
        format!("[{}]", quoted.join(", "))
    };
    let mut text = String::from("stages:\n");
    for (name, cmd, deps, outs) in &model.stages {
        text.push_str(&format!(
            "  {}:\n    cmd: {}\n",
            yaml::quote(name),
            yaml::quote(cmd)
        ));
        if !deps.is_empty() {
            text.push_str(&format!("    deps: {}\n", list(deps)));
        }
        if !outs.is_empty() {
            text.push_str("    outs:\n");
            for out in outs {
                text.push_str(&format!("      - {}\n", yaml::quote(out)));
            }
        }
    }
    if !model.gates.is_empty() {
        text.push_str("gates:\n");
        for gate in &model.gates {
            text.push_str(&format!("  - {}\n", yaml::quote(gate)));
        }
    }
    if let Some((name, path)) = &model.register {
        text.push_str(&format!(
            "register: {{model: {}, path: {}}}\n",
            yaml::quote(name),
            yaml::quote(path)
        ));
    }
    text
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_positioned(&text)?;
    }

    #[test]
    fn keel_yaml_soup_never_panics(parts in prop::collection::vec(fragment(), 0..40)) {
        check_positioned(&parts.concat())?;
    }

    #[test]
    fn generated_pipelines_round_trip(model in model()) {
        let text = render(&model);
        let pipeline = match parse_text(&text) {
            Ok(pipeline) => pipeline,
            Err(error) => return Err(TestCaseError::fail(format!("{text}\n{error}"))),
        };
        prop_assert_eq!(pipeline.stages.len(), model.stages.len());
        for (stage, (name, cmd, deps, outs)) in pipeline.stages.iter().zip(&model.stages) {
            prop_assert_eq!(&stage.name, name);
            prop_assert_eq!(stage.command_text(), cmd.clone());
            let got: Vec<&str> = stage.deps.iter().map(|d| d.path.as_str()).collect();
            prop_assert_eq!(got, deps.iter().map(String::as_str).collect::<Vec<_>>());
            let got: Vec<&str> = stage.outs.iter().map(|d| d.path.as_str()).collect();
            prop_assert_eq!(got, outs.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let gates: Vec<&str> = pipeline.gates.iter().map(|g| g.expression.as_str()).collect();
        prop_assert_eq!(gates, model.gates.iter().map(String::as_str).collect::<Vec<_>>());
        let register = pipeline.register.map(|r| (r.model, r.path.path));
        prop_assert_eq!(register, model.register.clone());
    }

    /// One character inserted, deleted or replaced in a valid document: no
    /// panic, and any error still points inside the text.
    #[test]
    fn mutated_pipelines_never_panic(
        model in model(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, any::<char>()), 1..4),
    ) {
        let mut chars: Vec<char> = render(&model).chars().collect();
        for (at, kind, c) in edits {
            let i = at.index(chars.len() + 1);
            match kind {
                0 => chars.insert(i, c),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                _ if i < chars.len() => chars[i] = c,
                _ => chars.push(c),
            }
        }
        check_positioned(&chars.into_iter().collect::<String>())?;
    }

    /// Text survives keel-yaml's quoting (keel.lock and params are written with it).
    #[test]
    fn quoted_strings_round_trip(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        ],
    ) {
        let file = Path::new("q.yaml");
        let doc = format!("k: {}\n", yaml::quote(&text));
        let node = yaml::parse(&doc, file).map_err(|e| TestCaseError::fail(format!("{doc:?}: {e}")))?;
        let map = node.as_map(file).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(yaml::get(map, "k").map(|n| n.value.clone()), Some(Value::Str(text)));
    }

    /// The gate grammar: any text parses or fails with a message, never panics.
    #[test]
    fn gate_expressions_never_panic(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(
                prop::sample::select(vec!["(", ")", "-", "+", "*", "/", "acc", "production.acc", "1", "0.5e-3", ">=", "<", "==", " ", "."]),
                0..60,
            ).prop_map(|parts| parts.concat()),
        ],
    ) {
        if let Err(message) = gates::Expr::parse(&text) {
            prop_assert!(!message.is_empty());
        }
    }
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    let deep_list = format!("stages:\n{}x\n", "- ".repeat(100_000));
    check_positioned(&deep_list).unwrap();
    let deep_gate = format!(
        "stages:\n  t:\n    cmd: x\ngates:\n  - {}\n",
        yaml::quote(&format!("{}1 >= 0", "(".repeat(50_000)))
    );
    let (line, message) = match parse_text(&deep_gate) {
        Err(PipelineError::Yaml(error)) => (error.pos.line, error.message),
        other => panic!("expected a positioned error, got {other:?}"),
    };
    assert_eq!(line, 5);
    assert!(
        message.contains("tokens") || message.contains("nest"),
        "{message}"
    );
    let minus = format!("{}1 >= 0", "-".repeat(100));
    assert!(
        gates::Expr::parse(&minus)
            .unwrap_err()
            .contains("nest deeper")
    );
    let long = format!("{}1 >= 0", "1+".repeat(1_000));
    assert!(gates::Expr::parse(&long).unwrap_err().contains("tokens"));
    let params: BTreeMap<String, String> = BTreeMap::new();
    assert!(interpolate("${", &params).is_err());
}
