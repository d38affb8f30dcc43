//! Model and artifact locations, parsed in one place: every URI form an
//! MLflow client or a keel command writes.
//!
//! - `models:/NAME/VERSION`, `models:/NAME@ALIAS`, `models:/NAME/latest`,
//!   `models:/NAME/STAGE` and MLflow 3's `models:/m-…` (a logged model id)
//!   are a [`ModelUri`];
//! - `runs:/RUN_ID/PATH` is a [`RunUri`];
//! - `mlflow-artifacts:/PATH` and `mlflow-artifacts://HOST/PATH` are a
//!   [`ProxiedUri`]: a path under the tracking server's artifact root
//!   (keel-artifacts' `resolve_artifact_uri` opens it).
//!
//! Names, aliases and versions follow the registry's rules
//! ([`crate::validation`]); paths are relative with no `..`. Parsing does no
//! I/O: resolving a URI to a version or a store is the store's, the server's
//! or keel-artifacts' job.

use std::fmt;

use crate::entities::Stage;
use crate::error::Error;
use crate::validation::{
    parse_version, validate_alias, validate_model_name, validate_relative_path,
};

/// The scheme of registered model URIs.
pub const MODELS_SCHEME: &str = "models:/";
/// The scheme of run artifact URIs.
pub const RUNS_SCHEME: &str = "runs:/";
/// The scheme of artifacts served by the tracking server's proxy.
pub const PROXIED_SCHEME: &str = "mlflow-artifacts:";

/// A `models:/` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// `models:/NAME/VERSION`.
    Version { name: String, version: i64 },
    /// `models:/NAME@ALIAS`.
    Alias { name: String, alias: String },
    /// `models:/NAME/latest`: the newest version.
    Latest { name: String },
    /// `models:/NAME/STAGE` (`Staging`, `Production`, `Archived`, `None`;
    /// any case): the newest version in that stage.
    Stage { name: String, stage: Stage },
    /// `models:/m-…`: an MLflow 3 logged model.
    LoggedModel { model_id: String },
}

impl ModelUri {
    /// Whether `text` is meant as a model URI (it starts with `models:/`).
    pub fn is_model_uri(text: &str) -> bool {
        text.starts_with(MODELS_SCHEME)
    }

    /// Parses a `models:/` URI; the error names the URI and the forms.
    pub fn parse(text: &str) -> Result<ModelUri, Error> {
        let bad = |why: &str| {
            Error::invalid_parameter(format!(
                "Invalid model URI '{text}': {why} (expected models:/NAME/VERSION, \
                 models:/NAME@ALIAS, models:/NAME/latest or models:/NAME/STAGE)"
            ))
        };
        let rest = text
            .strip_prefix(MODELS_SCHEME)
            .ok_or_else(|| bad("it does not start with models:/"))?;
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if let Some((name, alias)) = rest.split_once('@') {
            validate_model_name(name).map_err(|e| bad(&e.message))?;
            validate_alias(alias).map_err(|e| bad(&e.message))?;
            return Ok(ModelUri::Alias {
                name: name.to_string(),
                alias: alias.to_string(),
            });
        }
        let mut parts = rest.split('/');
        let (name, selector) = (parts.next().unwrap_or(""), parts.next());
        if parts.next().is_some() {
            return Err(bad("too many '/'"));
        }
        let Some(selector) = selector else {
            if name.starts_with("m-") && name.len() > 2 {
                return Ok(ModelUri::LoggedModel {
                    model_id: name.to_string(),
                });
            }
            validate_model_name(name).map_err(|e| bad(&e.message))?;
            return Err(bad("it names no version, alias or stage"));
        };
        validate_model_name(name).map_err(|e| bad(&e.message))?;
        let name = name.to_string();
        if selector.eq_ignore_ascii_case("latest") {
            return Ok(ModelUri::Latest { name });
        }
        if !selector.is_empty() && selector.bytes().all(|b| b.is_ascii_digit()) {
            return match parse_version(&name, selector) {
                Ok(version) if version > 0 => Ok(ModelUri::Version { name, version }),
                _ => Err(bad("versions are positive integers")),
            };
        }
        match Stage::parse(selector) {
            Some(stage) => Ok(ModelUri::Stage { name, stage }),
            None => Err(bad(&format!(
                "'{selector}' is not a version, 'latest' or a stage"
            ))),
        }
    }

