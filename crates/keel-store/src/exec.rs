//! One way to run a [`Sql`] for both backends: an [`Exec`] fetches keel-owned
//! [`Row`]s and executes statements, either over sqlx (PostgreSQL, and SQLite
//! in memory) or over a native SQLite connection ([`crate::native`]) that runs
//! a whole store operation on one blocking thread. Store operations on the hot
//! paths (run search and reads, `log_batch`) are written once, generic over
//! `Exec`; the SQL text and arguments stay the [`Sql`] builder's.

use std::future::Future;
use std::sync::Arc;

use keel_core::Error;
use sqlx::any::AnyRow;

use crate::sql::{Arg, Dialect, Sql, db, get};

/// Runs a read operation written against [`Exec`] (`$body` uses `$conn`, owns its
/// data): on a native SQLite connection when the store has them, else on one
/// pooled sqlx connection.
macro_rules! read_op {
    ($store:expr, |$conn:ident| $body:expr) => {
        match &$store.native {
            Some(native) => {
                native
                    .read(move |$conn| crate::native::run_ready($body))
                    .await
            }
            None => {
                let mut pooled = $store
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::sql::db("acquiring a connection"))?;
                let $conn = &mut *pooled;
                $body.await
            }
        }
    };
}

/// Runs a write operation written against [`Exec`] in one transaction that
/// commits on `Ok`: natively (holding the writer pool's slot) on a SQLite file,
/// else in a sqlx transaction on the writer pool. SQLite enforces the schema's
/// foreign keys unless the operation says it checks its parents itself
/// (`write_op!(store, ForeignKeys::CheckedByOperation, |conn| ...)`, see
/// [`crate::native::ForeignKeys`]); PostgreSQL always enforces them.
macro_rules! write_op {
    ($store:expr, |$conn:ident| $body:expr) => {
        write_op!($store, crate::native::ForeignKeys::Enforced, |$conn| $body)
    };
    ($store:expr, $foreign_keys:expr, |$conn:ident| $body:expr) => {
        match &$store.native {
            Some(native) => {
                let slot = $store
                    .writer
                    .acquire()
                    .await
                    .map_err(crate::sql::db("acquiring the writer"))?;
                native
                    .write(slot, $foreign_keys, move |$conn| {
                        crate::native::run_ready($body)
                    })
                    .await
            }
            None => {
                let mut tx = $store
                    .writer
                    .begin()
                    .await
                    .map_err(crate::sql::db("starting transaction"))?;
                let $conn = &mut *tx;
                let value = $body.await?;
                tx.commit().await.map_err(crate::sql::db("committing"))?;
                Ok(value)
            }
        }
    };
}

/// A value read by the native SQLite executor.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// A row of a result: sqlx's own (no copy on that path) or a native one.
pub(crate) enum Row {
    Any(AnyRow),
    Native {
        columns: Arc<[String]>,
        values: Vec<Value>,
    },
}

impl Row {
    /// Reads a column by name; a missing column or a type mismatch is an internal error.
    /// Each column is read once: a native row hands its text over instead of copying
    /// it (the value left behind is NULL).
    pub fn get<T: FromColumn>(&mut self, column: &str) -> Result<T, Error> {
        match self {
            Row::Any(row) => T::from_any(row, column),
            Row::Native { columns, values } => {
                let value = columns
                    .iter()
                    .position(|c| c == column)
                    .and_then(|i| values.get_mut(i))
                    .ok_or_else(|| Error::internal(format!("No column '{column}' in the row")))?;
                let taken = std::mem::replace(value, Value::Null);
                T::from_value(taken).map_err(|value| {
                    Error::internal(format!(
                        "Cannot read column '{column}': unexpected value {value:?}"
                    ))
                })
            }
        }
    }
}

/// A row read in place by column position (the SELECT's order), for the
/// loops that read many rows: nothing is copied but what the caller keeps,
/// and a native row lends its text.
pub(crate) trait RowRef {
    fn text(&self, i: usize) -> Result<std::borrow::Cow<'_, str>, Error>;
    /// A text column that may be NULL.
    fn opt_text(&self, i: usize) -> Result<Option<String>, Error>;
    fn int(&self, i: usize) -> Result<i64, Error>;
    /// An integer column that may be NULL.
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Error>;
    fn real(&self, i: usize) -> Result<f64, Error>;
    /// A BLOB (BYTEA) column that may be NULL.
    fn opt_bytes(&self, i: usize) -> Result<Option<std::borrow::Cow<'_, [u8]>>, Error>;
}

