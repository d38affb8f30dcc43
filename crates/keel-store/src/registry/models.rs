//! The registry's registered models: create, read, rename, update, delete, search, tags.

use super::*;

impl Store {
    // ------------------------------------------------------- registered models

    /// Creates a registered model.
    pub async fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &[Tag],
    ) -> Result<RegisteredModel, Error> {
        validate_model_name(name)?;
        for tag in tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::validate_length("tag value", &tag.value, MAX_MODEL_TAG_VALUE)?;
        }
        let now = now_millis();
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        let mut insert = Sql::new(
            "INSERT INTO registered_models (name, creation_timestamp, last_updated_timestamp, description) VALUES (",
        );
        insert
            .bind(name)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(description.unwrap_or(""));
        insert.push(")");
        match insert.query(self.dialect).execute(&mut *tx).await {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::already_exists(format!(
                    "Registered Model (name={name}) already exists."
                )));
            }
            Err(e) => return Err(db("creating registered model")(e)),
        }
        for tag in tags {
            MODEL_TAGS
                .upsert(
                    &mut *tx,
                    &[name.into()],
                    [(tag.key.as_str(), tag.value.as_str())],
                )
                .await?;
        }
        tx.commit()
            .await
            .map_err(db("committing registered model"))?;
        self.get_registered_model(name).await
    }

    pub(super) async fn registered_model_exists(&self, name: &str) -> Result<(), Error> {
        let mut sql = Sql::new("SELECT name FROM registered_models WHERE name = ");
        sql.bind(name);
        sql.query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading registered model"))?
            .map(|_| ())
            .ok_or_else(|| Error::not_found(format!("Registered Model with name={name} not found")))
    }

    /// Reads a registered model with tags, aliases and latest version per stage.
    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel, Error> {
        let mut sql = Sql::new(
            "SELECT rm.name, rm.creation_timestamp, rm.last_updated_timestamp, rm.description FROM \
             registered_models rm WHERE rm.name = ",
        );
        sql.bind(name);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading registered model"))?
            .ok_or_else(|| {
                Error::not_found(format!("Registered Model with name={name} not found"))
            })?;
        let mut models = vec![model_from_row(&row)?];
        self.fill_registered_models(&mut models).await?;
        models
            .pop()
            .ok_or_else(|| Error::internal("registered model vanished while loading"))
    }

    pub(super) async fn fill_registered_models(
        &self,
        models: &mut [RegisteredModel],
    ) -> Result<(), Error> {
        if models.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
        let index: std::collections::HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        for chunk in names.chunks(500) {
            let mut sql =
                Sql::new("SELECT name, key, value FROM registered_model_tags WHERE name IN ");
            sql.bind_list(chunk.iter().map(String::as_str))
                .push(" ORDER BY key");
            for row in sql
                .query(self.dialect)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading model tags"))?
            {
                if let Some(&i) = index.get(&get::<String>(&row, "name")?) {
                    models[i].tags.push(Tag::new(
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
                if let Some(&i) = index.get(&get::<String>(&row, "name")?) {
                    models[i]
                        .aliases
                        .push((get(&row, "alias")?, get(&row, "version")?));
                }
            }
            // The newest version per (model, stage).
            let mut sql = Sql::new(&format!(
                "SELECT {VERSION_COLUMNS} FROM model_versions mv WHERE mv.name IN "
            ));
            sql.bind_list(chunk.iter().map(String::as_str)).push(
                " AND mv.version = (SELECT MAX(v.version) FROM model_versions v WHERE v.name = mv.name AND \
                 v.current_stage = mv.current_stage) ORDER BY mv.name, mv.version",
            );
            for row in sql
                .query(self.dialect)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading latest versions"))?
            {
                let version = version_from_row(&row)?;
                if let Some(&i) = index.get(&version.name) {
                    models[i].latest_versions.push(version);
                }
            }
        }
        Ok(())
    }

    /// Renames a registered model, carrying its versions, tags, aliases and audit log.
    pub async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
    ) -> Result<RegisteredModel, Error> {
        validate_model_name(new_name)?;
        self.registered_model_exists(name).await?;
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        let mut exists = Sql::new("SELECT name FROM registered_models WHERE name = ");
        exists.bind(new_name);
        if exists
            .query(self.dialect)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("checking name"))?
            .is_some()
        {
            return Err(Error::already_exists(format!(
                "Registered Model (name={new_name}) already exists."
            )));
        }
        for table in [
            "registered_models",
            "registered_model_tags",
            "model_versions",
            "model_version_tags",
            "registered_model_aliases",
            "registry_audit",
        ] {
            let mut sql = Sql::new(&format!("UPDATE {table} SET name = "));
            sql.bind(new_name).push(" WHERE name = ").bind(name);
            sql.query(self.dialect)
                .execute(&mut *tx)
                .await
                .map_err(db("renaming registered model"))?;
        }
        // Grants follow the model to its new name, as in MLflow.
        let mut grants = Sql::new("UPDATE user_grants SET resource_id = ");
        grants
            .bind(new_name)
            .push(" WHERE resource_type = 'registered_model' AND resource_id = ")
            .bind(name);
        grants
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("renaming registered model"))?;
        let mut touch = Sql::new("UPDATE registered_models SET last_updated_timestamp = ");
        touch
            .bind(now_millis())
            .push(" WHERE name = ")
            .bind(new_name);
        touch
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("renaming registered model"))?;
        let audit = Audit {
            name: new_name,
            action: "rename_model",
            target: name,
            from_version: None,
            to_version: None,
        };
        Self::append_audit(&mut tx, audit, &Actor::default(), registry_version).await?;
        tx.commit().await.map_err(db("committing rename"))?;
        self.get_registered_model(new_name).await
    }

    /// Updates a registered model's description.
    pub async fn update_registered_model(
        &self,
        name: &str,
        description: &str,
    ) -> Result<RegisteredModel, Error> {
        self.registered_model_exists(name).await?;
        let mut sql = Sql::new("UPDATE registered_models SET description = ");
        sql.bind(description)
            .push(", last_updated_timestamp = ")
            .bind(now_millis())
            .push(" WHERE name = ")
            .bind(name);
        sql.query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("updating registered model"))?;
        self.get_registered_model(name).await
    }

    /// Deletes a registered model and everything under it; the audit log keeps its history.
    pub async fn delete_registered_model(&self, name: &str, actor: &Actor) -> Result<(), Error> {
        self.registered_model_exists(name).await?;
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        for table in [
            "registered_model_aliases",
            "model_version_tags",
            "model_versions",
            "registered_model_tags",
            "registered_models",
        ] {
            let mut sql = Sql::new(&format!("DELETE FROM {table} WHERE name = "));
            sql.bind(name);
            sql.query(self.dialect)
                .execute(&mut *tx)
                .await
                .map_err(db("deleting registered model"))?;
        }
        let audit = Audit {
            name,
            action: "delete_model",
            target: name,
            from_version: None,
            to_version: None,
        };
        Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        tx.commit().await.map_err(db("committing delete"))?;
        Ok(())
    }

    /// Searches registered models (`name LIKE ...`, `tags.k = ...`).
    pub async fn search_registered_models(
        &self,
        filter_string: Option<&str>,
        max_results: i64,
        order_by: &[String],
        page_token: Option<&str>,
    ) -> Result<Page<RegisteredModel>, Error> {
        if !(1..=1000).contains(&max_results) {
            return Err(Error::invalid_parameter(format!(
                "Invalid value {max_results} for parameter 'max_results': must be between 1 and 1000"
            )));
        }
        let offset = page_token::decode(page_token)?;
        let mut sql = Sql::new(
            "SELECT rm.name, rm.creation_timestamp, rm.last_updated_timestamp, rm.description FROM \
             registered_models rm WHERE 1 = 1",
        );
        search::push_search(
            &MODEL_SEARCH,
            self.dialect,
            filter_string,
            order_by,
            "rm.name ASC",
            max_results,
            offset,
            &mut sql,
        )?;
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("searching registered models"))?;
        let mut items = rows
            .iter()
            .map(model_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = page_token::truncate_page(&mut items, max_results, offset);
        self.fill_registered_models(&mut items).await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// The newest version in each of `stages` (all stages when empty).
    pub async fn get_latest_versions(
        &self,
        name: &str,
        stages: &[Stage],
    ) -> Result<Vec<ModelVersion>, Error> {
        let model = self.get_registered_model(name).await?;
        let mut versions: Vec<ModelVersion> = model
            .latest_versions
            .into_iter()
            .filter(|v| stages.is_empty() || stages.contains(&v.current_stage))
            .collect();
        self.fill_versions(&mut versions).await?;
        Ok(versions)
    }

    /// Sets a registered model tag.
    pub async fn set_registered_model_tag(
        &self,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), Error> {
        validation::validate_key(KeyKind::Tag, key)?;
        validation::validate_length("tag value", value, MAX_MODEL_TAG_VALUE)?;
        self.registered_model_exists(name).await?;
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        MODEL_TAGS
            .upsert(&mut *tx, &[name.into()], [(key, value)])
            .await?;
        tx.commit().await.map_err(db("committing tag"))?;
        Ok(())
    }

    /// Deletes a registered model tag.
    pub async fn delete_registered_model_tag(&self, name: &str, key: &str) -> Result<(), Error> {
        self.registered_model_exists(name).await?;
        MODEL_TAGS
            .delete(
                &mut *self
                    .writer
                    .acquire()
                    .await
                    .map_err(db("acquiring the writer"))?,
                &[name.into()],
                key,
                format!("No tag with key '{key}' on registered model '{name}'"),
            )
            .await
    }
}
