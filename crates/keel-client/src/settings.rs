//! Where the metadata lives, decided once for every command: the one
//! settings type (`ClientSettings`) and the one resolution order.
//!
//! Tracking URI: the `--tracking-uri` flag, then `KEEL_TRACKING_URI`, then
//! `KEEL_BACKEND_STORE_URI` (what `keel server` reads; honoured so a command
//! and the server beside it agree), then `MLFLOW_TRACKING_URI`, then the
//! project's `.keel/keel.db` (the nearest folder with a `.keel/` or
//! `keel.yaml`), then `./keel.db`. An `http(s)://` URI is a keel server
//! (through which everything travels, with the caller's credentials:
//! `MLFLOW_TRACKING_TOKEN`, or `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD`); `sqlite://` and `postgresql://` are a
//! database opened directly.

use std::path::{Path, PathBuf};

use keel_core::Error;

/// What a command was told about where the metadata is.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// The `--tracking-uri` flag, if given.
    pub tracking_uri: Option<String>,
    /// The `--artifacts-destination` flag (or `KEEL_ARTIFACTS_DESTINATION`):
    /// where `mlflow-artifacts:` URIs point when the database is opened directly.
    pub artifacts_destination: Option<String>,
    /// The project folder, if the command runs inside one.
    pub project_root: Option<PathBuf>,
}

/// Where the metadata is, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A database URI (`sqlite:///…`, `postgresql://…`) and the artifact
    /// root that `mlflow-artifacts:` URIs name.
    Database {
        uri: String,
        artifacts_destination: String,
    },
    /// A keel server's base URL, with the caller's credentials.
    Server {
        url: String,
        credentials: Credentials,
    },
}

/// How a client proves who it is to a keel server.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    #[default]
    None,
    /// `Authorization: Bearer TOKEN` (`MLFLOW_TRACKING_TOKEN`).
    Token(String),
    /// HTTP basic auth (`MLFLOW_TRACKING_USERNAME`, `MLFLOW_TRACKING_PASSWORD`).
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Credentials {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token(_) => f.write_str("Token(***)"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
        }
    }
}

impl Credentials {
    /// From MLflow's client variables; an empty value counts as unset.
    pub fn from_env() -> Credentials {
        Credentials::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Credentials {
        let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
        if let Some(token) = var("MLFLOW_TRACKING_TOKEN") {
            return Credentials::Token(token);
        }
        match (
            var("MLFLOW_TRACKING_USERNAME"),
            var("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(user), Some(password)) => Credentials::Basic { user, password },
            _ => Credentials::None,
        }
    }
}

/// Database URI schemes a client opens directly.
pub fn is_database_uri(uri: &str) -> bool {
    [
        "sqlite:",
        "postgresql:",
        "postgres:",
        "postgresql+psycopg2:",
    ]
    .iter()
    .any(|scheme| uri.starts_with(scheme))
}

fn is_server_uri(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// The nearest folder at or above `start` holding `.keel/` or `keel.yaml`.
pub fn project_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(".keel").is_dir() || dir.join("keel.yaml").is_file())
        .map(Path::to_path_buf)
}

impl ClientSettings {
    /// Settings for a command run in the current folder.
    pub fn new(tracking_uri: Option<String>, artifacts_destination: Option<String>) -> Self {
        ClientSettings {
            tracking_uri,
            artifacts_destination,
            project_root: std::env::current_dir()
                .ok()
                .and_then(|dir| project_root(&dir)),
        }
    }

    /// The same settings for the project at `root`.
    pub fn in_project(mut self, root: &Path) -> Self {
        self.project_root = Some(root.to_path_buf());
        self
    }

    /// Resolves the tracking URI in the documented order.
    pub fn target(&self) -> Result<Target, Error> {
        self.target_from(|name| std::env::var(name).ok())
    }

