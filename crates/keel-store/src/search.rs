//! Translation of MLflow's search grammar ([`crate::filter`]) into SQL for one
//! entity kind (runs, experiments, logged models). Each entity describes its
//! attribute columns and side tables in a [`SearchSpec`]; the translation checks
//! every comparison against that description, so an unknown attribute or a
//! comparator that makes no sense for the column is a clear user error.

use keel_core::Error;

use crate::filter::{Comparator, Comparison, EntityKind, Expr, Identifier, OrderBy, Value};
use crate::sql::{Dialect, Sql};

/// The type of an attribute column, which decides the comparators it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Text,
    Number,
}

/// A side table of key/value rows (tags, params, latest metrics) joined by the entity id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyValueTable {
    pub table: &'static str,
    /// How a side-table row (alias `kv`) joins its entity, e.g. `kv.run_uuid = r.run_uuid`.
    pub join: &'static str,
    pub value_type: ColumnType,
    /// Extra condition, e.g. `is_nan = 0` for metrics.
    pub extra: &'static str,
}

/// How one entity kind is searched.
pub(crate) struct SearchSpec {
    /// Human name for messages ("run", "experiment").
    pub entity: &'static str,
    /// The entity's id column, qualified by its alias (`r.run_uuid`).
    pub id_column: &'static str,
    /// Maps an attribute name to its qualified column and type.
    pub attribute: fn(&str) -> Option<(&'static str, ColumnType)>,
    pub tags: Option<KeyValueTable>,
    pub params: Option<KeyValueTable>,
    pub metrics: Option<KeyValueTable>,
    /// Whether `datasets.name/digest/context` filters apply (runs only).
    pub datasets: bool,
    /// Whether `tags.k != 'v'` also matches entities without tag `k`. The registry
    /// needs this: every MLflow client filters models with
    /// ``tag.`mlflow.prompt.is_prompt` != 'true'``, which must keep untagged models.
    pub ne_includes_missing: bool,
}

impl SearchSpec {
    fn side_table(&self, kind: EntityKind) -> Option<KeyValueTable> {
        match kind {
            EntityKind::Tag => self.tags,
            EntityKind::Param => self.params,
            EntityKind::Metric => self.metrics,
            _ => None,
        }
    }
}

fn kind_name(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Metric => "metric",
        EntityKind::Param => "parameter",
        EntityKind::Tag => "tag",
        EntityKind::Attribute => "attribute",
        EntityKind::Dataset => "dataset",
    }
}

/// Appends the SQL condition for `expr` to `sql`.
pub(crate) fn push_filter(
    spec: &SearchSpec,
    dialect: Dialect,
    expr: &Expr,
    sql: &mut Sql,
) -> Result<(), Error> {
    match expr {
        Expr::And(parts) | Expr::Or(parts) => {
            let joiner = if matches!(expr, Expr::And(_)) {
                " AND "
            } else {
                " OR "
            };
            sql.push("(");
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    sql.push(joiner);
                }
                push_filter(spec, dialect, part, sql)?;
            }
            sql.push(")");
            Ok(())
        }
        Expr::Cmp(comparison) => push_comparison(spec, dialect, comparison, sql),
    }
}

