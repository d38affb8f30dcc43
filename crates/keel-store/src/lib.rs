//! keel-store: the metadata store.
//!
//! One typed API ([`Store`]) over two backends: SQLite (the default, one file
//! in WAL mode) and PostgreSQL (for teams). It owns the tables, the versioned
//! migrations, the transactions and the translation of MLflow's search grammar
//! ([`filter`]) into SQL. It knows nothing about HTTP or JSON shapes; callers get
//! `keel_core` entities and `keel_core::Error`s.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; the few dialect
//! differences (auto-increment ids, case-sensitive LIKE, ILIKE) are confined to
//! [`migrate`] and [`sql::Dialect`].

#[macro_use]
mod exec;
mod experiments;
pub mod filter;
mod logged_models;
mod migrate;
mod monitor;
mod monitored;
mod native;
mod pairs;
mod registry;
mod run_data;
mod runs;
mod search;
mod sql;
#[doc(hidden)]
pub mod testing;
mod users;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use keel_core::Error;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use keel_core::validation::{parse_version, validate_alias, validate_model_name};
pub use logged_models::ModelOrder;
pub use monitor::NewVerdict;
pub use monitored::MonitoredModel;
pub use registry::{Actor, CreateModelVersion};
pub use runs::{CreateRun, UpdateRun};
pub use sql::Dialect;
pub use users::{AccessToken, Grant, User, UserCredential};

/// Settings for opening a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite:///relative.db`, `sqlite:////absolute.db`, a plain file path, or `postgresql://...`.
    pub uri: String,
    /// Prefix for new experiments' artifact locations, e.g. `mlflow-artifacts:` (giving `mlflow-artifacts:/1`).
    pub default_artifact_root: String,
}

impl StoreConfig {
    pub fn new(uri: impl Into<String>) -> Self {
        StoreConfig {
            uri: uri.into(),
            default_artifact_root: keel_core::uri::PROXIED_SCHEME.to_string(),
        }
    }
}

/// The metadata store. Cheap to clone; all clones share the connection pools.
#[derive(Clone, Debug)]
pub struct Store {
    /// Connections for reads (and, on PostgreSQL, writes too).
    pool: AnyPool,
    /// On SQLite a single connection serialises this process's writes, so a write
    /// transaction never has to upgrade a read lock (which SQLite answers with BUSY).
    writer: AnyPool,
    /// On a SQLite file, native connections for the hot operations (run search
    /// and reads, `log_batch`); their writes hold `writer`'s connection.
    native: Option<Arc<native::Native>>,
    dialect: Dialect,
    default_artifact_root: String,
}

/// Where a backend URI points, after MLflow/SQLAlchemy's conventions are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Sqlite(PathBuf),
    SqliteMemory,
    Postgres(String),
}

fn parse_uri(uri: &str) -> Result<Location, Error> {
    if uri.starts_with("postgresql://") || uri.starts_with("postgres://") {
        return Ok(Location::Postgres(uri.replacen(
            "postgresql://",
            "postgres://",
            1,
        )));
    }
    if let Some(postgres) = uri.strip_prefix("postgresql+psycopg2://") {
        return Ok(Location::Postgres(format!("postgres://{postgres}")));
    }
    if uri == "sqlite://" || uri == "sqlite::memory:" || uri == "sqlite:///:memory:" {
        return Ok(Location::SqliteMemory);
    }
    // SQLAlchemy convention, as MLflow uses it: sqlite:///relative.db and sqlite:////absolute.db.
    if let Some(rest) = uri.strip_prefix("sqlite:///") {
        return Ok(Location::Sqlite(PathBuf::from(rest)));
    }
    if let Some(rest) = uri
        .strip_prefix("sqlite://")
        .or_else(|| uri.strip_prefix("sqlite:"))
    {
        return Ok(Location::Sqlite(PathBuf::from(rest)));
    }
    if uri.contains("://") {
        return Err(Error::invalid_parameter(format!(
            "Unsupported backend store URI '{uri}': use sqlite:///path.db or postgresql://user@host/db"
        )));
    }
    Ok(Location::Sqlite(PathBuf::from(uri)))
}