    /// The registered model's name (`None` for a logged model).
    pub fn name(&self) -> Option<&str> {
        match self {
            ModelUri::Version { name, .. }
            | ModelUri::Alias { name, .. }
            | ModelUri::Latest { name }
            | ModelUri::Stage { name, .. } => Some(name),
            ModelUri::LoggedModel { .. } => None,
        }
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelUri::Version { name, version } => write!(f, "{MODELS_SCHEME}{name}/{version}"),
            ModelUri::Alias { name, alias } => write!(f, "{MODELS_SCHEME}{name}@{alias}"),
            ModelUri::Latest { name } => write!(f, "{MODELS_SCHEME}{name}/latest"),
            ModelUri::Stage { name, stage } => {
                write!(f, "{MODELS_SCHEME}{name}/{}", stage.as_str())
            }
            ModelUri::LoggedModel { model_id } => write!(f, "{MODELS_SCHEME}{model_id}"),
        }
    }
}

/// A `runs:/RUN_ID/PATH` URI: `PATH` under the run's artifact root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunUri {
    pub run_id: String,
    /// Relative, without leading or trailing `/`; empty for the root.
    pub path: String,
}

impl RunUri {
    /// Parses `runs:/RUN_ID[/PATH]`; `None` when `text` is not a `runs:/` URI.
    pub fn parse(text: &str) -> Option<Result<RunUri, Error>> {
        let rest = text.strip_prefix(RUNS_SCHEME)?;
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.trim_end_matches('/');
        Some(if run_id.is_empty() || run_id == "." || run_id == ".." {
            Err(Error::invalid_parameter(format!(
                "Invalid run URI '{text}': it names no run (expected runs:/RUN_ID/PATH)"
            )))
        } else {
            validate_relative_path(path).map(|()| RunUri {
                run_id: run_id.to_string(),
                path: path.to_string(),
            })
        })
    }

    /// `base` (the run's artifact URI) joined with the path.
    pub fn under(&self, base: &str) -> String {
        join(base, &self.path)
    }
}

/// An `mlflow-artifacts:` URI: a path under the tracking server's artifact
/// root (the `--artifacts-destination` of `keel server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedUri {
    /// `HOST[:PORT]` of `mlflow-artifacts://HOST/PATH`, when given.
    pub host: Option<String>,
    /// Relative, without leading or trailing `/`; empty for the root.
    pub path: String,
}

impl ProxiedUri {
    /// Parses `mlflow-artifacts:/PATH`, `mlflow-artifacts:PATH` or
    /// `mlflow-artifacts://HOST/PATH`; `None` when `text` is not one.
    pub fn parse(text: &str) -> Option<Result<ProxiedUri, Error>> {
        let rest = text.strip_prefix(PROXIED_SCHEME)?;
        let (host, path) = match rest.strip_prefix("//") {
            Some(authority) => {
                let (host, path) = authority.split_once('/').unwrap_or((authority, ""));
                (Some(host.to_string()).filter(|h| !h.is_empty()), path)
            }
            None => (None, rest),
        };
        let path = path.trim_matches('/');
        Some(validate_relative_path(path).map(|()| ProxiedUri {
            host,
            path: path.to_string(),
        }))
    }
}

impl std::fmt::Display for ProxiedUri {
    /// `mlflow-artifacts:/PATH`, or `mlflow-artifacts://HOST/PATH` with a host.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Some(host) => write!(f, "{PROXIED_SCHEME}//{host}/{}", self.path),
            None => write!(f, "{PROXIED_SCHEME}/{}", self.path),
        }
    }
}

