//! Users, grants and access tokens: what MLflow's basic-auth app keeps in its
//! own database, kept here in keel's store (SQLite or PostgreSQL).
//!
//! The store holds hashes only and makes no decision: hashing, verifying and
//! deciding what a permission allows belong to the server. Deleting a user
//! deletes its grants and its tokens in the same transaction, so a deleted
//! user's token stops working with the commit.

use keel_core::access::{Permission, ResourceType, validate_username};
use keel_core::{Error, now_millis};
use sqlx::any::AnyRow;

use crate::Store;
use crate::experiments::is_unique_violation;
use crate::sql::{Sql, db, get};

/// A user, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
}

/// A user with the stored hash of its password, for verification.
#[derive(Debug, Clone)]
pub struct UserCredential {
    pub user: User,
    pub password_hash: String,
}

/// An access token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// One grant: a user's permission on one resource (or `*`: all of a type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub username: String,
    pub resource_type: ResourceType,
    pub resource_id: String,
    pub permission: Permission,
}

fn user_from_row(row: &AnyRow) -> Result<User, Error> {
    Ok(User {
        id: get(row, "id")?,
        username: get(row, "username")?,
        is_admin: get::<i64>(row, "is_admin")? != 0,
    })
}

fn token_from_row(row: &AnyRow) -> Result<AccessToken, Error> {
    Ok(AccessToken {
        id: get(row, "id")?,
        username: get(row, "username")?,
        name: get(row, "name")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

fn no_user(username: &str) -> Error {
    Error::not_found(format!("User with username={username} not found"))
}

impl Store {
    /// Creates a user with an already hashed password.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> Result<User, Error> {
        validate_username(username)?;
        let mut sql =
            Sql::new("INSERT INTO users (username, password_hash, is_admin, created_at) VALUES (");
        sql.bind(username)
            .push(", ")
            .bind(password_hash)
            .push(", ")
            .bind(i64::from(is_admin))
            .push(", ")
            .bind(now_millis())
            .push(") RETURNING id");
        match sql.query(self.dialect).fetch_one(&self.writer).await {
            Ok(row) => Ok(User {
                id: get(&row, "id")?,
                username: username.to_string(),
                is_admin,
            }),
            Err(e) if is_unique_violation(&e) => Err(Error::already_exists(format!(
                "User (username={username}) already exists."
            ))),
            Err(e) => Err(db("creating user")(e)),
        }
    }

    /// Reads a user by name.
    pub async fn get_user(&self, username: &str) -> Result<User, Error> {
        let mut sql = Sql::new("SELECT id, username, is_admin FROM users WHERE username = ");
        sql.bind(username);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading user"))?
            .ok_or_else(|| no_user(username))?;
        user_from_row(&row)
    }

    /// A user and its password hash, or `None` for an unknown name.
    pub async fn user_credential(&self, username: &str) -> Result<Option<UserCredential>, Error> {
        let mut sql =
            Sql::new("SELECT id, username, is_admin, password_hash FROM users WHERE username = ");
        sql.bind(username);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading user"))?;
        row.map(|row| {
            Ok(UserCredential {
                user: user_from_row(&row)?,
                password_hash: get(&row, "password_hash")?,
            })
        })
        .transpose()
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, Error> {
        let rows = sqlx::query("SELECT id, username, is_admin FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing users"))?;
        rows.iter().map(user_from_row).collect()
    }

    /// Replaces a user's password hash.
    pub async fn update_user_password(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<(), Error> {
        let mut sql = Sql::new("UPDATE users SET password_hash = ");
        sql.bind(password_hash)
            .push(" WHERE username = ")
            .bind(username);
        self.update_one_user(sql, username).await
    }

    /// Makes a user an admin, or not.
    pub async fn update_user_admin(&self, username: &str, is_admin: bool) -> Result<(), Error> {
        let mut sql = Sql::new("UPDATE users SET is_admin = ");
        sql.bind(i64::from(is_admin))
            .push(" WHERE username = ")
            .bind(username);
        self.update_one_user(sql, username).await
    }

    async fn update_one_user(&self, sql: Sql, username: &str) -> Result<(), Error> {
        let done = sql
            .query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("updating user"))?;
        if done.rows_affected() == 0 {
            return Err(no_user(username));
        }
        Ok(())
    }

    /// Deletes a user with its grants and tokens, in one transaction.
    pub async fn delete_user(&self, username: &str) -> Result<(), Error> {
        let user = self.get_user(username).await?;
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        for table in ["user_grants", "access_tokens"] {
            let mut sql = Sql::new(&format!("DELETE FROM {table} WHERE user_id = "));
            sql.bind(user.id);
            sql.query(self.dialect)
                .execute(&mut *tx)
                .await
                .map_err(db("deleting user"))?;
        }
        let mut sql = Sql::new("DELETE FROM users WHERE id = ");
        sql.bind(user.id);
        sql.query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("deleting user"))?;
        tx.commit().await.map_err(db("committing user deletion"))?;
        Ok(())
    }

    /// Grants `permission` on one resource (`*`: every resource of the type).
    /// A second grant on the same resource is refused, as MLflow does; revoke first.
    pub async fn grant(
        &self,
        username: &str,
        resource_type: ResourceType,
        resource_id: &str,
        permission: Permission,
    ) -> Result<(), Error> {
        let user = self.get_user(username).await?;
        let mut sql = Sql::new(
            "INSERT INTO user_grants (user_id, resource_type, resource_id, permission) VALUES (",
        );
        sql.bind(user.id)
            .push(", ")
            .bind(resource_type.as_str())
            .push(", ")
            .bind(resource_id)
            .push(", ")
            .bind(permission.as_str())
            .push(")");
        match sql.query(self.dialect).execute(&self.writer).await {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::already_exists(format!(
                "Permission for user={username} on resource_type={}, resource_id={resource_id} already exists.",
                resource_type.as_str()
            ))),
            Err(e) => Err(db("granting permission")(e)),
        }
    }

    /// Sets a grant whether or not one exists (the creator's MANAGE).
    pub async fn set_grant(
        &self,
        user_id: i64,
        resource_type: ResourceType,
        resource_id: &str,
        permission: Permission,
    ) -> Result<(), Error> {
        let mut sql = Sql::new(
            "INSERT INTO user_grants (user_id, resource_type, resource_id, permission) VALUES (",
        );
        sql.bind(user_id)
            .push(", ")
            .bind(resource_type.as_str())
            .push(", ")
            .bind(resource_id)
            .push(", ")
            .bind(permission.as_str())
            .push(") ON CONFLICT (user_id, resource_type, resource_id) DO UPDATE SET permission = ")
            .bind(permission.as_str());
        sql.query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("granting permission"))?;
        Ok(())
    }

    /// Removes a grant; an absent one is an error, as in MLflow.
    pub async fn revoke(
        &self,
        username: &str,
        resource_type: ResourceType,
        resource_id: &str,
    ) -> Result<(), Error> {
        let user = self.get_user(username).await?;
        let mut sql = Sql::new("DELETE FROM user_grants WHERE user_id = ");
        sql.bind(user.id)
            .push(" AND resource_type = ")
            .bind(resource_type.as_str())
            .push(" AND resource_id = ")
            .bind(resource_id);
        let done = sql
            .query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("revoking permission"))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "Permission for user={username} on resource_type={}, resource_id={resource_id} not found.",
                resource_type.as_str()
            )));
        }
        Ok(())
    }

    /// The user's grant on the resource, else its grant on `*` of that type.
    pub async fn granted(
        &self,
        user_id: i64,
        resource_type: ResourceType,
        resource_id: &str,
    ) -> Result<Option<Permission>, Error> {
        let mut sql = Sql::new("SELECT resource_id, permission FROM user_grants WHERE user_id = ");
        sql.bind(user_id)
            .push(" AND resource_type = ")
            .bind(resource_type.as_str())
            .push(" AND resource_id IN ")
            .bind_list([resource_id, "*"]);
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading permission"))?;
        let mut specific = None;
        let mut wildcard = None;
        for row in &rows {
            let permission = Permission::parse(&get::<String>(row, "permission")?)?;
            if get::<String>(row, "resource_id")? == "*" && resource_id != "*" {
                wildcard = Some(permission);
            } else {
                specific = Some(permission);
            }
        }
        Ok(specific.or(wildcard))
    }

    /// Every grant of a user.
    pub async fn list_grants(&self, username: &str) -> Result<Vec<Grant>, Error> {
        let user = self.get_user(username).await?;
        let mut sql = Sql::new(
            "SELECT resource_type, resource_id, permission FROM user_grants WHERE user_id = ",
        );
        sql.bind(user.id)
            .push(" ORDER BY resource_type, resource_id");
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing permissions"))?;
        rows.iter()
            .map(|row| {
                Ok(Grant {
                    username: username.to_string(),
                    resource_type: ResourceType::parse(&get::<String>(row, "resource_type")?)?,
                    resource_id: get(row, "resource_id")?,
                    permission: Permission::parse(&get::<String>(row, "permission")?)?,
                })
            })
            .collect()
    }

    /// Stores a new token (its hash only) for `username`.
    pub async fn create_token(
        &self,
        username: &str,
        name: &str,
        secret_hash: &str,
        expires_at: Option<i64>,
    ) -> Result<AccessToken, Error> {
        let user = self.get_user(username).await?;
        let created_at = now_millis();
        let mut sql = Sql::new(
            "INSERT INTO access_tokens (user_id, name, secret_hash, created_at, expires_at) VALUES (",
        );
        sql.bind(user.id)
            .push(", ")
            .bind(name)
            .push(", ")
            .bind(secret_hash)
            .push(", ")
            .bind(created_at)
            .push(", ")
            .bind(expires_at)
            .push(") RETURNING id");
        let row = sql
            .query(self.dialect)
            .fetch_one(&self.writer)
            .await
            .map_err(db("creating token"))?;
        Ok(AccessToken {
            id: get(&row, "id")?,
            username: username.to_string(),
            name: name.to_string(),
            created_at,
            expires_at,
        })
    }

    /// Tokens of one user, or of everyone (`None`), newest first; never secrets.
    pub async fn list_tokens(&self, username: Option<&str>) -> Result<Vec<AccessToken>, Error> {
        let mut sql = Sql::new(
            "SELECT t.id, u.username, t.name, t.created_at, t.expires_at FROM access_tokens t \
             JOIN users u ON u.id = t.user_id",
        );
        if let Some(username) = username {
            sql.push(" WHERE u.username = ").bind(username);
        }
        sql.push(" ORDER BY t.id DESC");
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing tokens"))?;
        rows.iter().map(token_from_row).collect()
    }

    /// One token's listing, by id.
    pub async fn get_token(&self, id: i64) -> Result<AccessToken, Error> {
        let mut sql = Sql::new(
            "SELECT t.id, u.username, t.name, t.created_at, t.expires_at FROM access_tokens t \
             JOIN users u ON u.id = t.user_id WHERE t.id = ",
        );
        sql.bind(id);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading token"))?
            .ok_or_else(|| Error::not_found(format!("No token with id={id}")))?;
        token_from_row(&row)
    }

    /// Revokes (deletes) a token.
    pub async fn revoke_token(&self, id: i64) -> Result<(), Error> {
        let mut sql = Sql::new("DELETE FROM access_tokens WHERE id = ");
        sql.bind(id);
        let done = sql
            .query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("revoking token"))?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("No token with id={id}")));
        }
        Ok(())
    }

    /// The user holding the unexpired token whose hash is `secret_hash`.
    pub async fn token_user(&self, secret_hash: &str, now: i64) -> Result<Option<User>, Error> {
        let mut sql = Sql::new(
            "SELECT u.id, u.username, u.is_admin, t.expires_at FROM access_tokens t \
             JOIN users u ON u.id = t.user_id WHERE t.secret_hash = ",
        );
        sql.bind(secret_hash);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading token"))?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: Option<i64> = get(&row, "expires_at")?;
        if expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        Ok(Some(user_from_row(&row)?))
    }

    /// The experiment a run belongs to (for permission checks).
    pub async fn run_experiment_id(&self, run_id: &str) -> Result<String, Error> {
        let mut sql = Sql::new("SELECT experiment_id FROM runs WHERE run_uuid = ");
        sql.bind(run_id);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading run"))?
            .ok_or_else(|| Error::not_found(format!("Run with id={run_id} not found")))?;
        Ok(get::<i64>(&row, "experiment_id")?.to_string())
    }

    /// The experiment a logged model belongs to (for permission checks).
    pub async fn logged_model_experiment_id(&self, model_id: &str) -> Result<String, Error> {
        let mut sql = Sql::new("SELECT experiment_id FROM logged_models WHERE model_id = ");
        sql.bind(model_id);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading logged model"))?
            .ok_or_else(|| Error::not_found(format!("Logged model '{model_id}' not found")))?;
        Ok(get::<i64>(&row, "experiment_id")?.to_string())
    }
}
