//! The registry's aliases: set, promote (the gate check inside the move), delete, resolve, roll back.

use super::*;

impl Store {
    // ----------------------------------------------------------------- aliases

    /// Points `alias` at `version` atomically and appends the move to the audit log.
    pub async fn set_registered_model_alias(
        &self,
        name: &str,
        alias: &str,
        version: i64,
        actor: &Actor,
    ) -> Result<AuditEntry, Error> {
        validate_alias(alias)?;
        self.move_alias(name, alias, Some(version), "set_alias", actor, None)
            .await
    }

    /// Points `alias` at `version` if the version's recorded gates passed
    /// (keel-core's promotion rule), or when `force` comes with a reason. The
    /// gate results are re-read inside the transaction that moves the alias,
    /// so gates recorded concurrently cannot slip past the check.
    pub async fn promote(
        &self,
        name: &str,
        alias: &str,
        version: i64,
        force: bool,
        actor: &Actor,
    ) -> Result<AuditEntry, Error> {
        validate_alias(alias)?;
        self.move_alias(
            name,
            alias,
            Some(version),
            "set_alias",
            actor,
            Some(Promotion { force }),
        )
        .await
    }

    /// Removes an alias (audited).
    pub async fn delete_registered_model_alias(
        &self,
        name: &str,
        alias: &str,
        actor: &Actor,
    ) -> Result<AuditEntry, Error> {
        self.move_alias(name, alias, None, "delete_alias", actor, None)
            .await
    }

    pub(super) async fn move_alias(
        &self,
        name: &str,
        alias: &str,
        version: Option<i64>,
        action: &str,
        actor: &Actor,
        promotion: Option<Promotion>,
    ) -> Result<AuditEntry, Error> {
        self.registered_model_exists(name).await?;
        if let Some(version) = version {
            self.get_model_version(name, version).await?;
        }
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        let mut current = Sql::new("SELECT version FROM registered_model_aliases WHERE name = ");
        current.bind(name).push(" AND alias = ").bind(alias);
        let from_version: Option<i64> = match current
            .query(self.dialect)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("reading alias"))?
        {
            Some(row) => Some(get(&row, "version")?),
            None => None,
        };
        match version {
            Some(version) => {
                // The version may have been deleted since the check above: re-check inside the transaction.
                let mut exists =
                    Sql::new("SELECT version, gate_results FROM model_versions WHERE name = ");
                exists.bind(name).push(" AND version = ").bind(version);
                let Some(row) = exists
                    .query(self.dialect)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("reading version"))?
                else {
                    return Err(Error::not_found(format!(
                        "Model Version (name={name}, version={version}) not found"
                    )));
                };
                if let Some(promotion) = promotion {
                    let gates: Option<String> = get(&row, "gate_results")?;
                    keel_core::promotion::check_gate_text(
                        name,
                        version,
                        gates.as_deref(),
                        promotion.force,
                        &actor.reason,
                    )?;
                }
                let mut upsert = Sql::new(
                    "INSERT INTO registered_model_aliases (name, alias, version) VALUES (",
                );
                upsert
                    .bind(name)
                    .push(", ")
                    .bind(alias)
                    .push(", ")
                    .bind(version)
                    .push(") ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version");
                upsert
                    .query(self.dialect)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("setting alias"))?;
            }
            None => {
                if from_version.is_none() {
                    return Err(Error::not_found(format!(
                        "Registered model alias {alias} not found for model {name}."
                    )));
                }
                let mut delete = Sql::new("DELETE FROM registered_model_aliases WHERE name = ");
                delete.bind(name).push(" AND alias = ").bind(alias);
                delete
                    .query(self.dialect)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("deleting alias"))?;
            }
        }
        let audit = Audit {
            name,
            action,
            target: alias,
            from_version,
            to_version: version,
        };
        Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        let mut touch = Sql::new("UPDATE registered_models SET last_updated_timestamp = ");
        touch.bind(now_millis()).push(" WHERE name = ").bind(name);
        touch
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("touching registered model"))?;
        tx.commit().await.map_err(db("committing alias move"))?;
        let mut sql = Sql::new(
            "SELECT id, name, action, target, from_version, to_version, user_id, reason, cause, timestamp, \
             registry_version FROM registry_audit WHERE registry_version = ",
        );
        sql.bind(registry_version).push(" ORDER BY id DESC LIMIT 1");
        let row = sql
            .query(self.dialect)
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading audit entry"))?;
        audit_from_row(&row)
    }

    /// Resolves `NAME@ALIAS` to its version.
    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, Error> {
        let mut sql = Sql::new("SELECT version FROM registered_model_aliases WHERE name = ");
        sql.bind(name).push(" AND alias = ").bind(alias);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading alias"))?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "Registered model alias {alias} not found for model {name}."
                ))
            })?;
        self.get_model_version(name, get(&row, "version")?).await
    }

    /// Moves `alias` back to its previous holder, taken from the audit log (like `cd -`:
    /// rolling back twice returns to where it started).
    pub async fn rollback_alias(
        &self,
        name: &str,
        alias: &str,
        actor: &Actor,
    ) -> Result<AuditEntry, Error> {
        let current = self.get_model_version_by_alias(name, alias).await?.version;
        let history = self.registry_audit(Some(name), 10_000).await?;
        let previous = history
            .iter()
            .filter(|e| e.target == alias && e.to_version == Some(current))
            .map(|e| e.from_version)
            .next()
            .flatten()
            .ok_or_else(|| {
                Error::invalid_state(format!(
                    "Alias '{alias}' of model '{name}' has no previous holder to roll back to"
                ))
            })?;
        self.get_model_version(name, previous).await.map_err(|_| {
            Error::invalid_state(format!(
                "The previous holder of '{alias}' (version {previous}) no longer exists; promote a version explicitly"
            ))
        })?;
        self.move_alias(name, alias, Some(previous), "rollback", actor, None)
            .await
    }
}
