//! The verdicts of `keel monitor watch`, one row per evaluation, newest
//! last; read back newest first for the API, the CLI and the UI.

use keel_core::{Error, MonitorVerdict, now_millis};
use sqlx::any::AnyRow;

use crate::Store;
use crate::sql::{Sql, db, get};

/// Longest verdict text kept (a summary, not the whole report).
pub const MAX_VERDICT_TEXT: usize = 64 * 1024;

/// What a watcher records.
#[derive(Debug, Clone, Default)]
pub struct NewVerdict {
    pub model: String,
    pub window_start: Option<i64>,
    pub rows: i64,
    pub drifted: bool,
    pub verdict: String,
}

impl Store {
    /// Records a verdict under `user`.
    pub async fn record_verdict(
        &self,
        verdict: &NewVerdict,
        user: &str,
    ) -> Result<MonitorVerdict, Error> {
        keel_core::validation::validate_length("model", &verdict.model, 256)?;
        if verdict.model.is_empty() {
            return Err(Error::invalid_parameter("'model' is required"));
        }
        keel_core::validation::validate_length("verdict", &verdict.verdict, MAX_VERDICT_TEXT)?;
        if serde_json::from_str::<serde_json::Value>(&verdict.verdict).is_err() {
            return Err(Error::invalid_parameter("'verdict' must be JSON text"));
        }
        let created_at = now_millis();
        let mut sql = Sql::new(
            "INSERT INTO monitor_verdicts (model, window_start, row_count, drifted, verdict, created_at, user_id) VALUES (",
        );
        sql.bind(verdict.model.as_str())
            .push(", ")
            .bind(verdict.window_start)
            .push(", ")
            .bind(verdict.rows.max(0))
            .push(", ")
            .bind(i64::from(verdict.drifted))
            .push(", ")
            .bind(verdict.verdict.as_str())
            .push(", ")
            .bind(created_at)
            .push(", ")
            .bind(user)
            .push(") RETURNING id");
        let row = sql
            .query(self.dialect)
            .fetch_one(&self.writer)
            .await
            .map_err(db("recording a monitor verdict"))?;
        Ok(MonitorVerdict {
            id: get(&row, "id")?,
            model: verdict.model.clone(),
            window_start: verdict.window_start,
            rows: verdict.rows.max(0),
            drifted: verdict.drifted,
            verdict: verdict.verdict.clone(),
            created_at,
            user: user.to_string(),
        })
    }

    /// The newest `limit` verdicts of `model` (of every model when None), newest first.
    pub async fn monitor_verdicts(
        &self,
        model: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MonitorVerdict>, Error> {
        let mut sql = Sql::new(
            "SELECT id, model, window_start, row_count, drifted, verdict, created_at, user_id FROM monitor_verdicts",
        );
        if let Some(model) = model {
            sql.push(" WHERE model = ").bind(model);
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .bind(limit.clamp(1, 10_000));
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading monitor verdicts"))?;
        rows.iter().map(verdict_from_row).collect()
    }
}

fn verdict_from_row(row: &AnyRow) -> Result<MonitorVerdict, Error> {
    Ok(MonitorVerdict {
        id: get(row, "id")?,
        model: get(row, "model")?,
        window_start: get(row, "window_start")?,
        rows: get(row, "row_count")?,
        drifted: get::<i64>(row, "drifted")? != 0,
        verdict: get(row, "verdict")?,
        created_at: get(row, "created_at")?,
        user: get(row, "user_id")?,
    })
}
