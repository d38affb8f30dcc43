//! Native SQLite connections for the hot store operations (run search and
//! reads, `log_batch`): a whole operation runs on one blocking thread against
//! one `rusqlite` connection with a prepared-statement cache, instead of one
//! round trip to sqlx's SQLite worker thread per query and one channel hop per
//! row. The SQL is still rendered by [`Sql`]; this is only another [`Exec`].
//!
//! Writes keep the store's single-writer rule: a native write holds the sqlx
//! writer pool's only connection for its whole duration (see [`Native::write`]),
//! so it never runs beside another write of this process.
//!
//! WAL checkpoints run off the request path: a background thread checkpoints
//! (`PASSIVE`: it never blocks a reader or the writer) every
//! [`CHECKPOINT_EVERY`] when a native write committed since its last look; a
//! committing connection checkpoints by itself only once the WAL holds
//! 10,000 pages ([`WAL_AUTOCHECKPOINT`]).

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use keel_core::Error;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use sqlx::Any;
use sqlx::pool::PoolConnection;
use tokio::sync::Semaphore;

use crate::exec::{Batch, Exec, Prefetched, Row, RowRef, Value};
use crate::sql::{Arg, Sql};

/// Sets the WAL pages (10,000; SQLite's default is 1,000) past which a
/// committing connection checkpoints by itself: a backstop for when the
/// background checkpointer falls behind a burst of writes. Every connection
/// of the file runs it.
pub(crate) const WAL_AUTOCHECKPOINT: &str = "PRAGMA wal_autocheckpoint = 10000";
/// How often the background checkpointer looks for new commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// How many native read operations run at once (each holds one connection).
const READERS: usize = 8;
/// Rows per INSERT statement of a [`Batch`]: one statement opens its cursors
/// and checks its constraints' indexes once for all its rows (64 rows of 6
/// values stay far below SQLite's 32,766 parameters).
const BATCH_ROWS: usize = 64;
/// Prepared statements kept per connection (search texts vary with the IN-list length).
const STATEMENT_CACHE: usize = 128;

/// The native connections of one SQLite database file.
#[derive(Debug)]
pub(crate) struct Native {
    path: PathBuf,
    readers: Mutex<Vec<Conn>>,
    read_slots: Arc<Semaphore>,
    writer: Mutex<Option<Writer>>,
    /// Native write transactions committed so far (the checkpointer's cue).
    commits: AtomicU64,
}

/// One native connection; an [`Exec`] whose futures are always ready.
#[derive(Debug)]
pub(crate) struct Conn(Connection);

/// Whether SQLite checks the schema's foreign keys in a native write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForeignKeys {
    /// SQLite looks up the parent row of every row written: every write but
    /// those below.
    Enforced,
    /// The operation reads every parent row it references inside its own
    /// transaction and fails when one is missing; the single writer keeps them
    /// there until it commits. SQLite's own lookup is then a second B-tree
    /// descent per row that cannot fail: for `log_batch`, one into `runs` per
    /// metric point.
    CheckedByOperation,
}

/// The writer connection and the foreign-key setting it was last given
/// (`PRAGMA foreign_keys` can only change outside a transaction).
#[derive(Debug)]
struct Writer {
    conn: Conn,
    foreign_keys: ForeignKeys,
}

