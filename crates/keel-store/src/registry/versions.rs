//! The registry's model versions: create (numbered max + 1), read, update, gates, delete, search, stages, tags.

use super::*;

impl Store {
    // ---------------------------------------------------------------- versions

    /// Registers a new version (numbered max + 1); creates the registered model if needed.
    pub async fn create_model_version(
        &self,
        request: CreateModelVersion,
        actor: &Actor,
    ) -> Result<ModelVersion, Error> {
        validate_model_name(&request.name)?;
        if request.source.trim().is_empty() {
            return Err(Error::invalid_parameter(
                "Missing value for required parameter 'source'",
            ));
        }
        for tag in &request.tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::validate_length("tag value", &tag.value, MAX_MODEL_TAG_VALUE)?;
        }
        let mut request = request;
        if let Some(run_id) = request.run_id.as_deref().filter(|r| !r.is_empty()) {
            let run = self.get_run(run_id).await?;
            if request.lineage.is_none() {
                request.lineage = Some(lineage_of(&run).to_string());
            }
        }
        let now = now_millis();
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        let mut ensure = Sql::new(
            "INSERT INTO registered_models (name, creation_timestamp, last_updated_timestamp, description) VALUES (",
        );
        ensure
            .bind(request.name.as_str())
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(", '') ON CONFLICT (name) DO NOTHING");
        ensure
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("creating registered model"))?;
        let mut next = Sql::new(
            "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM model_versions WHERE name = ",
        );
        next.bind(request.name.as_str());
        let row = next
            .query(self.dialect)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("numbering version"))?;
        let version: i64 = get(&row, "next")?;
        let mut insert = Sql::new(
            "INSERT INTO model_versions (name, version, creation_timestamp, last_updated_timestamp, description, \
             user_id, current_stage, source, run_id, run_link, model_id, status, signature, lineage, gate_results) \
             VALUES (",
        );
        insert
            .bind(request.name.as_str())
            .push(", ")
            .bind(version)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(request.description.unwrap_or_default())
            .push(", ")
            .bind(request.user_id.as_str())
            .push(", 'None', ")
            .bind(request.source.as_str())
            .push(", ")
            .bind(request.run_id.filter(|r| !r.is_empty()))
            .push(", ")
            .bind(request.run_link.filter(|r| !r.is_empty()))
            .push(", ")
            .bind(request.model_id.filter(|r| !r.is_empty()))
            .push(", 'READY', ")
            .bind(request.signature)
            .push(", ")
            .bind(request.lineage)
            .push(", ")
            .bind(request.gate_results)
            .push(")");
        insert
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("creating model version"))?;
        for tag in &request.tags {
            VERSION_TAGS
                .upsert(
                    &mut *tx,
                    &[request.name.as_str().into(), version.into()],
                    [(tag.key.as_str(), tag.value.as_str())],
                )
                .await?;
        }
        let mut touch = Sql::new("UPDATE registered_models SET last_updated_timestamp = ");
        touch
            .bind(now)
            .push(" WHERE name = ")
            .bind(request.name.as_str());
        touch
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("touching registered model"))?;
        let audit = Audit {
            name: &request.name,
            action: "create_version",
            target: "",
            from_version: None,
            to_version: Some(version),
        };
        Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        tx.commit().await.map_err(db("committing model version"))?;
        self.get_model_version(&request.name, version).await
    }

    /// Reads one version with its tags and aliases.
    pub async fn get_model_version(&self, name: &str, version: i64) -> Result<ModelVersion, Error> {
        let mut sql = Sql::new(&format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions mv WHERE mv.name = "
        ));
        sql.bind(name).push(" AND mv.version = ").bind(version);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading model version"))?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "Model Version (name={name}, version={version}) not found"
                ))
            })?;
        let mut versions = vec![version_from_row(&row)?];
        self.fill_versions(&mut versions).await?;
        versions
            .pop()
            .ok_or_else(|| Error::internal("model version vanished while loading"))
    }

    pub(super) async fn fill_versions(&self, versions: &mut [ModelVersion]) -> Result<(), Error> {
        if versions.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let names: Vec<String> = names.into_iter().map(str::to_string).collect();
        let position = |versions: &[ModelVersion], name: &str, version: i64| {
            versions
                .iter()
                .position(|v| v.name == name && v.version == version)
        };
        for chunk in names.chunks(500) {
            let mut sql =
                Sql::new("SELECT name, version, key, value FROM model_version_tags WHERE name IN ");
            sql.bind_list(chunk.iter().map(String::as_str))
                .push(" ORDER BY key");
            for row in sql
                .query(self.dialect)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading version tags"))?
            {
                let name: String = get(&row, "name")?;
                if let Some(i) = position(versions, &name, get(&row, "version")?) {
                    versions[i].tags.push(Tag::new(
                        get::<String>(&row, "key")?,
                        get::<String>(&row, "value")?,
                    ));
                }
            }
            let mut sql = Sql::new(
                "SELECT name, alias, version FROM registered_model_aliases WHERE name IN ",
            );
            sql.bind_list(chunk.iter().map(String::as_str))
                .push(" ORDER BY alias");
            for row in sql
                .query(self.dialect)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading aliases"))?
            {
                let name: String = get(&row, "name")?;
                if let Some(i) = position(versions, &name, get(&row, "version")?) {
                    versions[i].aliases.push(get(&row, "alias")?);
                }
            }
        }
        Ok(())
    }

    /// Updates a version's description.
    pub async fn update_model_version(
        &self,
        name: &str,
        version: i64,
        description: &str,
    ) -> Result<ModelVersion, Error> {
        self.get_model_version(name, version).await?;
        let mut sql = Sql::new("UPDATE model_versions SET description = ");
        sql.bind(description)
            .push(", last_updated_timestamp = ")
            .bind(now_millis())
            .push(" WHERE name = ")
            .bind(name)
            .push(" AND version = ")
            .bind(version);
        sql.query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("updating model version"))?;
        self.get_model_version(name, version).await
    }

    /// Records the gate results of a version (JSON `{"passed": bool, ...}`), read by promotion checks.
    pub async fn set_model_version_gates(
        &self,
        name: &str,
        version: i64,
        gate_results: &str,
    ) -> Result<(), Error> {
        serde_json::from_str::<serde_json::Value>(gate_results)
            .map_err(|e| Error::invalid_parameter(format!("gate results must be JSON: {e}")))?;
        self.get_model_version(name, version).await?;
        let mut sql = Sql::new("UPDATE model_versions SET gate_results = ");
        sql.bind(gate_results)
            .push(" WHERE name = ")
            .bind(name)
            .push(" AND version = ")
            .bind(version);
        sql.query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("recording gate results"))?;
        Ok(())
    }

    /// Deletes a version; aliases that pointed at it are removed and audited.
    pub async fn delete_model_version(
        &self,
        name: &str,
        version: i64,
        actor: &Actor,
    ) -> Result<(), Error> {
        self.get_model_version(name, version).await?;
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        let mut aliases = Sql::new("SELECT alias FROM registered_model_aliases WHERE name = ");
        aliases.bind(name).push(" AND version = ").bind(version);
        let rows = aliases
            .query(self.dialect)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading aliases"))?;
        for row in &rows {
            let alias: String = get(row, "alias")?;
            let audit = Audit {
                name,
                action: "delete_alias",
                target: &alias,
                from_version: Some(version),
                to_version: None,
            };
            Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        }
        for table in [
            "registered_model_aliases",
            "model_version_tags",
            "model_versions",
        ] {
            let mut sql = Sql::new(&format!("DELETE FROM {table} WHERE name = "));
            sql.bind(name).push(" AND version = ").bind(version);
            sql.query(self.dialect)
                .execute(&mut *tx)
                .await
                .map_err(db("deleting model version"))?;
        }
        let audit = Audit {
            name,
            action: "delete_version",
            target: "",
            from_version: Some(version),
            to_version: None,
        };
        Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        tx.commit().await.map_err(db("committing version delete"))?;
        Ok(())
    }

    /// Searches model versions (`name = ...`, `run_id = ...`, `tags.k = ...`).
    pub async fn search_model_versions(
        &self,
        filter_string: Option<&str>,
        max_results: i64,
        order_by: &[String],
        page_token: Option<&str>,
    ) -> Result<Page<ModelVersion>, Error> {
        if !(1..=200_000).contains(&max_results) {
            return Err(Error::invalid_parameter(format!(
                "Invalid value {max_results} for parameter 'max_results'"
            )));
        }
        let offset = page_token::decode(page_token)?;
        let mut sql = Sql::new(&format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions mv WHERE 1 = 1"
        ));
        search::push_search(
            &VERSION_SEARCH,
            self.dialect,
            filter_string,
            order_by,
            "mv.name ASC, mv.version DESC",
            max_results,
            offset,
            &mut sql,
        )?;
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("searching model versions"))?;
        let mut items = rows
            .iter()
            .map(version_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = page_token::truncate_page(&mut items, max_results, offset);
        self.fill_versions(&mut items).await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Moves a version to a legacy stage, optionally archiving the others in that stage.
    pub async fn transition_model_version_stage(
        &self,
        name: &str,
        version: i64,
        stage: Stage,
        archive_existing_versions: bool,
        actor: &Actor,
    ) -> Result<ModelVersion, Error> {
        self.transition_stage_checked(
            name,
            version,
            stage,
            archive_existing_versions,
            false,
            actor,
        )
        .await
    }

    /// [`Store::transition_model_version_stage`]; with `gated`, the stage is
    /// protected like an alias: the version's recorded gates must have
    /// passed, re-read inside the transaction that moves it (the promotion
    /// rule, never forced here).
    pub async fn transition_stage_checked(
        &self,
        name: &str,
        version: i64,
        stage: Stage,
        archive_existing_versions: bool,
        gated: bool,
        actor: &Actor,
    ) -> Result<ModelVersion, Error> {
        let current = self.get_model_version(name, version).await?;
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        if gated {
            let mut gates = Sql::new("SELECT gate_results FROM model_versions WHERE name = ");
            gates.bind(name).push(" AND version = ").bind(version);
            let row = gates
                .query(self.dialect)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading gate results"))?
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "Model Version (name={name}, version={version}) not found"
                    ))
                })?;
            let gates: Option<String> = get(&row, "gate_results")?;
            keel_core::promotion::check_gate_text(name, version, gates.as_deref(), false, "")?;
        }
        let now = now_millis();
        if archive_existing_versions && matches!(stage, Stage::Staging | Stage::Production) {
            let mut others = Sql::new("SELECT version FROM model_versions WHERE name = ");
            others
                .bind(name)
                .push(" AND current_stage = ")
                .bind(stage.as_str())
                .push(" AND version != ")
                .bind(version);
            for row in others
                .query(self.dialect)
                .fetch_all(&mut *tx)
                .await
                .map_err(db("reading stage holders"))?
            {
                let other: i64 = get(&row, "version")?;
                let mut archive = Sql::new(
                    "UPDATE model_versions SET current_stage = 'Archived', last_updated_timestamp = ",
                );
                archive
                    .bind(now)
                    .push(" WHERE name = ")
                    .bind(name)
                    .push(" AND version = ")
                    .bind(other);
                archive
                    .query(self.dialect)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("archiving version"))?;
                let audit = Audit {
                    name,
                    action: "transition_stage",
                    target: "->Archived",
                    from_version: None,
                    to_version: Some(other),
                };
                Self::append_audit(&mut tx, audit, actor, registry_version).await?;
            }
        }
        let mut sql = Sql::new("UPDATE model_versions SET current_stage = ");
        sql.bind(stage.as_str())
            .push(", last_updated_timestamp = ")
            .bind(now)
            .push(" WHERE name = ")
            .bind(name)
            .push(" AND version = ")
            .bind(version);
        sql.query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("transitioning stage"))?;
        let target = format!("{}->{}", current.current_stage.as_str(), stage.as_str());
        let audit = Audit {
            name,
            action: "transition_stage",
            target: &target,
            from_version: None,
            to_version: Some(version),
        };
        Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        tx.commit()
            .await
            .map_err(db("committing stage transition"))?;
        self.get_model_version(name, version).await
    }

    /// Sets a version tag.
    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
        value: &str,
    ) -> Result<(), Error> {
        validation::validate_key(KeyKind::Tag, key)?;
        validation::validate_length("tag value", value, MAX_MODEL_TAG_VALUE)?;
        self.get_model_version(name, version).await?;
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        VERSION_TAGS
            .upsert(&mut *tx, &[name.into(), version.into()], [(key, value)])
            .await?;
        tx.commit().await.map_err(db("committing tag"))?;
        Ok(())
    }

    /// Deletes a version tag.
    pub async fn delete_model_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
    ) -> Result<(), Error> {
        self.get_model_version(name, version).await?;
        VERSION_TAGS
            .delete(
                &mut *self
                    .writer
                    .acquire()
                    .await
                    .map_err(db("acquiring the writer"))?,
                &[name.into(), version.into()],
                key,
                format!("No tag with key '{key}' on model '{name}' version {version}"),
            )
            .await
    }
}
