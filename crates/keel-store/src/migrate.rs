//! Versioned, forward-only schema migrations.
//!
//! Each migration is written once with four type tokens (`{SERIAL}`, `{INT}`,
//! `{REAL}`, `{BLOB}`) rendered per dialect. `keel_schema` records every applied version
//! with a checksum of its text, so an edited migration is detected instead of
//! silently diverging; migrations run in a transaction, so a crash mid-way
//! leaves the previous version intact. A database newer than this binary is
//! refused rather than written to.

use keel_core::Error;

use crate::Store;
use crate::sql::{Dialect, Sql, db, get};

/// (version, name, SQL, what runs after the SQL in the same transaction).
/// Append only; never edit a released entry.
const MIGRATIONS: &[(i64, &str, &str, Option<Step>)] = &[
    (1, "tracking", TRACKING, None),
    (2, "registry", REGISTRY, None),
    (3, "users", USERS, None),
    (4, "monitor_verdicts", MONITOR_VERDICTS, None),
    (5, "sqlite_without_rowid", SQLITE_WITHOUT_ROWID, None),
    (6, "run_data", RUN_DATA, None),
    (7, "run_data_filled", "", Some(Step::FillRunData)),
];

/// A migration's work that SQL alone cannot do, run after its SQL.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Writes `runs.run_data` for the runs that lack it (written before
    /// migration 6 and not since), so their pages take the one-row-per-run
    /// path (`runs::fill_missing_run_data`).
    FillRunData,
}

/// Migrations that only SQLite runs; PostgreSQL records them as applied.
const SQLITE_ONLY: &[i64] = &[5];

