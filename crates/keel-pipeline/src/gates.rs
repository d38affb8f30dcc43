//! Gates: `accuracy >= 0.9`, `roc_auc >= production.roc_auc - 0.01`,
//! `p99_ms <= 25`. An expression compares two arithmetic sides (`+ - * /`,
//! parentheses, numbers, metric names); a name `production.X` is metric X of
//! the model version holding the production alias. Metrics come from the
//! stages' metrics JSON files, flattened to dotted keys (`latency.p99_ms`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::{PipelineError, Result};

/// Prefix naming the production model's metrics.
pub const PRODUCTION: &str = "production.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Cmp {
    fn as_str(self) -> &'static str {
        match self {
            Cmp::Ge => ">=",
            Cmp::Gt => ">",
            Cmp::Le => "<=",
            Cmp::Lt => "<",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }

    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Cmp::Ge => left >= right,
            Cmp::Gt => left > right,
            Cmp::Le => left <= right,
            Cmp::Lt => left < right,
            Cmp::Eq => left == right,
            Cmp::Ne => left != right,
        }
    }
}

/// An arithmetic side of a gate.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Number(f64),
    Metric(String),
    Neg(Box<Term>),
    Binary(Box<Term>, char, Box<Term>),
}

/// A parsed gate: `left cmp right`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub left: Term,
    pub cmp: Cmp,
    pub right: Term,
}

/// Most tokens in one gate: a side is a tree as deep as its longest chain,
/// and evaluating or dropping it recurses once per level.
pub const MAX_TOKENS: usize = 512;
/// Deepest nesting of parentheses and unary minus.
pub const MAX_NESTING: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Name(String),
    Op(char),
    Cmp(Cmp),
    Open,
    Close,
}