impl Store {
    /// Opens (creating if needed) the store at `config.uri` and applies pending migrations.
    pub async fn open(config: StoreConfig) -> Result<Store, Error> {
        sqlx::any::install_default_drivers();
        let location = parse_uri(&config.uri)?;
        let mut native = None;
        let (pool, writer, dialect) = match &location {
            Location::Postgres(url) => {
                let options = AnyConnectOptions::from_str(url).map_err(|e| {
                    Error::invalid_parameter(format!("Invalid PostgreSQL URI: {e}"))
                })?;
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await
                    .map_err(|e| {
                        Error::internal(format!(
                            "Cannot connect to PostgreSQL at {}: {e}",
                            redact(url)
                        ))
                    })?;
                (pool.clone(), pool, Dialect::Postgres)
            }
            Location::Sqlite(path) => {
                let path = absolute(path)?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Error::internal(format!(
                            "Cannot create directory {}: {e}",
                            parent.display()
                        ))
                    })?;
                }
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let reader = sqlite_pool(&url, 8).await?;
                let writer = sqlite_pool(&url, 1).await?;
                native = Some(native::Native::open(path));
                (reader, writer, Dialect::Sqlite)
            }
            Location::SqliteMemory => {
                // One shared in-memory database: a single connection serves reads and writes.
                let pool = sqlite_pool("sqlite::memory:", 1).await?;
                (pool.clone(), pool, Dialect::Sqlite)
            }
        };
        let store = Store {
            pool,
            writer,
            native,
            dialect,
            default_artifact_root: config
                .default_artifact_root
                .trim_end_matches('/')
                .to_string(),
        };
        migrate::run(&store).await?;
        store.ensure_default_experiment().await?;
        Ok(store)
    }

    /// Which SQL backend this store runs on.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes every connection (flushes SQLite's WAL on the last close).
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// The current schema version (number of applied migrations).
    pub async fn schema_version(&self) -> Result<i64, Error> {
        migrate::current_version(self).await
    }
}

async fn sqlite_pool(url: &str, max_connections: u32) -> Result<AnyPool, Error> {
    let options = AnyConnectOptions::from_str(url)
        .map_err(|e| Error::invalid_parameter(format!("Invalid SQLite URI: {e}")))?;
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(60))
        // A local file has no connection to lose: skip the ping on every acquire.
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // WAL: readers never block the writer. synchronous=NORMAL: a commit survives a
                // process crash; only an OS crash or power loss can lose the last transactions.
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA busy_timeout = 30000").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                // On a file, WAL checkpoints are the background thread's (see `native`).
                conn.execute(native::WAL_AUTOCHECKPOINT).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| Error::internal(format!("Cannot open SQLite database {url}: {e}")))
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Error::internal(format!("Cannot read current directory: {e}")))?;
    Ok(cwd.join(path))
}

/// Hides a password in a connection URL before it goes into a message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_conventions() {
        assert_eq!(
            parse_uri("sqlite:///keel.db").unwrap(),
            Location::Sqlite("keel.db".into())
        );
        assert_eq!(
            parse_uri("sqlite:////tmp/keel.db").unwrap(),
            Location::Sqlite("/tmp/keel.db".into())
        );
        assert_eq!(
            parse_uri("keel.db").unwrap(),
            Location::Sqlite("keel.db".into())
        );
        assert_eq!(
            parse_uri("sqlite::memory:").unwrap(),
            Location::SqliteMemory
        );
        assert_eq!(
            parse_uri("postgresql://postgres@127.0.0.1/keel").unwrap(),
            Location::Postgres("postgres://postgres@127.0.0.1/keel".into())
        );
        assert!(parse_uri("mysql://x").is_err());
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
