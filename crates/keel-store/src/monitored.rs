//! The models `keel monitor watch` has recorded verdicts for, each with its
//! newest verdict's headline: the web UI's monitoring overview. A read of
//! the monitor verdicts table only (written by [`crate::Store::record_verdict`]).

use keel_core::Error;

use crate::Store;
use crate::sql::{Sql, db, get};

/// One monitored model and its newest verdict's headline.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoredModel {
    pub model: String,
    /// Verdicts recorded for it.
    pub verdicts: i64,
    /// When the newest was recorded (Unix ms).
    pub last_recorded: i64,
    /// Whether the newest verdict found the dataset drifted.
    pub drifted: bool,
    /// Rows in the newest verdict's window.
    pub rows: i64,
}

impl Store {
    /// The monitored models, the most recently evaluated first, at most `limit`.
    pub async fn monitored_models(&self, limit: i64) -> Result<Vec<MonitoredModel>, Error> {
        let mut sql = Sql::new(
            "SELECT v.model AS model, c.n AS n, v.created_at AS created_at, v.drifted AS drifted, \
             v.row_count AS row_count FROM monitor_verdicts v JOIN \
             (SELECT model, COUNT(*) AS n, MAX(id) AS last_id FROM monitor_verdicts GROUP BY model) c \
             ON v.id = c.last_id ORDER BY v.id DESC LIMIT ",
        );
        sql.bind(limit.clamp(1, 10_000));
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading monitored models"))?;
        rows.iter()
            .map(|row| {
                Ok(MonitoredModel {
                    model: get(row, "model")?,
                    verdicts: get(row, "n")?,
                    last_recorded: get(row, "created_at")?,
                    drifted: get::<i64>(row, "drifted")? != 0,
                    rows: get(row, "row_count")?,
                })
            })
            .collect()
    }
}