fn tokenize(text: &str) -> std::result::Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || ((chars[i] == 'e' || chars[i] == 'E') && i > start)
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            let number = literal
                .parse()
                .map_err(|_| format!("bad number `{literal}`"))?;
            tokens.push(Token::Number(number));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            tokens.push(Token::Name(chars[start..i].iter().collect()));
        } else if "+-*/".contains(c) {
            tokens.push(Token::Op(c));
            i += 1;
        } else if c == '(' {
            tokens.push(Token::Open);
            i += 1;
        } else if c == ')' {
            tokens.push(Token::Close);
            i += 1;
        } else if "<>=!".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let (cmp, width) = match two.as_str() {
                ">=" => (Cmp::Ge, 2),
                "<=" => (Cmp::Le, 2),
                "==" => (Cmp::Eq, 2),
                "!=" => (Cmp::Ne, 2),
                _ if c == '>' => (Cmp::Gt, 1),
                _ if c == '<' => (Cmp::Lt, 1),
                _ => return Err(format!("unexpected `{c}` (comparisons: >= > <= < == !=)")),
            };
            tokens.push(Token::Cmp(cmp));
            i += width;
        } else {
            return Err(format!("unexpected `{c}`"));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Parentheses and unary minus open around the cursor.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn sum(&mut self) -> std::result::Result<Term, String> {
        let mut left = self.product()?;
        while let Some(Token::Op(op @ ('+' | '-'))) = self.peek().cloned() {
            self.at += 1;
            left = Term::Binary(Box::new(left), op, Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> std::result::Result<Term, String> {
        let mut left = self.factor()?;
        while let Some(Token::Op(op @ ('*' | '/'))) = self.peek().cloned() {
            self.at += 1;
            left = Term::Binary(Box::new(left), op, Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> std::result::Result<Term, String> {
        let token = self.peek().cloned();
        self.at += 1;
        let nests = matches!(token, Some(Token::Op('-') | Token::Open));
        if nests {
            if self.depth >= MAX_NESTING {
                return Err(format!(
                    "parentheses and minus signs nest deeper than {MAX_NESTING} levels"
                ));
            }
            self.depth += 1;
        }
        let term = self.factor_of(token);
        if nests {
            self.depth -= 1;
        }
        term
    }

    fn factor_of(&mut self, token: Option<Token>) -> std::result::Result<Term, String> {
        match token {
            Some(Token::Number(number)) => Ok(Term::Number(number)),
            Some(Token::Name(name)) => Ok(Term::Metric(name)),
            Some(Token::Op('-')) => Ok(Term::Neg(Box::new(self.factor()?))),
            Some(Token::Open) => {
                let inner = self.sum()?;
                match self.peek() {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    _ => Err("missing `)`".into()),
                }
            }
            Some(other) => Err(format!("unexpected {}", describe(&other))),
            None => Err("incomplete expression".into()),
        }
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Number(number) => format!("number {number}"),
        Token::Name(name) => format!("name `{name}`"),
        Token::Op(op) => format!("`{op}`"),
        Token::Cmp(cmp) => format!("`{}`", cmp.as_str()),
        Token::Open => "`(`".into(),
        Token::Close => "`)`".into(),
    }
}

impl Expr {
    /// Parses `left cmp right`.
    pub fn parse(text: &str) -> std::result::Result<Expr, String> {
        let tokens = tokenize(text)?;
        if tokens.len() > MAX_TOKENS {
            return Err(format!(
                "the expression has {} tokens; at most {MAX_TOKENS} are accepted",
                tokens.len()
            ));
        }
        let mut parser = Parser {
            tokens,
            at: 0,
            depth: 0,
        };
        let left = parser.sum()?;
        let cmp = match parser.peek() {
            Some(Token::Cmp(cmp)) => *cmp,
            Some(other) => return Err(format!("expected a comparison, found {}", describe(other))),
            None => return Err("expected a comparison (>= > <= < == !=)".into()),
        };
        parser.at += 1;
        let right = parser.sum()?;
        if let Some(extra) = parser.peek() {
            return Err(format!(
                "unexpected {} after the expression",
                describe(extra)
            ));
        }
        Ok(Expr { left, cmp, right })
    }
}

impl Term {
    fn names<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Term::Number(_) => {}
            Term::Metric(name) => out.push(name),
            Term::Neg(inner) => inner.names(out),
            Term::Binary(left, _, right) => {
                left.names(out);
                right.names(out);
            }
        }
    }

    fn eval(
        &self,
        lookup: &dyn Fn(&str) -> std::result::Result<f64, String>,
    ) -> std::result::Result<f64, String> {
        Ok(match self {
            Term::Number(number) => *number,
            Term::Metric(name) => lookup(name)?,
            Term::Neg(inner) => -inner.eval(lookup)?,
            Term::Binary(left, op, right) => {
                let (a, b) = (left.eval(lookup)?, right.eval(lookup)?);
                match op {
                    '+' => a + b,
                    '-' => a - b,
                    '*' => a * b,
                    _ => a / b,
                }
            }
        })
    }
}

/// One gate's outcome, as printed and stored (the shape lives in keel-core).
pub use keel_core::promotion::GateResult;

/// Where the production model's metrics come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Production {
    /// `name@alias vN`, for messages.
    pub label: String,
    pub metrics: BTreeMap<String, f64>,
}

/// Evaluates every gate. A comparison with `production.X` when no version
/// holds the alias passes with a note (the first model has nothing to beat).
/// `context` is added to the note of a missing metric (which files were
/// read, which could not be).
pub fn evaluate(
    gates: &[String],
    metrics: &BTreeMap<String, f64>,
    production: Option<&Production>,
    context: &str,
) -> Vec<GateResult> {
    gates
        .iter()
        .map(|text| evaluate_one(text, metrics, production, context))
        .collect()
}

fn evaluate_one(
    text: &str,
    metrics: &BTreeMap<String, f64>,
    production: Option<&Production>,
    context: &str,
) -> GateResult {
    let mut result = GateResult {
        expression: text.to_string(),
        metric: String::new(),
        value: None,
        threshold: None,
        production: None,
        passed: false,
        note: None,
    };
    let expr = match Expr::parse(text) {
        Ok(expr) => expr,
        Err(message) => {
            result.note = Some(message);
            return result;
        }
    };
    result.metric = match &expr.left {
        Term::Metric(name) => name.clone(),
        _ => text
            .split(expr.cmp.as_str())
            .next()
            .unwrap_or(text)
            .trim()
            .to_string(),
    };
    let mut names = Vec::new();
    expr.left.names(&mut names);
    expr.right.names(&mut names);
    let production_names: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix(PRODUCTION))
        .collect();
    if let (Some(production), Some(first)) = (production, production_names.first()) {
        result.production = production.metrics.get(*first).copied();
    }
    let lookup = |name: &str| -> std::result::Result<f64, String> {
        match name.strip_prefix(PRODUCTION) {
            Some(key) => match production {
                Some(production) => production.metrics.get(key).copied().ok_or_else(|| {
                    format!(
                        "the production model ({}) has no metric `{key}`",
                        production.label
                    )
                }),
                None => Err(String::new()),
            },
            None => metrics
                .get(name)
                .copied()
                .ok_or_else(|| format!("metric `{name}` is in no stage's metrics file{context}")),
        }
    };
    result.value = expr.left.eval(&lookup).ok();
    result.threshold = expr.right.eval(&lookup).ok();
    match (expr.left.eval(&lookup), expr.right.eval(&lookup)) {
        (Ok(left), Ok(right)) => {
            result.passed = expr.cmp.holds(left, right);
            if left.is_nan() || right.is_nan() {
                result.note = Some("NaN compared".into());
            }
        }
        (Err(message), _) | (_, Err(message)) if message.is_empty() => {
            // production.X without a production model: nothing to compare with.
            result.passed = true;
            result.note = Some("no production model yet: comparison skipped".into());
        }
        (Err(message), _) | (_, Err(message)) => result.note = Some(message),
    }
    result
}

/// Whether every gate passed.
pub fn all_passed(results: &[GateResult]) -> bool {
    results.iter().all(|result| result.passed)
}

/// The JSON recorded on the run and the model version (`{"passed", "gates", "metrics"}`),
/// the shape `keel_core::promotion::gate_status` reads.
pub fn results_json(results: &[GateResult], metrics: &BTreeMap<String, f64>) -> Value {
    let number = |value: Option<f64>| {
        value
            .filter(|v| v.is_finite())
            .map_or(Value::Null, |v| json!(v))
    };
    json!({
        "passed": all_passed(results),
        "gates": results.iter().map(|result| json!({
            "expression": result.expression,
            "metric": result.metric,
            "value": number(result.value),
            "threshold": number(result.threshold),
            "production": number(result.production),
            "passed": result.passed,
            "note": result.note,
        })).collect::<Vec<_>>(),
        "metrics": metrics.iter().filter(|(_, v)| v.is_finite()).map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
}

/// Reads gate results back from their JSON.
pub fn results_from_json(value: &Value) -> Vec<GateResult> {
    keel_core::promotion::GateResults::from_value(value)
        .map(|results| results.gates)
        .unwrap_or_default()
}

/// Renders results as a text table (metric, value, threshold, production, result).
pub fn table(results: &[GateResult]) -> String {
    let cell = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut rows = vec![[
        "gate".to_string(),
        "metric".to_string(),
        "value".to_string(),
        "threshold".to_string(),
        "production".to_string(),
        "result".to_string(),
    ]];
    for result in results {
        rows.push([
            result.expression.clone(),
            result.metric.clone(),
            cell(result.value),
            cell(result.threshold),
            cell(result.production),
            if result.passed {
                "pass".into()
            } else {
                "FAIL".into()
            },
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for result in results {
        if let Some(note) = &result.note {
            out.push_str(&format!("  {}: {note}\n", result.expression));
        }
    }
    out
}

/// Reads metrics JSON files and flattens their numbers to dotted keys
/// (`{"latency": {"p99_ms": 21}}` gives `latency.p99_ms`). A missing or
/// malformed file is an error naming it.
pub fn read_metrics(root: &Path, files: &[String]) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for file in files {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|error| PipelineError::Metrics(format!("metrics file {file}: {error}")))?;
        let value: Value = serde_json::from_str(&text).map_err(|error| {
            PipelineError::Metrics(format!("metrics file {file} is not valid JSON: {error}"))
        })?;
        if !value.is_object() {
            return Err(PipelineError::Metrics(format!(
                "metrics file {file}: expected a JSON object"
            )));
        }
        flatten_json("", &value, &mut out);
    }
    Ok(out)
}

fn flatten_json(prefix: &str, value: &Value, out: &mut BTreeMap<String, f64>) {
    match value {
        Value::Number(number) => {
            if let Some(number) = number.as_f64() {
                out.insert(prefix.to_string(), number);
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                let dotted = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_json(&dotted, value, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn parses_and_rejects() {
        let expr = Expr::parse("roc_auc >= production.roc_auc - 0.01").unwrap();
        assert_eq!(expr.cmp, Cmp::Ge);
        assert_eq!(
            expr.right,
            Term::Binary(
                Box::new(Term::Metric("production.roc_auc".into())),
                '-',
                Box::new(Term::Number(0.01))
            )
        );
        assert_eq!(
            Expr::parse("latency.p99_ms<=25").unwrap().left,
            Term::Metric("latency.p99_ms".into())
        );
        assert_eq!(Expr::parse("a >= 1e-3").unwrap().right, Term::Number(0.001));
        assert_eq!(
            Expr::parse("(a + b) / 2 > -1").unwrap().right,
            Term::Neg(Box::new(Term::Number(1.0)))
        );
        for bad in [
            "accuracy",
            "accuracy >= ",
            "a >>= 1",
            "a >= 1 2",
            "a >= (1",
            "a ~ 1",
            ">= 1",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn evaluates_against_metrics_and_production() {
        let run = metrics(&[
            ("accuracy", 0.91),
            ("roc_auc", 0.80),
            ("latency.p99_ms", 21.0),
        ]);
        let production = Production {
            label: "risk@production v1".into(),
            metrics: metrics(&[("roc_auc", 0.85)]),
        };
        let gates: Vec<String> = [
            "accuracy >= 0.9",
            "roc_auc >= production.roc_auc - 0.01",
            "latency.p99_ms <= 25",
            "f1 > 0.5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let results = evaluate(&gates, &run, Some(&production), "");
        assert!(results[0].passed);
        assert_eq!(results[0].value, Some(0.91));
        assert_eq!(results[0].threshold, Some(0.9));
        assert!(!results[1].passed);
        assert_eq!(results[1].production, Some(0.85));
        assert!((results[1].threshold.unwrap() - 0.84).abs() < 1e-12);
        assert!(results[2].passed);
        assert!(!results[3].passed);
        assert!(results[3].note.as_deref().unwrap().contains("`f1`"));
        assert!(!all_passed(&results));

        // No production model: the comparison is skipped, not failed.
        let results = evaluate(&gates[1..2], &run, None, "");
        assert!(results[0].passed);
        assert!(
            results[0]
                .note
                .as_deref()
                .unwrap()
                .contains("no production model")
        );
        // Production model without the metric: fails, naming it.
        let bare = Production {
            label: "risk@production v2".into(),
            metrics: BTreeMap::new(),
        };
        let results = evaluate(&gates[1..2], &run, Some(&bare), "");
        assert!(!results[0].passed);
        assert!(results[0].note.as_deref().unwrap().contains("v2"));

        let json = results_json(&evaluate(&gates[..1], &run, None, ""), &run);
        assert_eq!(json["passed"], true);
        assert_eq!(results_from_json(&json)[0].value, Some(0.91));
        assert!(table(&results).contains("FAIL"));
    }

    #[test]
    fn metrics_files_flatten_and_fail_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("m.json"),
            r#"{"accuracy": 0.5, "latency": {"p99_ms": 20}, "classes": ["a"], "task": "x"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.json"), "{not json").unwrap();
        let read = read_metrics(dir.path(), &["m.json".into()]).unwrap();
        assert_eq!(
            read,
            metrics(&[("accuracy", 0.5), ("latency.p99_ms", 20.0)])
        );
        let error = read_metrics(dir.path(), &["bad.json".into()])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("bad.json") && error.contains("not valid JSON"),
            "{error}"
        );
        let error = read_metrics(dir.path(), &["nope.json".into()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("nope.json"), "{error}");
    }
}