const TRACKING: &str = r#"
CREATE TABLE experiments (
    experiment_id {SERIAL},
    name TEXT NOT NULL UNIQUE,
    artifact_location TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    creation_time {INT} NOT NULL,
    last_update_time {INT} NOT NULL
);
CREATE TABLE experiment_tags (
    experiment_id {INT} NOT NULL REFERENCES experiments(experiment_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (experiment_id, key)
);
CREATE TABLE runs (
    run_uuid TEXT PRIMARY KEY,
    experiment_id {INT} NOT NULL REFERENCES experiments(experiment_id),
    name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time {INT} NOT NULL,
    end_time {INT},
    artifact_uri TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    deleted_time {INT}
);
CREATE INDEX runs_experiment_start ON runs (experiment_id, start_time);
CREATE TABLE params (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);
CREATE INDEX params_key_value ON params (key, value);
CREATE TABLE tags (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);
CREATE TABLE metrics (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value {REAL} NOT NULL,
    timestamp {INT} NOT NULL,
    step {INT} NOT NULL,
    is_nan {INT} NOT NULL,
    PRIMARY KEY (run_uuid, key, timestamp, step, value, is_nan)
);
CREATE TABLE latest_metrics (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value {REAL} NOT NULL,
    timestamp {INT} NOT NULL,
    step {INT} NOT NULL,
    is_nan {INT} NOT NULL,
    PRIMARY KEY (run_uuid, key)
);
CREATE INDEX latest_metrics_key_value ON latest_metrics (key, value);
CREATE TABLE datasets (
    dataset_uuid TEXT PRIMARY KEY,
    experiment_id {INT} NOT NULL REFERENCES experiments(experiment_id),
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    source_type TEXT NOT NULL,
    source TEXT NOT NULL,
    schema TEXT,
    profile TEXT,
    UNIQUE (experiment_id, name, digest)
);
CREATE TABLE inputs (
    input_uuid TEXT PRIMARY KEY,
    source_type TEXT NOT NULL,
    source_id TEXT NOT NULL,
    destination_type TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    step {INT} NOT NULL DEFAULT 0,
    UNIQUE (source_type, source_id, destination_type, destination_id)
);
CREATE INDEX inputs_destination ON inputs (destination_type, destination_id);
CREATE TABLE input_tags (
    input_uuid TEXT NOT NULL REFERENCES inputs(input_uuid),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (input_uuid, key)
);
CREATE TABLE logged_models (
    model_id TEXT PRIMARY KEY,
    experiment_id {INT} NOT NULL REFERENCES experiments(experiment_id),
    name TEXT NOT NULL,
    artifact_location TEXT NOT NULL,
    creation_timestamp_ms {INT} NOT NULL,
    last_updated_timestamp_ms {INT} NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    model_type TEXT,
    source_run_id TEXT,
    lifecycle_stage TEXT NOT NULL
);
CREATE INDEX logged_models_experiment ON logged_models (experiment_id, creation_timestamp_ms);
CREATE TABLE logged_model_tags (
    model_id TEXT NOT NULL REFERENCES logged_models(model_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE logged_model_params (
    model_id TEXT NOT NULL REFERENCES logged_models(model_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE logged_model_metrics (
    model_id TEXT NOT NULL REFERENCES logged_models(model_id),
    key TEXT NOT NULL,
    value {REAL} NOT NULL,
    timestamp {INT} NOT NULL,
    step {INT} NOT NULL,
    is_nan {INT} NOT NULL,
    run_id TEXT NOT NULL,
    dataset_name TEXT NOT NULL DEFAULT '',
    dataset_digest TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (model_id, key, timestamp, step, run_id, dataset_name, dataset_digest)
);
CREATE TABLE run_outputs (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    model_id TEXT NOT NULL,
    step {INT} NOT NULL,
    PRIMARY KEY (run_uuid, model_id)
);
"#;

const REGISTRY: &str = r#"
CREATE TABLE registered_models (
    name TEXT PRIMARY KEY,
    creation_timestamp {INT} NOT NULL,
    last_updated_timestamp {INT} NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE registered_model_tags (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, key)
);
CREATE TABLE model_versions (
    name TEXT NOT NULL,
    version {INT} NOT NULL,
    creation_timestamp {INT} NOT NULL,
    last_updated_timestamp {INT} NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    user_id TEXT NOT NULL DEFAULT '',
    current_stage TEXT NOT NULL,
    source TEXT NOT NULL,
    run_id TEXT,
    run_link TEXT,
    model_id TEXT,
    status TEXT NOT NULL,
    signature TEXT,
    lineage TEXT,
    gate_results TEXT,
    PRIMARY KEY (name, version)
);
CREATE INDEX model_versions_run ON model_versions (run_id);
CREATE TABLE model_version_tags (
    name TEXT NOT NULL,
    version {INT} NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, version, key)
);
CREATE TABLE registered_model_aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version {INT} NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE registry_audit (
    id {SERIAL},
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    from_version {INT},
    to_version {INT},
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    cause TEXT NOT NULL,
    timestamp {INT} NOT NULL,
    registry_version {INT} NOT NULL
);
CREATE INDEX registry_audit_name ON registry_audit (name, id);
CREATE INDEX registry_audit_version ON registry_audit (registry_version);
CREATE TABLE registry_state (
    id {INT} PRIMARY KEY,
    version {INT} NOT NULL
);
INSERT INTO registry_state (id, version) VALUES (1, 0)
"#;

/// The verdicts of `keel monitor watch`, one row per evaluated window, so
/// the team (and the UI) can read what monitoring decided and when.
const MONITOR_VERDICTS: &str = r#"
CREATE TABLE monitor_verdicts (
    id {SERIAL},
    model TEXT NOT NULL,
    window_start {INT},
    row_count {INT} NOT NULL,
    drifted {INT} NOT NULL,
    verdict TEXT NOT NULL,
    created_at {INT} NOT NULL,
    user_id TEXT NOT NULL
);
CREATE INDEX monitor_verdicts_model ON monitor_verdicts (model, id)
"#;

/// On SQLite, the run side tables keyed by (run, key, ...) become `WITHOUT
/// ROWID` tables: the primary key's B-tree holds the whole row, so an insert
/// writes one B-tree instead of a rowid table plus its key index, and a read
/// by key needs no second lookup. Same columns, keys and indexes as before.
const SQLITE_WITHOUT_ROWID: &str = r#"
CREATE TABLE metrics_v5 (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value REAL NOT NULL,
    timestamp INTEGER NOT NULL,
    step INTEGER NOT NULL,
    is_nan INTEGER NOT NULL,
    PRIMARY KEY (run_uuid, key, timestamp, step, value, is_nan)
) WITHOUT ROWID;
INSERT INTO metrics_v5 SELECT run_uuid, key, value, timestamp, step, is_nan FROM metrics;
DROP TABLE metrics;
ALTER TABLE metrics_v5 RENAME TO metrics;
CREATE TABLE latest_metrics_v5 (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value REAL NOT NULL,
    timestamp INTEGER NOT NULL,
    step INTEGER NOT NULL,
    is_nan INTEGER NOT NULL,
    PRIMARY KEY (run_uuid, key)
) WITHOUT ROWID;
INSERT INTO latest_metrics_v5 SELECT run_uuid, key, value, timestamp, step, is_nan FROM latest_metrics;
DROP TABLE latest_metrics;
ALTER TABLE latest_metrics_v5 RENAME TO latest_metrics;
CREATE INDEX latest_metrics_key_value ON latest_metrics (key, value);
CREATE TABLE params_v5 (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
) WITHOUT ROWID;
INSERT INTO params_v5 SELECT run_uuid, key, value FROM params;
DROP TABLE params;
ALTER TABLE params_v5 RENAME TO params;
CREATE INDEX params_key_value ON params (key, value);
CREATE TABLE tags_v5 (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
) WITHOUT ROWID;
INSERT INTO tags_v5 SELECT run_uuid, key, value FROM tags;
DROP TABLE tags;
ALTER TABLE tags_v5 RENAME TO tags
"#;

/// A run's latest metrics, params and tags in one value on its row, kept by
/// every write to them (see `run_data.rs`); NULL for runs written before.
const RUN_DATA: &str = "ALTER TABLE runs ADD COLUMN run_data {BLOB}";

/// Users, their grants and their access tokens (issue 13). Passwords and
/// tokens are stored only as hashes; a user's grants and tokens go with it.
const USERS: &str = r#"
CREATE TABLE users (
    id {SERIAL},
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin {INT} NOT NULL,
    created_at {INT} NOT NULL
);
CREATE TABLE user_grants (
    user_id {INT} NOT NULL REFERENCES users(id),
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    permission TEXT NOT NULL,
    PRIMARY KEY (user_id, resource_type, resource_id)
);
CREATE INDEX user_grants_resource ON user_grants (resource_type, resource_id);
CREATE TABLE access_tokens (
    id {SERIAL},
    user_id {INT} NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at {INT} NOT NULL,
    expires_at {INT}
);
CREATE INDEX access_tokens_user ON access_tokens (user_id)
"#;

fn render(dialect: Dialect, sql: &str) -> String {
    let (serial, int, real, blob) = match dialect {
        Dialect::Sqlite => (
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "INTEGER",
            "REAL",
            "BLOB",
        ),
        Dialect::Postgres => (
            "BIGSERIAL PRIMARY KEY",
            "BIGINT",
            "DOUBLE PRECISION",
            "BYTEA",
        ),
    };
    sql.replace("{SERIAL}", serial)
        .replace("{INT}", int)
        .replace("{REAL}", real)
        .replace("{BLOB}", blob)
}

/// FNV-1a over the migration text: enough to notice an edited migration.
fn checksum(text: &str) -> i64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    (hash >> 1) as i64
}

/// Applies every pending migration, each in its own transaction.
pub(crate) async fn run(store: &Store) -> Result<(), Error> {
    let create = "CREATE TABLE IF NOT EXISTS keel_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
                  checksum BIGINT NOT NULL, applied_at BIGINT NOT NULL)";
    sqlx::query(create)
        .execute(&store.writer)
        .await
        .map_err(db("creating keel_schema"))?;

    let rows = sqlx::query("SELECT version, name, checksum FROM keel_schema ORDER BY version")
        .fetch_all(&store.writer)
        .await
        .map_err(db("reading keel_schema"))?;
    let mut applied = Vec::new();
    for row in &rows {
        applied.push((
            get::<i64>(row, "version")?,
            get::<String>(row, "name")?,
            get::<i64>(row, "checksum")?,
        ));
    }
    let known = MIGRATIONS.len() as i64;
    if let Some((version, name, _)) = applied.iter().find(|(v, _, _)| *v > known) {
        return Err(Error::internal(format!(
            "The metadata store has schema version {version} ('{name}'), newer than this keel binary \
             supports ({known}). Upgrade keel."
        )));
    }
    for (version, name, sql, step) in MIGRATIONS {
        if let Some((_, _, stored)) = applied.iter().find(|(v, _, _)| v == version) {
            if *stored != checksum(sql) {
                return Err(Error::internal(format!(
                    "Migration {version} ('{name}') differs from the one applied to this database"
                )));
            }
            continue;
        }
        let mut tx = store
            .writer
            .begin()
            .await
            .map_err(db("starting migration"))?;
        let skipped = store.dialect != Dialect::Sqlite && SQLITE_ONLY.contains(version);
        let text = if skipped {
            String::new()
        } else {
            render(store.dialect, sql)
        };
        for statement in text.split(';') {
            let statement = statement.trim();
            if statement.is_empty() {
                continue;
            }
            Sql::new(statement)
                .query(store.dialect)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    Error::internal(format!(
                        "Migration {version} ('{name}') failed: {e}\nin: {statement}"
                    ))
                })?;
        }
        match step {
            Some(Step::FillRunData) => {
                let filled = crate::runs::fill_missing_run_data(&mut *tx).await?;
                tracing::info!(runs = filled, "filled the stored data of older runs");
            }
            None => {}
        }
        let mut insert =
            Sql::new("INSERT INTO keel_schema (version, name, checksum, applied_at) VALUES (");
        insert
            .bind(*version)
            .push(", ")
            .bind(*name)
            .push(", ")
            .bind(checksum(sql))
            .push(", ")
            .bind(keel_core::now_millis())
            .push(")");
        insert
            .query(store.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("recording migration"))?;
        tx.commit().await.map_err(db("committing migration"))?;
        tracing::info!(version = *version, name = *name, "applied schema migration");
    }
    Ok(())
}

