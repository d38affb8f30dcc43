//! Fuzz targets for the search-filter grammar, run by `cargo test` with
//! proptest's case count (`PROPTEST_CASES`, 256 by default).
//!
//! Properties: a filter generated as a tree, rendered and parsed gives the
//! tree back; no text makes the parser panic, every refusal is an
//! `INVALID_PARAMETER_VALUE` whose position lies inside the text; whatever
//! parses renders to a filter that parses to the same tree.

use proptest::prelude::*;

use super::*;
use keel_core::ErrorCode;

fn kind() -> impl Strategy<Value = EntityKind> {
    prop::sample::select(vec![
        EntityKind::Metric,
        EntityKind::Param,
        EntityKind::Tag,
        EntityKind::Attribute,
        EntityKind::Dataset,
    ])
}

/// Text that may hold quotes, backslashes, keywords, control characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop::sample::select(vec![
                "'", "\"", "`", "\\", " ", "AND", "or", "(", ")", "%", "_", "=", "x", "é", "\u{0}",
                "\n", "🦀", "''", "\\'",
            ]),
            0..8,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

/// A key the grammar can quote: non-empty, not holding both quote characters.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_./:-]{0,12}",
        text().prop_filter("quotable", |k| {
            let both_quotes = k.contains('`') && k.contains('"');
            !k.is_empty() && !both_quotes
        }),
    ]
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1e6f64..1e6,
        any::<f64>().prop_filter("finite", |n| n.is_finite()),
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        number().prop_map(Value::Number),
        text().prop_map(Value::String)
    ]
}

fn comparison() -> impl Strategy<Value = Comparison> {
    use Comparator::*;
    let shaped = prop_oneof![
        (prop::sample::select(vec![Eq, Ne, Gt, Ge, Lt, Le]), scalar()),
        (
            prop::sample::select(vec![Like, ILike, NotLike, NotILike]),
            text().prop_map(Value::String)
        ),
        (
            prop::sample::select(vec![In, NotIn]),
            prop::collection::vec(scalar(), 1..4).prop_map(Value::List)
        ),
        (
            prop::sample::select(vec![IsNull, IsNotNull]),
            Just(Value::None)
        ),
    ];
    (kind(), key(), shaped).prop_map(|(kind, key, (op, value))| Comparison {
        ident: Identifier { kind, key },
        op,
        value,
    })
}

/// Trees in the parser's normal form (And/Or flattened, at least two children).
fn expr() -> impl Strategy<Value = Expr> {
    comparison()
        .prop_map(Expr::Cmp)
        .prop_recursive(3, 24, 4, |inner| {
            (any::<bool>(), prop::collection::vec(inner, 2..4))
                .prop_map(|(or, items)| join(items, or))
        })
}

/// The parser's contract on any input.
fn check(input: &str) -> std::result::Result<(), TestCaseError> {
    match parse_filter_located(input) {
        Ok(None) => prop_assert!(input.trim().is_empty(), "{input:?} parsed to no filter"),
        Ok(Some(expr)) => {
            let rendered = expr.to_string();
            prop_assert_eq!(
                parse_filter(&rendered),
                Ok(Some(expr.clone())),
                "{:?} rendered as {:?}",
                input,
                rendered
            );
        }
        Err((error, position)) => {
            prop_assert_eq!(error.code, ErrorCode::InvalidParameterValue);
            prop_assert!(
                error.message.starts_with("Invalid filter"),
                "{}",
                error.message
            );
            if let Some(position) = position {
                prop_assert!(
                    position <= input.chars().count(),
                    "position {position} beyond {input:?}"
                );
                prop_assert!(
                    error.message.contains(&format!("at position {position}")),
                    "{}",
                    error.message
                );
            }
        }
    }
    if let Err(error) = parse_order_by(input) {
        prop_assert_eq!(error.code, ErrorCode::InvalidParameterValue);
    }
    Ok(())
}

proptest! {
    #[test]
    fn generated_trees_round_trip(expr in expr()) {
        let rendered = expr.to_string();
        use keel_core::validation::{MAX_FILTER_BYTES, MAX_FILTER_COMPARISONS};
        if expr.comparisons().len() > MAX_FILTER_COMPARISONS || rendered.len() > MAX_FILTER_BYTES {
            prop_assert!(parse_filter(&rendered).is_err());
        } else {
            prop_assert_eq!(parse_filter(&rendered), Ok(Some(expr)), "{}", rendered);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(input in text()) {
        check(&input)?;
    }

    #[test]
    fn token_soup_never_panics(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "metrics.", "params.", "tags.", "attributes.", "datasets.", "run.", "name", "`a b`",
                "\"k\"", " ", "=", "!=", "<>", ">=", "<", "LIKE", "ilike", "NOT", "IN", "IS", "NULL",
                "AND", "OR", "(", ")", ",", "'x'", "'it''s'", "\"q\"", "1", "-2.5e3", ".5", "1e999",
                "+", "é", "\\", "'", "`",
            ]),
            0..30,
        ),
    ) {
        check(&parts.concat())?;
    }

    /// A valid filter with a few characters inserted, deleted or replaced.
    #[test]
    fn mutated_filters_never_panic(
        expr in expr(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, any::<char>()), 1..4),
    ) {
        let mut chars: Vec<char> = expr.to_string().chars().collect();
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
        check(&chars.into_iter().collect::<String>())?;
    }
}