impl RowRef for AnyRow {
    fn text(&self, i: usize) -> Result<std::borrow::Cow<'_, str>, Error> {
        any_at::<String>(self, i).map(std::borrow::Cow::Owned)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, Error> {
        any_at(self, i)
    }
    fn int(&self, i: usize) -> Result<i64, Error> {
        any_at(self, i)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Error> {
        any_at(self, i)
    }
    fn real(&self, i: usize) -> Result<f64, Error> {
        any_at(self, i)
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<std::borrow::Cow<'_, [u8]>>, Error> {
        any_at::<Option<Vec<u8>>>(self, i).map(|bytes| bytes.map(std::borrow::Cow::Owned))
    }
}

fn any_at<T>(row: &AnyRow, i: usize) -> Result<T, Error>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    sqlx::Row::try_get::<T, _>(row, i)
        .map_err(|e| Error::internal(format!("Cannot read column {i}: {e}")))
}

/// A Rust type a column decodes into on both executors.
pub(crate) trait FromColumn: Sized {
    fn from_any(row: &AnyRow, column: &str) -> Result<Self, Error>;
    /// The value, or the value back when it does not fit.
    fn from_value(value: Value) -> Result<Self, Value>;
}

impl FromColumn for i64 {
    fn from_any(row: &AnyRow, column: &str) -> Result<Self, Error> {
        get(row, column)
    }
    fn from_value(value: Value) -> Result<Self, Value> {
        match value {
            Value::Int(v) => Ok(v),
            other => Err(other),
        }
    }
}

impl FromColumn for f64 {
    fn from_any(row: &AnyRow, column: &str) -> Result<Self, Error> {
        get(row, column)
    }
    fn from_value(value: Value) -> Result<Self, Value> {
        match value {
            Value::Real(v) => Ok(v),
            // A REAL column keeps whole numbers as REAL, but an expression may yield an integer.
            Value::Int(v) => Ok(v as f64),
            other => Err(other),
        }
    }
}

impl FromColumn for String {
    fn from_any(row: &AnyRow, column: &str) -> Result<Self, Error> {
        get(row, column)
    }
    fn from_value(value: Value) -> Result<Self, Value> {
        match value {
            Value::Text(v) => Ok(v),
            other => Err(other),
        }
    }
}

impl<T: FromColumn> FromColumn for Option<T>
where
    Option<T>: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    fn from_any(row: &AnyRow, column: &str) -> Result<Self, Error> {
        get(row, column)
    }
    fn from_value(value: Value) -> Result<Self, Value> {
        match value {
            Value::Null => Ok(None),
            value => T::from_value(value).map(Some),
        }
    }
}

/// A multi-row INSERT described once: `head` (`INSERT INTO t (a, b) VALUES `),
/// `width` values per row, `tail` (`ON CONFLICT ...`). sqlx renders it as one
/// statement; the native executor runs it as prepared statements of up to
/// [`crate::native`]'s rows per statement (cursors opened once per statement).
#[derive(Debug)]
pub(crate) struct Batch {
    head: String,
    width: usize,
    tail: String,
    args: Vec<Arg>,
}

impl Batch {
    pub fn new(head: &str, width: usize, tail: &str) -> Self {
        Batch {
            head: head.to_string(),
            width,
            tail: tail.to_string(),
            args: Vec::new(),
        }
    }