impl Native {
    /// The native connections of the SQLite file at `path`, with a background
    /// thread that checkpoints its WAL; the thread ends soon after the last
    /// handle is dropped.
    pub fn open(path: PathBuf) -> Arc<Self> {
        let native = Arc::new(Native {
            path,
            readers: Mutex::new(Vec::new()),
            read_slots: Arc::new(Semaphore::new(READERS)),
            writer: Mutex::new(None),
            commits: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&native);
        let spawned = std::thread::Builder::new()
            .name("keel-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&weak));
        if let Err(e) = spawned {
            // Not fatal: committing connections still checkpoint past the backstop.
            tracing::warn!(error = %e, "cannot start the SQLite checkpoint thread");
        }
        native
    }

    /// Runs `op` on a read connection on a blocking thread.
    /// All its queries see one snapshot (one deferred read transaction).
    pub async fn read<T, F>(self: &Arc<Self>, op: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, Error> + Send + 'static,
    {
        let permit = Arc::clone(&self.read_slots)
            .acquire_owned()
            .await
            .map_err(|e| Error::internal(format!("SQLite readers closed: {e}")))?;
        let this = Arc::clone(self);
        blocking(move || {
            let _permit = permit;
            let pooled = lock(&this.readers).pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => Conn::open(&this.path)?,
            };
            conn.0
                .execute_batch("BEGIN")
                .map_err(sqlite("starting read"))?;
            let result = op(&mut conn);
            // A read changes nothing: ending it either way releases the snapshot.
            if conn.0.execute_batch("COMMIT").is_ok() && conn.0.is_autocommit() {
                lock(&this.readers).push(conn);
            }
            result
        })
        .await
    }

    /// Runs `op` in one `BEGIN IMMEDIATE` transaction on the writer connection,
    /// committing on `Ok` and rolling back on `Err`. `slot` is the sqlx writer
    /// pool's connection: holding it until the transaction ends keeps every write
    /// of this process serialized, native or not.
    pub async fn write<T, F>(
        self: &Arc<Self>,
        slot: PoolConnection<Any>,
        foreign_keys: ForeignKeys,
        op: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, Error> + Send + 'static,
    {
        let this = Arc::clone(self);
        blocking(move || {
            let _slot = slot;
            let mut writer = lock(&this.writer);
            if writer.is_none() {
                *writer = Some(Writer {
                    conn: Conn::open(&this.path)?,
                    foreign_keys: ForeignKeys::Enforced,
                });
            }
            let writer = writer
                .as_mut()
                .ok_or_else(|| Error::internal("SQLite writer connection missing"))?;
            let conn = &mut writer.conn;
            if !conn.0.is_autocommit() {
                // A previous operation panicked inside its transaction.
                conn.0
                    .execute_batch("ROLLBACK")
                    .map_err(sqlite("rolling back"))?;
            }
            if writer.foreign_keys != foreign_keys {
                let pragma = match foreign_keys {
                    ForeignKeys::Enforced => "PRAGMA foreign_keys = ON",
                    ForeignKeys::CheckedByOperation => "PRAGMA foreign_keys = OFF",
                };
                conn.0
                    .execute_batch(pragma)
                    .map_err(sqlite("setting foreign keys"))?;
                writer.foreign_keys = foreign_keys;
            }
            conn.0
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(sqlite("starting transaction"))?;
            match op(conn) {
                Ok(value) => {
                    conn.0
                        .execute_batch("COMMIT")
                        .map_err(sqlite("committing"))?;
                    this.commits.fetch_add(1, Ordering::Relaxed);
                    Ok(value)
                }
                Err(e) => {
                    conn.0
                        .execute_batch("ROLLBACK")
                        .map_err(sqlite("rolling back"))?;
                    Err(e)
                }
            }
        })
        .await
    }
}

/// The background checkpointer: every [`CHECKPOINT_EVERY`], if a native write
/// committed since the last look, copies the WAL's new pages into the database
/// file (`PASSIVE`). Returns once the store is gone.
fn checkpoint_loop(native: &Weak<Native>) {
    let mut seen = 0;
    let mut conn: Option<Conn> = None;
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let path = match native.upgrade() {
            Some(native) => {
                let commits = native.commits.load(Ordering::Relaxed);
                if commits == seen {
                    continue;
                }
                seen = commits;
                native.path.clone()
            }
            None => return,
        };
        if conn.is_none() {
            match Conn::open(&path) {
                Ok(opened) => conn = Some(opened),
                Err(e) => {
                    tracing::warn!(error = %e, "SQLite checkpoint connection");
                    continue;
                }
            }
        }
        if let Some(conn) = &conn
            && let Err(e) = conn.0.execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
        {
            tracing::debug!(error = %e, "SQLite checkpoint");
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::internal(format!("SQLite operation failed: {e}")))?
}

/// Drives a store operation written against [`Exec`] on a native connection:
/// every await in it is a native call, which is always ready.
pub(crate) fn run_ready<T>(future: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    futures::executor::block_on(future)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn sqlite(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::internal(format!("{context}: {e}"))
}

impl Conn {
    fn open(path: &std::path::Path) -> Result<Conn, Error> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let connection = Connection::open_with_flags(path, flags).map_err(|e| {
            Error::internal(format!(
                "Cannot open SQLite database {}: {e}",
                path.display()
            ))
        })?;
        // The same settings as the sqlx connections (see `sqlite_pool`).
        connection
            .busy_timeout(Duration::from_secs(30))
            .map_err(sqlite("configuring SQLite"))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            )
            .map_err(sqlite("configuring SQLite"))?;
        connection
            .execute_batch(WAL_AUTOCHECKPOINT)
            .map_err(sqlite("configuring SQLite"))?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Conn(connection))
    }

    fn statement(
        &self,
        text: &str,
        args: &[Arg],
        context: &'static str,
    ) -> Result<rusqlite::CachedStatement<'_>, Error> {
        let mut statement = self.0.prepare_cached(text).map_err(sqlite(context))?;
        for (i, arg) in args.iter().enumerate() {
            statement
                .raw_bind_parameter(i + 1, arg)
                .map_err(sqlite(context))?;
        }
        Ok(statement)
    }

