//! Backends every store test runs against: a fresh SQLite file always, and a
//! fresh PostgreSQL database when `KEEL_TEST_POSTGRES_URL` names a server (with
//! `CI=true` an unset or unreachable server fails the suite instead of skipping).

use std::str::FromStr;

use keel_store::{Dialect, Store, StoreConfig};
use sqlx::Executor;

/// A store under test plus what keeps it alive.
pub struct Backend {
    pub store: Store,
    pub _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let uri = format!("sqlite:///{}", dir.path().join("keel.db").display());
    let store = Store::open(StoreConfig::new(uri))
        .await
        .expect("open sqlite store");
    Backend {
        store,
        _dir: Some(dir),
    }
}

async fn postgres() -> Option<Backend> {
    let admin_url = match std::env::var("KEEL_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CI=true but KEEL_TEST_POSTGRES_URL is not set: the PostgreSQL suite must run in CI"
                );
            }
            eprintln!("KEEL_TEST_POSTGRES_URL unset: PostgreSQL backend not tested in this run");
            return None;
        }
    };
    sqlx::any::install_default_drivers();
    let options =
        sqlx::any::AnyConnectOptions::from_str(&admin_url).expect("valid KEEL_TEST_POSTGRES_URL");
    let admin = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is unreachable: {e}"));
    let name = format!("keel_test_{}", keel_core::ids::new_uuid());
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create test database");
    admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin_url);
    let store = Store::open(StoreConfig::new(format!("{base}/{name}")))
        .await
        .expect("open postgres store");
    assert_eq!(store.dialect(), Dialect::Postgres);
    Some(Backend { store, _dir: None })
}

/// Every backend this run can test.
pub async fn backends() -> Vec<Backend> {
    let mut all = vec![sqlite().await];
    if let Some(pg) = postgres().await {
        all.push(pg);
    }
    all
}
