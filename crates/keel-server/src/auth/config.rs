//! `keel server --app-name basic-auth`: MLflow's `basic_auth.ini`, read from
//! `MLFLOW_AUTH_CONFIG_PATH` the way MLflow reads it (section `[mlflow]`,
//! `key = value` or `key: value`, `#`/`;` comments), with MLflow's
//! environment overrides `MLFLOW_AUTH_ADMIN_USERNAME` and
//! `MLFLOW_AUTH_ADMIN_PASSWORD` (set but empty counts as unset, as MLflow
//! does). `database_uri` is read and not used: users and grants live in
//! keel's own store, next to the runs they protect (docs/auth.md).

use std::collections::HashMap;
use std::time::Duration;

use keel_core::Error;
use keel_core::access::Permission;

/// What the basic-auth app needs from the file and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuthConfig {
    /// Applies wherever a user holds no grant (MLflow's default: READ).
    pub default_permission: Permission,
    /// Created as an admin at start-up when no user of that name exists.
    pub admin_username: String,
    /// Needed only to create the admin; never logged.
    pub admin_password: Option<String>,
    /// MLflow's separate auth database; keel keeps users in its own store.
    pub database_uri: Option<String>,
    /// How long a verified credential is remembered (`auth_cache_ttl_seconds`;
    /// keel's default 60 s, 0 turns the cache off).
    pub cache_ttl: Duration,
    /// At most this many remembered credentials (`auth_cache_max_size`).
    pub cache_max_size: usize,
}

impl Default for BasicAuthConfig {
    /// MLflow's shipped `basic_auth.ini`, without a password.
    fn default() -> Self {
        BasicAuthConfig {
            default_permission: Permission::Read,
            admin_username: "admin".to_string(),
            admin_password: None,
            database_uri: None,
            cache_ttl: Duration::from_secs(60),
            cache_max_size: 10_000,
        }
    }
}

impl BasicAuthConfig {
    /// Reads `MLFLOW_AUTH_CONFIG_PATH` (MLflow's defaults without it) and the
    /// environment overrides.
    pub fn from_env() -> Result<BasicAuthConfig, Error> {
        let text = match std::env::var_os("MLFLOW_AUTH_CONFIG_PATH") {
            Some(path) if !path.is_empty() => std::fs::read_to_string(&path).map_err(|e| {
                Error::invalid_parameter(format!(
                    "Cannot read MLFLOW_AUTH_CONFIG_PATH {}: {e}",
                    std::path::Path::new(&path).display()
                ))
            })?,
            _ => String::new(),
        };
        let env = |name: &str| std::env::var(name).ok();
        BasicAuthConfig::parse(
            &text,
            env("MLFLOW_AUTH_ADMIN_USERNAME"),
            env("MLFLOW_AUTH_ADMIN_PASSWORD"),
        )
    }

    /// The file's text plus the two environment overrides.
    pub fn parse(
        ini: &str,
        admin_username_env: Option<String>,
        admin_password_env: Option<String>,
    ) -> Result<BasicAuthConfig, Error> {
        let values = mlflow_section(ini)?;
        let mut config = BasicAuthConfig::default();
        if let Some(permission) = values.get("default_permission") {
            config.default_permission = Permission::parse(permission).map_err(|e| {
                Error::invalid_parameter(format!(
                    "basic_auth.ini default_permission: {}",
                    e.message
                ))
            })?;
        }
        let username = match admin_username_env {
            Some(name) => Some(name),
            None => values.get("admin_username").cloned(),
        };
        if let Some(username) = username.filter(|u| !u.is_empty()) {
            config.admin_username = username;
        }
        config.admin_password = match admin_password_env {
            Some(password) => Some(password),
            None => values.get("admin_password").cloned(),
        }
        .filter(|p| !p.is_empty());
        config.database_uri = values.get("database_uri").cloned();
        if let Some(ttl) = values.get("auth_cache_ttl_seconds") {
            config.cache_ttl = Duration::from_secs(number(ttl, "auth_cache_ttl_seconds")?);
        }
        if let Some(size) = values.get("auth_cache_max_size") {
            config.cache_max_size = number(size, "auth_cache_max_size")? as usize;
        }
        Ok(config)
    }
}

fn number(text: &str, key: &str) -> Result<u64, Error> {
    text.parse().map_err(|_| {
        Error::invalid_parameter(format!(
            "basic_auth.ini {key}: '{text}' is not a whole number"
        ))
    })
}

/// The `[mlflow]` section of an INI text as Python's configparser reads it
/// for these keys: keys lower-cased, values trimmed, comments on their own line.
fn mlflow_section(ini: &str) -> Result<HashMap<String, String>, Error> {
    let mut values = HashMap::new();
    let mut section: Option<String> = None;
    for (number, line) in ini.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = Some(name.trim().to_string());
            continue;
        }
        let Some(split) = trimmed.find(['=', ':']) else {
            return Err(Error::invalid_parameter(format!(
                "basic_auth.ini line {}: expected 'key = value', found '{trimmed}'",
                number + 1
            )));
        };
        if section.as_deref() == Some("mlflow") {
            let key = trimmed[..split].trim().to_ascii_lowercase();
            let value = trimmed[split + 1..].trim().to_string();
            values.insert(key, value);
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///basic_auth.db\n\
        admin_username = admin\n# admin_password =\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n";

    #[test]
    fn reads_mlflow_shipped_file() {
        let config = BasicAuthConfig::parse(SHIPPED, None, None).unwrap();
        assert_eq!(config.default_permission, Permission::Read);
        assert_eq!(config.admin_username, "admin");
        assert_eq!(config.admin_password, None);
        assert_eq!(
            config.database_uri.as_deref(),
            Some("sqlite:///basic_auth.db")
        );
    }

    #[test]
    fn environment_overrides_and_empty_is_unset() {
        let text =
            "[mlflow]\ndefault_permission: NO_PERMISSIONS\nadmin_password = from-the-file-1\n";
        let config =
            BasicAuthConfig::parse(text, Some("root".into()), Some("from-the-env-12".into()))
                .unwrap();
        assert_eq!(config.default_permission, Permission::NoPermissions);
        assert_eq!(config.admin_username, "root");
        assert_eq!(config.admin_password.as_deref(), Some("from-the-env-12"));
        let config = BasicAuthConfig::parse(text, None, Some(String::new())).unwrap();
        assert_eq!(config.admin_password, None);
    }

    #[test]
    fn bad_values_are_named() {
        let error =
            BasicAuthConfig::parse("[mlflow]\ndefault_permission = ALL\n", None, None).unwrap_err();
        assert!(error.message.contains("default_permission"), "{error}");
        let error = BasicAuthConfig::parse("[mlflow]\nnonsense\n", None, None).unwrap_err();
        assert!(error.message.contains("line 2"), "{error}");
    }
}