pub(crate) async fn current_version(store: &Store) -> Result<i64, Error> {
    let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM keel_schema")
        .fetch_one(&store.pool)
        .await
        .map_err(db("reading schema version"))?;
    get::<i64>(&row, "v")
}

#[cfg(test)]
mod tests {
    use keel_core::{Metric, Param, Tag};

    use crate::{CreateRun, Store, StoreConfig};

    async fn execute(store: &Store, sql: &str) {
        crate::sql::Sql::new(sql)
            .query(crate::sql::Dialect::Sqlite)
            .execute(&store.writer)
            .await
            .unwrap();
    }

    /// A SQLite store written before migration 5 (rowid side tables) keeps
    /// every row when it moves them to `WITHOUT ROWID` tables, and its runs
    /// read the same, their `run_data` written by migration 7.
    #[tokio::test]
    async fn side_tables_move_to_without_rowid_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().join("keel.db").display().to_string();
        let store = Store::open(StoreConfig::new(uri.clone())).await.unwrap();
        let experiment = store.create_experiment("e", None, &[]).await.unwrap();
        let run = store
            .create_run(CreateRun {
                experiment_id: experiment,
                user_id: "ana".into(),
                run_name: Some("r".into()),
                start_time: Some(1),
                tags: Vec::new(),
            })
            .await
            .unwrap();
        let id = run.info.run_id;
        let metrics = vec![Metric::new("m", 0.5, 1, 0), Metric::new("m", 0.7, 2, 1)];
        let params = vec![Param {
            key: "p".into(),
            value: "1".into(),
        }];
        store
            .log_batch(&id, metrics, params, vec![Tag::new("t", "v")])
            .await
            .unwrap();
        // Back to the layout of version 4: plain rowid tables with the same rows.
        for table in ["metrics", "latest_metrics", "params", "tags"] {
            execute(
                &store,
                &format!("ALTER TABLE {table} RENAME TO old_{table}"),
            )
            .await;
            execute(
                &store,
                &format!("CREATE TABLE {table} AS SELECT * FROM old_{table}"),
            )
            .await;
            execute(&store, &format!("DROP TABLE old_{table}")).await;
        }
        // ... and of before migration 6 (no `runs.run_data`).
        execute(&store, "ALTER TABLE runs DROP COLUMN run_data").await;
        execute(&store, "DELETE FROM keel_schema WHERE version >= 5").await;
        store.close().await;
        drop(store);

        let store = Store::open(StoreConfig::new(uri)).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 7);
        // Migration 7 wrote the run's data on its row.
        let (missing,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM runs WHERE run_data IS NULL")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(missing, 0);
        for table in ["metrics", "latest_metrics", "params", "tags"] {
            let (sql,): (String,) =
                sqlx::query_as("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1")
                    .bind(table)
                    .fetch_one(&store.pool)
                    .await
                    .unwrap();
            assert!(sql.contains("WITHOUT ROWID"), "{table}: {sql}");
        }
        let run = store.get_run(&id).await.unwrap();
        let latest: Vec<(String, f64)> = run
            .data
            .metrics
            .iter()
            .map(|m| (m.key.clone(), m.value))
            .collect();
        assert_eq!(latest, vec![("m".to_string(), 0.7)]);
        assert_eq!(run.data.params.len(), 1);
        assert!(run.data.tags.iter().any(|t| t.key == "t" && t.value == "v"));
        let history = store
            .get_metric_history(&id, "m", None, None)
            .await
            .unwrap();
        assert_eq!(history.items.len(), 2);
    }
}