fn push_comparison(
    spec: &SearchSpec,
    dialect: Dialect,
    cmp: &Comparison,
    sql: &mut Sql,
) -> Result<(), Error> {
    let ident = &cmp.ident;
    match ident.kind {
        EntityKind::Attribute => {
            let (column, column_type) = (spec.attribute)(&ident.key).ok_or_else(|| {
                Error::invalid_parameter(format!(
                    "Invalid attribute key '{}' in a {} search filter",
                    ident.key, spec.entity
                ))
            })?;
            push_value_condition(dialect, column, column_type, ident, cmp, sql)
        }
        EntityKind::Dataset => {
            if !spec.datasets {
                return Err(unsupported(spec, ident));
            }
            let column = match ident.key.as_str() {
                "name" => "d.name",
                "digest" => "d.digest",
                "context" => "it.value",
                other => {
                    return Err(Error::invalid_parameter(format!(
                        "Invalid dataset key '{other}': expected name, digest or context"
                    )));
                }
            };
            sql.push(&format!(
                "EXISTS (SELECT 1 FROM inputs i JOIN datasets d ON d.dataset_uuid = i.source_id{} \
                 WHERE i.destination_type = 'RUN' AND i.destination_id = {} AND ",
                if ident.key == "context" {
                    " JOIN input_tags it ON it.input_uuid = i.input_uuid AND it.key = 'mlflow.data.context'"
                } else {
                    ""
                },
                spec.id_column
            ));
            push_value_condition(dialect, column, ColumnType::Text, ident, cmp, sql)?;
            sql.push(")");
            Ok(())
        }
        kind => {
            let table = spec
                .side_table(kind)
                .ok_or_else(|| unsupported(spec, ident))?;
            let negated_ne =
                spec.ne_includes_missing && kind == EntityKind::Tag && cmp.op == Comparator::Ne;
            let exists = match cmp.op {
                Comparator::IsNull => "NOT EXISTS",
                _ if negated_ne => "NOT EXISTS",
                _ => "EXISTS",
            };
            sql.push(&format!(
                "{exists} (SELECT 1 FROM {} kv WHERE {} AND kv.key = ",
                table.table, table.join
            ));
            sql.bind(ident.key.as_str());
            if !table.extra.is_empty() {
                sql.push(" AND kv.").push(table.extra);
            }
            if negated_ne {
                // NOT EXISTS (tag = value): entities lacking the tag match too.
                let equal = Comparison {
                    ident: cmp.ident.clone(),
                    op: Comparator::Eq,
                    value: cmp.value.clone(),
                };
                sql.push(" AND ");
                push_value_condition(dialect, "kv.value", table.value_type, ident, &equal, sql)?;
            } else if !matches!(cmp.op, Comparator::IsNull | Comparator::IsNotNull) {
                sql.push(" AND ");
                push_value_condition(dialect, "kv.value", table.value_type, ident, cmp, sql)?;
            }
            sql.push(")");
            Ok(())
        }
    }
}

fn unsupported(spec: &SearchSpec, ident: &Identifier) -> Error {
    Error::invalid_parameter(format!(
        "A {} search cannot filter on {} '{}'",
        spec.entity,
        kind_name(ident.kind),
        ident.key
    ))
}

/// `column <op> value`, type-checked against the column type.
fn push_value_condition(
    dialect: Dialect,
    column: &str,
    column_type: ColumnType,
    ident: &Identifier,
    cmp: &Comparison,
    sql: &mut Sql,
) -> Result<(), Error> {
    let what = format!("{} '{}'", kind_name(ident.kind), ident.key);
    let op = cmp.op;
    let bad_op = || {
        Error::invalid_parameter(format!(
            "Invalid comparator '{}' for {what}: allowed are {}",
            op.as_str(),
            match column_type {
                ColumnType::Number => "=, !=, >, >=, <, <=, IN, NOT IN",
                ColumnType::Text => "=, !=, LIKE, ILIKE, IN, NOT IN",
            }
        ))
    };
    match op {
        Comparator::IsNull => {
            sql.push(&format!("{column} IS NULL"));
            return Ok(());
        }
        Comparator::IsNotNull => {
            sql.push(&format!("{column} IS NOT NULL"));
            return Ok(());
        }
        _ => {}
    }
    match column_type {
        ColumnType::Number => {
            let symbol = match op {
                Comparator::Eq => "=",
                Comparator::Ne => "!=",
                Comparator::Gt => ">",
                Comparator::Ge => ">=",
                Comparator::Lt => "<",
                Comparator::Le => "<=",
                Comparator::In | Comparator::NotIn => {
                    let values = number_list(&cmp.value, &what)?;
                    sql.push(&format!(
                        "{column} {} ",
                        if op == Comparator::In { "IN" } else { "NOT IN" }
                    ));
                    sql.bind_list(values);
                    return Ok(());
                }
                _ => return Err(bad_op()),
            };
            let number = as_number(&cmp.value, &what)?;
            sql.push(&format!("{column} {symbol} "));
            sql.bind(number);
        }
        ColumnType::Text => match op {
            Comparator::Eq | Comparator::Ne => {
                let text = as_text(&cmp.value, &what)?;
                sql.push(&format!(
                    "{column} {} ",
                    if op == Comparator::Eq { "=" } else { "!=" }
                ));
                sql.bind(text);
            }
            Comparator::Like | Comparator::NotLike => {
                dialect.like(
                    sql,
                    column,
                    &as_text(&cmp.value, &what)?,
                    op == Comparator::NotLike,
                );
            }
            Comparator::ILike | Comparator::NotILike => {
                dialect.ilike(
                    sql,
                    column,
                    &as_text(&cmp.value, &what)?,
                    op == Comparator::NotILike,
                );
            }
            Comparator::In | Comparator::NotIn => {
                let values = text_list(&cmp.value, &what)?;
                sql.push(&format!(
                    "{column} {} ",
                    if op == Comparator::In { "IN" } else { "NOT IN" }
                ));
                sql.bind_list(values);
            }
            _ => return Err(bad_op()),
        },
    }
    Ok(())
}

