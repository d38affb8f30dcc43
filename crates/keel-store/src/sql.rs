//! A small SQL builder: appends text and numbered `$n` placeholders, keeps the
//! bound values, and renders the few constructs whose spelling differs between
//! SQLite and PostgreSQL.

use keel_core::Error;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Row};

/// The SQL backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    I64(i64),
    F64(f64),
    Text(String),
    OptI64(Option<i64>),
    OptText(Option<String>),
    Bytes(Vec<u8>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::I64(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::F64(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_string())
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Arg::Bytes(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptI64(v)
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::OptText(v.map(str::to_string))
    }
}

/// SQL text plus its arguments, built left to right.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    /// Appends raw SQL text (never user input).
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        self.text.push('$');
        self.text
            .push_str(itoa::Buffer::new().format(self.args.len()));
        self
    }

    /// Appends `(p1, p2, ...)` for a list of values.
    pub fn bind_list<T: Into<Arg>>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self {
        self.text.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self.text.push(')');
        self
    }

    /// Appends ` LIMIT limit OFFSET offset` with the numbers written in the
    /// text, not bound: SQLite (built with STAT4) plans with a bound LIMIT's
    /// value, so every new binding would expire a cached prepared statement
    /// and re-prepare it on each call.
    pub fn limit_offset(&mut self, limit: i64, offset: u64) -> &mut Self {
        self.text
            .push_str(&format!(" LIMIT {limit} OFFSET {offset}"));
        self
    }

    /// The text with SQLite's anonymous `?` placeholders.
    pub fn sqlite_text(&self) -> String {
        anonymous_placeholders(&self.text)
    }

    /// The bound values, in placeholder order.
    pub fn args(&self) -> &[Arg] {
        &self.args
    }

    #[cfg(test)]
    pub fn arg_count(&self) -> usize {
        self.args.len()
    }

    /// The sqlx query for `dialect`, ready to execute. SQLite gets anonymous `?`
    /// placeholders: with numbered ones, binding costs O(n) per parameter
    /// (`sqlite3_bind_parameter_name` walks the list), O(n²) for a 1,000-row insert.
    pub fn query(&self, dialect: Dialect) -> Query<'static, Any, AnyArguments> {
        let text = match dialect {
            Dialect::Postgres => self.text.clone(),
            Dialect::Sqlite => self.sqlite_text(),
        };
        let mut query = sqlx::query(AssertSqlSafe(text));
        for arg in &self.args {
            query = match arg {
                Arg::I64(v) => query.bind(*v),
                Arg::F64(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.clone()),
                Arg::OptI64(v) => query.bind(*v),
                Arg::OptText(v) => query.bind(v.clone()),
                Arg::Bytes(v) => query.bind(v.clone()),
            };
        }
        query
    }
}

/// Rewrites `$1, $2, ...` as `?`. Placeholders are numbered in text order by
/// [`Sql::bind`] and are never inside SQL string literals, so order is kept.
fn anonymous_placeholders(text: &str) -> String {
    // Byte by byte: `$` and digits are ASCII, so every cut falls between
    // UTF-8 characters; text between placeholders is copied in runs.
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            out.push_str(&text[copied..i]);
            out.push('?');
            i += 1;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

impl Dialect {
    /// The dialect of an open connection (for helpers that only hold a transaction).
    pub(crate) fn of(connection: &sqlx::AnyConnection) -> Dialect {
        if connection.backend_name().eq_ignore_ascii_case("sqlite") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        }
    }

    /// A case-sensitive LIKE. SQLite's LIKE ignores ASCII case, so it becomes GLOB there.
    pub(crate) fn like(self, sql: &mut Sql, column: &str, pattern: &str, negate: bool) {
        let not = if negate { "NOT " } else { "" };
        match self {
            Dialect::Postgres => {
                sql.push(&format!("{column} {not}LIKE ")).bind(pattern);
            }
            Dialect::Sqlite => {
                sql.push(&format!("{column} {not}GLOB "))
                    .bind(like_to_glob(pattern));
            }
        }
    }

    /// A case-insensitive LIKE.
    pub(crate) fn ilike(self, sql: &mut Sql, column: &str, pattern: &str, negate: bool) {
        let not = if negate { "NOT " } else { "" };
        match self {
            Dialect::Postgres => {
                sql.push(&format!("{column} {not}ILIKE ")).bind(pattern);
            }
            Dialect::Sqlite => {
                sql.push(&format!("LOWER({column}) {not}LIKE LOWER("))
                    .bind(pattern)
                    .push(")");
            }
        }
    }
}

/// Translates a LIKE pattern (`%`, `_`) into a GLOB pattern, escaping GLOB's own metacharacters.
fn like_to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '%' => out.push('*'),
            '_' => out.push('?'),
            '*' => out.push_str("[*]"),
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

/// Reads a column, turning a decode failure into an internal error naming the column.
pub(crate) fn get<T>(row: &AnyRow, column: &str) -> Result<T, Error>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get::<T, _>(column)
        .map_err(|e| Error::internal(format!("Cannot read column '{column}': {e}")))
}

/// Maps a sqlx error into keel's internal error with context.
pub(crate) fn db(context: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| Error::internal(format!("{context}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered() {
        let mut sql = Sql::new("SELECT * FROM t WHERE a = ");
        sql.bind(1i64).push(" AND b IN ").bind_list(["x", "y"]);
        assert_eq!(sql.text, "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)");
        assert_eq!(sql.arg_count(), 3);
    }

    #[test]
    fn sqlite_gets_anonymous_placeholders() {
        assert_eq!(
            anonymous_placeholders("a = $1 AND b IN ($2, $13)"),
            "a = ? AND b IN (?, ?)"
        );
        assert_eq!(anonymous_placeholders("cost $ 5"), "cost $ 5");
        assert_eq!(
            anonymous_placeholders("é = $1, 'ü$' || $22$3 || $"),
            "é = ?, 'ü$' || ?? || $"
        );
    }

    #[test]
    fn glob_translation() {
        assert_eq!(like_to_glob("a%b_c"), "a*b?c");
        assert_eq!(like_to_glob("x*y?[z"), "x[*]y[?][[]z");
    }
}
