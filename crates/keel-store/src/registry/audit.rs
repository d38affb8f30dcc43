//! The registry's the audit log and change feed, and where `models:/` URIs and versions' files resolve.

use super::*;

impl Store {
    /// Audit entries, newest first (all models when `name` is `None`).
    pub async fn registry_audit(
        &self,
        name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, Error> {
        let mut sql = Sql::new(
            "SELECT id, name, action, target, from_version, to_version, user_id, reason, cause, timestamp, \
             registry_version FROM registry_audit",
        );
        if let Some(name) = name {
            sql.push(" WHERE name = ").bind(name);
        }
        sql.push(" ORDER BY id DESC LIMIT ").bind(limit.max(1));
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the audit log"))?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Audit entries produced after registry version `since`, oldest first.
    pub async fn registry_changes_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, Error> {
        let mut sql = Sql::new(
            "SELECT id, name, action, target, from_version, to_version, user_id, reason, cause, timestamp, \
             registry_version FROM registry_audit WHERE registry_version > ",
        );
        sql.bind(since)
            .push(" ORDER BY id ASC LIMIT ")
            .bind(limit.max(1));
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading registry changes"))?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Resolves a registered model URI (keel-core's [`ModelUri`]:
    /// `models:/NAME/VERSION`, `@ALIAS`, `/latest`, `/STAGE`) to a version.
    pub async fn resolve_model_uri(&self, uri: &str) -> Result<ModelVersion, Error> {
        let (name, stage) = match ModelUri::parse(uri)? {
            ModelUri::Version { name, version } => {
                return self.get_model_version(&name, version).await;
            }
            ModelUri::Alias { name, alias } => {
                return self.get_model_version_by_alias(&name, &alias).await;
            }
            ModelUri::LoggedModel { model_id } => {
                return Err(Error::invalid_parameter(format!(
                    "Model URI '{uri}' names logged model {model_id}, not a registered model version"
                )));
            }
            ModelUri::Latest { name } => (name, None),
            ModelUri::Stage { name, stage } => (name, Some(stage)),
        };
        let model = self.get_registered_model(&name).await?;
        let newest = model
            .latest_versions
            .into_iter()
            .filter(|v| stage.is_none_or(|s| v.current_stage == s))
            .max_by_key(|v| v.version)
            .ok_or_else(|| Error::not_found(format!("Model URI '{uri}' matches no version")))?;
        self.get_model_version(&name, newest.version).await
    }

    /// The artifact URI holding a version's files: a logged model's
    /// artifact location (`models:/m-…` source or `model_id`), a run's
    /// artifact path (`runs:/RUN/PATH` source), or the source as given.
    pub async fn version_artifact_uri(&self, version: &ModelVersion) -> Result<String, Error> {
        let logged = match (&version.model_id, ModelUri::parse(&version.source)) {
            (Some(model_id), _) => Some(model_id.clone()),
            (None, Ok(ModelUri::LoggedModel { model_id })) => Some(model_id),
            _ => None,
        };
        if let Some(model_id) = logged {
            return Ok(self.get_logged_model(&model_id).await?.artifact_location);
        }
        if let Some(run_uri) = RunUri::parse(&version.source) {
            let run_uri = run_uri?;
            let run = self.get_run_info(&run_uri.run_id).await?;
            return Ok(run_uri.under(&run.artifact_uri));
        }
        Ok(version.source.clone())
    }
}