    fn fetch_now(&self, sql: &Sql, context: &'static str) -> Result<Vec<Row>, Error> {
        let mut statement = self.statement(&sql.sqlite_text(), sql.args(), context)?;
        let columns: Arc<[String]> = statement
            .column_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let width = columns.len();
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite(context))? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(match row.get_ref(i).map_err(sqlite(context))? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Real(v),
                    ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                        Value::Text(utf8(bytes, context)?.to_string())
                    }
                });
            }
            out.push(Row::Native {
                columns: Arc::clone(&columns),
                values,
            });
        }
        Ok(out)
    }

    fn visit_now(
        &self,
        sql: &Sql,
        context: &'static str,
        visit: &mut dyn FnMut(&dyn RowRef) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut statement = self.statement(&sql.sqlite_text(), sql.args(), context)?;
        let mut rows = statement.raw_query();
        while let Some(row) = rows.next().map_err(sqlite(context))? {
            visit(&NativeRow { row, context })?;
        }
        Ok(())
    }

    fn execute_now(&self, sql: &Sql, context: &'static str) -> Result<u64, Error> {
        let mut statement = self.statement(&sql.sqlite_text(), sql.args(), context)?;
        let changed = statement.raw_execute().map_err(sqlite(context))?;
        Ok(changed as u64)
    }

    fn execute_batch_now(&self, batch: &Batch, context: &'static str) -> Result<(), Error> {
        for (text, values) in batch.statements(BATCH_ROWS) {
            let mut statement = self.statement(&text, values, context)?;
            statement.raw_execute().map_err(sqlite(context))?;
        }
        Ok(())
    }
}

impl Exec for Conn {
    fn fetch_all<'a>(
        &'a mut self,
        sql: &'a Sql,
        context: &'static str,
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send + 'a {
        std::future::ready(self.fetch_now(sql, context))
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a Sql,
        context: &'static str,
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a {
        std::future::ready(self.execute_now(sql, context))
    }

    fn execute_batch<'a>(
        &'a mut self,
        batch: &'a Batch,
        context: &'static str,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        std::future::ready(self.execute_batch_now(batch, context))
    }

    fn prefetch<'a>(
        &'a mut self,
        _sql: &'a Sql,
        _context: &'static str,
    ) -> impl Future<Output = Result<Prefetched, Error>> + Send + 'a {
        std::future::ready(Ok(Prefetched::nothing()))
    }

    fn visit(
        &mut self,
        sql: &Sql,
        context: &'static str,
        _prefetched: Prefetched,
        visit: &mut dyn FnMut(&dyn RowRef) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.visit_now(sql, context, visit)
    }
}

/// A text column's bytes as text (SQLite does not promise UTF-8).
fn utf8<'b>(bytes: &'b [u8], context: &'static str) -> Result<&'b str, Error> {
    std::str::from_utf8(bytes)
        .map_err(|e| Error::internal(format!("{context}: a text column is not UTF-8: {e}")))
}

/// A native row read in place: text is borrowed from SQLite's buffer.
struct NativeRow<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    context: &'static str,
}

impl NativeRow<'_, '_> {
    fn value(&self, i: usize) -> Result<ValueRef<'_>, Error> {
        self.row.get_ref(i).map_err(sqlite(self.context))
    }

    fn unexpected(&self, i: usize, value: ValueRef<'_>) -> Error {
        Error::internal(format!(
            "{}: unexpected value {value:?} in column {i}",
            self.context
        ))
    }
}

impl RowRef for NativeRow<'_, '_> {
    fn text(&self, i: usize) -> Result<std::borrow::Cow<'_, str>, Error> {
        match self.value(i)? {
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                utf8(bytes, self.context).map(std::borrow::Cow::Borrowed)
            }
            other => Err(self.unexpected(i, other)),
        }
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, Error> {
        match self.value(i)? {
            ValueRef::Null => Ok(None),
            _ => self.text(i).map(|text| Some(text.into_owned())),
        }
    }
    fn int(&self, i: usize) -> Result<i64, Error> {
        match self.value(i)? {
            ValueRef::Integer(v) => Ok(v),
            other => Err(self.unexpected(i, other)),
        }
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Error> {
        match self.value(i)? {
            ValueRef::Integer(v) => Ok(Some(v)),
            ValueRef::Null => Ok(None),
            other => Err(self.unexpected(i, other)),
        }
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<std::borrow::Cow<'_, [u8]>>, Error> {
        match self.value(i)? {
            ValueRef::Blob(bytes) => Ok(Some(std::borrow::Cow::Borrowed(bytes))),
            ValueRef::Null => Ok(None),
            other => Err(self.unexpected(i, other)),
        }
    }
    fn real(&self, i: usize) -> Result<f64, Error> {
        match self.value(i)? {
            ValueRef::Real(v) => Ok(v),
            // A REAL column keeps whole numbers as REAL, but an expression may yield an integer.
            ValueRef::Integer(v) => Ok(v as f64),
            other => Err(self.unexpected(i, other)),
        }
    }
}

impl ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Arg::I64(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Arg::F64(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Arg::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Arg::OptI64(v) => match v {
                Some(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
                None => ToSqlOutput::Borrowed(ValueRef::Null),
            },
            Arg::OptText(v) => match v {
                Some(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
                None => ToSqlOutput::Borrowed(ValueRef::Null),
            },
            Arg::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}
