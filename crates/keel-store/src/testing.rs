//! For the test suites of keel's crates: a fresh PostgreSQL database per
//! test, on the server `KEEL_TEST_POSTGRES_URL` names (one owner of the
//! rule: with `CI=true`, an unset or unreachable server fails the test).

use std::str::FromStr;

use sqlx::Executor;

/// The URI of a new, empty database (`keel_test_<uuid>`), or `None` when
/// `KEEL_TEST_POSTGRES_URL` is unset outside CI. Panics when the server is
/// unreachable, or unset with `CI=true`: a test suite must not pass by skipping.
pub async fn fresh_postgres_database() -> Option<String> {
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
    Some(format!("{base}/{name}"))
}