/// An artifact path with each `/`-separated segment percent-encoded (RFC
/// 3986 unreserved characters kept), for the artifact proxy's URL.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            segment
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `base/path` with one `/` between them (`base` alone for an empty path).
pub fn join(base: &str, path: &str) -> String {
    match (base.trim_end_matches('/'), path.trim_matches('/')) {
        (base, "") => base.to_string(),
        ("", path) => path.to_string(),
        (base, path) => format!("{base}/{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(text: &str) -> ModelUri {
        ModelUri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn every_model_uri_form() {
        assert_eq!(
            model("models:/risk/3"),
            ModelUri::Version {
                name: "risk".into(),
                version: 3
            }
        );
        assert_eq!(
            model("models:/risk@production"),
            ModelUri::Alias {
                name: "risk".into(),
                alias: "production".into()
            }
        );
        assert_eq!(
            model("models:/risk/latest"),
            ModelUri::Latest {
                name: "risk".into()
            }
        );
        assert_eq!(
            model("models:/risk/LATEST"),
            ModelUri::Latest {
                name: "risk".into()
            }
        );
        assert_eq!(
            model("models:/risk/production"),
            ModelUri::Stage {
                name: "risk".into(),
                stage: Stage::Production
            }
        );
        assert_eq!(
            model("models:/m-0123abcd"),
            ModelUri::LoggedModel {
                model_id: "m-0123abcd".into()
            }
        );
        // A name with spaces and dots is a valid registered model name.
        assert_eq!(
            model("models:/credit risk.v2/1").name(),
            Some("credit risk.v2")
        );
        for text in [
            "models:/risk/3",
            "models:/risk@production",
            "models:/risk/latest",
            "models:/risk/Staging",
            "models:/m-1",
        ] {
            assert_eq!(model(text).to_string(), text);
        }
    }

    #[test]
    fn bad_model_uris_name_the_problem() {
        for (text, why) in [
            ("risk/3", "does not start with models:/"),
            ("models:/", "cannot be empty"),
            ("models:/ /3", "cannot be empty"),
            ("models:/@production", "cannot be empty"),
            ("models:/../3", ".."),
            ("models:/./latest", "'.'"),
            ("models:/risk", "names no version"),
            ("models:/risk/", "not a version"),
            ("models:/risk/0", "positive"),
            ("models:/risk/99999999999999999999", "positive"),
            ("models:/risk/-1", "not a version"),
            ("models:/risk/1.5", "not a version"),
            ("models:/risk/Prod", "not a version"),
            ("models:/risk/3/extra", "too many"),
            ("models:/risk@", "alias"),
            ("models:/risk@latest", "reserved"),
            ("models:/risk@v3", "reserved"),
            ("models:/risk@a/b", "alias"),
        ] {
            let error = ModelUri::parse(text).unwrap_err();
            assert!(
                error.message.contains(why) && error.message.contains(text),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn run_uris() {
        let uri = RunUri::parse("runs:/0123abcd/model/").unwrap().unwrap();
        assert_eq!(
            (uri.run_id.as_str(), uri.path.as_str()),
            ("0123abcd", "model")
        );
        assert_eq!(
            uri.under("mlflow-artifacts:/1/0123abcd/artifacts/"),
            "mlflow-artifacts:/1/0123abcd/artifacts/model"
        );
        let root = RunUri::parse("runs:/0123abcd").unwrap().unwrap();
        assert_eq!(root.path, "");
        assert_eq!(root.under("s3://b/p"), "s3://b/p");
        assert!(RunUri::parse("models:/risk/1").is_none());
        for bad in ["runs:/", "runs:/r/../../etc", "runs:/../x", "runs:/r//etc"] {
            assert!(RunUri::parse(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn proxied_uris() {
        let parse = |text: &str| ProxiedUri::parse(text).unwrap().unwrap();
        assert_eq!(
            parse("mlflow-artifacts:/1/abc/artifacts/"),
            ProxiedUri {
                host: None,
                path: "1/abc/artifacts".into()
            }
        );
        assert_eq!(parse("mlflow-artifacts:1/abc").path, "1/abc");
        assert_eq!(parse("mlflow-artifacts:").path, "");
        assert_eq!(
            parse("mlflow-artifacts://tracking:5000/1/abc"),
            ProxiedUri {
                host: Some("tracking:5000".into()),
                path: "1/abc".into()
            }
        );
        assert!(ProxiedUri::parse("s3://bucket/x").is_none());
        for text in [
            "mlflow-artifacts:/1/abc",
            "mlflow-artifacts://tracking:5000/1/abc",
        ] {
            assert_eq!(parse(text).to_string(), text);
        }
        for bad in [
            "mlflow-artifacts:/1/../../etc",
            "mlflow-artifacts://host/../x",
            "mlflow-artifacts:/a\\b",
        ] {
            assert!(ProxiedUri::parse(bad).unwrap().is_err(), "{bad}");
        }
    }
}
