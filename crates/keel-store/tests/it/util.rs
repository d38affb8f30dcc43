//! Backends every store test runs against: a fresh SQLite file always, and a
//! fresh PostgreSQL database when `KEEL_TEST_POSTGRES_URL` names a server (with
//! `CI=true` an unset or unreachable server fails the suite instead of skipping).

use keel_store::{Dialect, Store, StoreConfig};

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
    let uri = keel_store::testing::fresh_postgres_database().await?;
    let store = Store::open(StoreConfig::new(uri))
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