fn as_number(value: &Value, what: &str) -> Result<f64, Error> {
    match value {
        Value::Number(n) => Ok(*n),
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| {
            Error::invalid_parameter(format!("Expected a numeric value for {what}, got '{s}'"))
        }),
        other => Err(Error::invalid_parameter(format!(
            "Expected a numeric value for {what}, got {other:?}"
        ))),
    }
}

fn as_text(value: &Value, what: &str) -> Result<String, Error> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(Error::invalid_parameter(format!(
            "Value for {what} must be a quoted string (e.g. '...'), got {other:?}"
        ))),
    }
}

fn number_list(value: &Value, what: &str) -> Result<Vec<f64>, Error> {
    match value {
        Value::List(items) => items.iter().map(|v| as_number(v, what)).collect(),
        other => Err(Error::invalid_parameter(format!(
            "IN needs a list of values for {what}, got {other:?}"
        ))),
    }
}

fn text_list(value: &Value, what: &str) -> Result<Vec<String>, Error> {
    match value {
        Value::List(items) => items.iter().map(|v| as_text(v, what)).collect(),
        other => Err(Error::invalid_parameter(format!(
            "IN needs a list of values for {what}, got {other:?}"
        ))),
    }
}

/// Appends ` AND <filter>` when `filter_string` holds a filter (the
/// entity's own conditions come before it in `sql`).
pub(crate) fn push_filter_string(
    spec: &SearchSpec,
    dialect: Dialect,
    filter_string: Option<&str>,
    sql: &mut Sql,
) -> Result<(), Error> {
    if let Some(expr) = filter_string
        .map(crate::filter::parse_filter)
        .transpose()?
        .flatten()
    {
        sql.push(" AND ");
        push_filter(spec, dialect, &expr, sql)?;
    }
    Ok(())
}

/// The tail every MLflow search shares: the filter, then ` ORDER BY` the
/// caller's clauses and `tie_break` (the entity's stable default order),
/// then one row more than a page (to know whether another follows) from
/// `offset`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_search(
    spec: &SearchSpec,
    dialect: Dialect,
    filter_string: Option<&str>,
    order_by: &[String],
    tie_break: &str,
    max_results: i64,
    offset: u64,
    sql: &mut Sql,
) -> Result<(), Error> {
    push_filter_string(spec, dialect, filter_string, sql)?;
    sql.push(" ORDER BY ");
    keel_core::validation::check_order_by_count(order_by.len())?;
    for clause in order_by {
        push_order_by(spec, &crate::filter::parse_order_by(clause)?, sql)?;
        sql.push(", ");
    }
    sql.push(tie_break)
        .limit_offset(max_results.saturating_add(1), offset);
    Ok(())
}

/// Appends one ORDER BY term (without the `ORDER BY` keyword). Entities missing
/// the sort key come last in either direction, as in MLflow.
pub(crate) fn push_order_by(
    spec: &SearchSpec,
    order: &OrderBy,
    sql: &mut Sql,
) -> Result<(), Error> {
    let direction = if order.ascending { "ASC" } else { "DESC" };
    let ident = &order.ident;
    match ident.kind {
        EntityKind::Attribute => {
            let (column, _) = (spec.attribute)(&ident.key).ok_or_else(|| {
                Error::invalid_parameter(format!(
                    "Invalid order_by attribute '{}' for a {} search",
                    ident.key, spec.entity
                ))
            })?;
            sql.push(&format!("({column} IS NULL) ASC, {column} {direction}"));
        }
        EntityKind::Dataset => return Err(unsupported(spec, ident)),
        kind => {
            let table = spec
                .side_table(kind)
                .ok_or_else(|| unsupported(spec, ident))?;
            // One sub-select per row (SQLite and PostgreSQL both take NULLS LAST).
            sql.push(&format!(
                "(SELECT kv.value FROM {} kv WHERE {} AND kv.key = ",
                table.table, table.join
            ));
            sql.bind(ident.key.as_str());
            if !table.extra.is_empty() {
                sql.push(" AND kv.").push(table.extra);
            }
            sql.push(&format!(") {direction} NULLS LAST"));
        }
    }
    Ok(())
}