    /// [`ClientSettings::target`] with the environment given as a lookup.
    pub fn target_from(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<Target, Error> {
        let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let (uri, origin) = match self.tracking_uri.clone().filter(|u| !u.is_empty()) {
            Some(uri) => (uri, "--tracking-uri"),
            None => match var("KEEL_TRACKING_URI") {
                Some(uri) => (uri, "KEEL_TRACKING_URI"),
                None => match var("KEEL_BACKEND_STORE_URI") {
                    Some(uri) => (uri, "KEEL_BACKEND_STORE_URI"),
                    None => match var("MLFLOW_TRACKING_URI") {
                        Some(uri) => (uri, "MLFLOW_TRACKING_URI"),
                        None => (self.default_database(), "the project default"),
                    },
                },
            },
        };
        if is_server_uri(&uri) {
            return Ok(Target::Server {
                url: uri.trim_end_matches('/').to_string(),
                credentials: Credentials::from_lookup(&lookup),
            });
        }
        if is_database_uri(&uri) {
            return Ok(Target::Database {
                uri,
                artifacts_destination: self.artifacts_destination_from(&lookup),
            });
        }
        Err(Error::invalid_parameter(format!(
            "{origin}={uri}: a tracking URI is http(s)://HOST:PORT (a keel server), sqlite:///PATH.db or \
             postgresql://… (a database opened directly)"
        )))
    }

    fn default_database(&self) -> String {
        match &self.project_root {
            Some(root) => format!("sqlite:///{}", root.join(".keel").join("keel.db").display()),
            None => "sqlite:///keel.db".to_string(),
        }
    }

    /// Where `mlflow-artifacts:` URIs point for a directly opened database:
    /// the flag or `KEEL_ARTIFACTS_DESTINATION`, else the project's
    /// `.keel/artifacts`, else `./keel-artifacts`.
    pub fn artifacts_destination(&self) -> String {
        self.artifacts_destination_from(|name| std::env::var(name).ok())
    }

    fn artifacts_destination_from(&self, lookup: impl Fn(&str) -> Option<String>) -> String {
        if let Some(destination) = self.artifacts_destination.clone().filter(|d| !d.is_empty()) {
            return destination;
        }
        if let Some(destination) = lookup("KEEL_ARTIFACTS_DESTINATION").filter(|d| !d.is_empty()) {
            return destination;
        }
        match &self.project_root {
            Some(root) => root.join(".keel").join("artifacts").display().to_string(),
            None => "./keel-artifacts".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(flag: Option<&str>) -> ClientSettings {
        ClientSettings {
            tracking_uri: flag.map(str::to_string),
            artifacts_destination: None,
            project_root: Some(PathBuf::from("/work/project")),
        }
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    fn uri(target: Target) -> String {
        match target {
            Target::Database { uri, .. } => uri,
            Target::Server { url, .. } => url,
        }
    }

    #[test]
    fn the_flag_then_keel_then_mlflow_then_the_project() {
        let all = [
            ("KEEL_TRACKING_URI", "http://keel:5000"),
            ("KEEL_BACKEND_STORE_URI", "postgresql://db/keel"),
            ("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        ];
        let flag = settings(Some("sqlite:///flag.db"));
        assert_eq!(
            uri(flag.target_from(env(&all)).unwrap()),
            "sqlite:///flag.db"
        );
        let none = settings(None);
        assert_eq!(
            uri(none.target_from(env(&all)).unwrap()),
            "http://keel:5000"
        );
        assert_eq!(
            uri(none.target_from(env(&all[1..])).unwrap()),
            "postgresql://db/keel"
        );
        assert_eq!(
            uri(none.target_from(env(&all[2..])).unwrap()),
            "sqlite:///mlflow.db"
        );
        // Empty values count as unset.
        assert_eq!(
            uri(none.target_from(env(&[("KEEL_TRACKING_URI", "")])).unwrap()),
            "sqlite:////work/project/.keel/keel.db"
        );
    }

    #[test]
    fn a_server_uri_carries_the_callers_credentials_and_a_file_uri_is_refused() {
        let vars = [
            ("MLFLOW_TRACKING_URI", "http://keel:5000/"),
            ("MLFLOW_TRACKING_USERNAME", "bob"),
            ("MLFLOW_TRACKING_PASSWORD", "correct horse battery"),
        ];
        match settings(None).target_from(env(&vars)).unwrap() {
            Target::Server { url, credentials } => {
                assert_eq!(url, "http://keel:5000");
                assert_eq!(
                    credentials,
                    Credentials::Basic {
                        user: "bob".into(),
                        password: "correct horse battery".into()
                    }
                );
                assert!(!format!("{credentials:?}").contains("horse"));
            }
            other => panic!("{other:?}"),
        }
        let error = settings(Some("./mlruns"))
            .target_from(env(&[]))
            .unwrap_err();
        assert!(error.message.contains("--tracking-uri=./mlruns"), "{error}");
    }
}