    /// Adds one row of `width` values (more or fewer is a programming error, reported as internal).
    pub fn row(&mut self, values: impl IntoIterator<Item = Arg>) -> Result<(), Error> {
        let before = self.args.len();
        self.args.extend(values);
        if self.args.len() - before != self.width {
            return Err(Error::internal(format!(
                "Batch row of {} values for {} columns",
                self.args.len() - before,
                self.width
            )));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// The whole batch as one statement.
    pub fn multi_row(&self) -> Sql {
        let mut sql = Sql::new(&self.head);
        for (i, row) in self.args.chunks(self.width.max(1)).enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind_list(row.iter().cloned());
        }
        sql.push(" ").push(&self.tail);
        sql
    }

    /// The batch as statements of at most `rows` rows each: each one's SQLite
    /// text and its values. All full statements share one text (one prepared
    /// statement); only the last may be shorter.
    pub fn statements(&self, rows: usize) -> Vec<(String, &[Arg])> {
        let width = self.width.max(1);
        let mut texts: Vec<(usize, String)> = Vec::new();
        self.args
            .chunks(width * rows.max(1))
            .map(|values| {
                let n = values.len() / width;
                let text = match texts.iter().find(|(m, _)| *m == n) {
                    Some((_, text)) => text.clone(),
                    None => {
                        let mut sql = Sql::new(&self.head);
                        for i in 0..n {
                            if i > 0 {
                                sql.push(", ");
                            }
                            sql.bind_list(values[i * width..(i + 1) * width].iter().cloned());
                        }
                        sql.push(" ").push(&self.tail);
                        let text = sql.sqlite_text();
                        texts.push((n, text.clone()));
                        text
                    }
                };
                (text, values)
            })
            .collect()
    }
}

/// Runs SQL built by [`Sql`] on one connection (or transaction).
pub(crate) trait Exec: Send {
    fn fetch_all<'a>(
        &'a mut self,
        sql: &'a Sql,
        context: &'static str,
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send + 'a;

    /// Runs a statement; returns the number of rows it changed.
    fn execute<'a>(
        &'a mut self,
        sql: &'a Sql,
        context: &'static str,
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a;

    fn execute_batch<'a>(
        &'a mut self,
        batch: &'a Batch,
        context: &'static str,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a;

    /// The first half of [`Exec::visit`]: sqlx fetches the rows here; a
    /// native connection fetches nothing (it runs the query in `visit`).
    fn prefetch<'a>(
        &'a mut self,
        sql: &'a Sql,
        context: &'static str,
    ) -> impl Future<Output = Result<Prefetched, Error>> + Send + 'a;

    /// Hands each row of `sql` to `visit` in place (see [`RowRef`]), after
    /// [`Exec::prefetch`] of the same query. Two calls, so that no future holds
    /// the callback across an await (its higher-ranked `&dyn RowRef` argument
    /// would stop the request's future from being `Send`).
    fn visit(
        &mut self,
        sql: &Sql,
        context: &'static str,
        prefetched: Prefetched,
        visit: &mut dyn FnMut(&dyn RowRef) -> Result<(), Error>,
    ) -> Result<(), Error>;
}

/// Rows fetched ahead by sqlx for [`Exec::visit`] (none on a native connection).
pub(crate) struct Prefetched(Option<Vec<AnyRow>>);

impl Prefetched {
    pub fn nothing() -> Self {
        Prefetched(None)
    }
}

/// All rows of `sql` over sqlx, in the connection's dialect.
async fn any_rows(
    connection: &mut sqlx::AnyConnection,
    sql: &Sql,
    context: &'static str,
) -> Result<Vec<AnyRow>, Error> {
    let dialect = Dialect::of(connection);
    sql.query(dialect)
        .fetch_all(&mut *connection)
        .await
        .map_err(db(context))
}

impl Exec for sqlx::AnyConnection {
    async fn fetch_all<'a>(
        &'a mut self,
        sql: &'a Sql,
        context: &'static str,
    ) -> Result<Vec<Row>, Error> {
        let rows = any_rows(self, sql, context).await?;
        Ok(rows.into_iter().map(Row::Any).collect())
    }

    async fn execute<'a>(&'a mut self, sql: &'a Sql, context: &'static str) -> Result<u64, Error> {
        let dialect = Dialect::of(self);
        let result = sql
            .query(dialect)
            .execute(&mut *self)
            .await
            .map_err(db(context))?;
        Ok(result.rows_affected())
    }

    async fn execute_batch<'a>(
        &'a mut self,
        batch: &'a Batch,
        context: &'static str,
    ) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        self.execute(&batch.multi_row(), context).await.map(|_| ())
    }

    async fn prefetch<'a>(
        &'a mut self,
        sql: &'a Sql,
        context: &'static str,
    ) -> Result<Prefetched, Error> {
        Ok(Prefetched(Some(any_rows(self, sql, context).await?)))
    }

    fn visit(
        &mut self,
        _sql: &Sql,
        context: &'static str,
        prefetched: Prefetched,
        visit: &mut dyn FnMut(&dyn RowRef) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let rows = prefetched.0.ok_or_else(|| {
            Error::internal(format!("{context}: the rows were not fetched first"))
        })?;
        rows.iter().try_for_each(|row| visit(row))
    }
}
