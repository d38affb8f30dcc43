//! The one set of tracking flags every command that reads or writes runs,
//! models, artifacts or audit rows takes (flattened into its arguments), and
//! how it opens a [`keel_client::Client`]. The resolution order lives in
//! keel-client's `settings` module: `--tracking-uri`, `KEEL_TRACKING_URI`,
//! `KEEL_BACKEND_STORE_URI`, `MLFLOW_TRACKING_URI`, the project's `.keel/keel.db`.

use std::path::Path;

use anyhow::Context;
use keel_client::{Client, ClientSettings};

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Where runs, models and the audit log live: http(s)://HOST:PORT (a keel
    /// server: everything goes through it, with MLFLOW_TRACKING_TOKEN or
    /// MLFLOW_TRACKING_USERNAME/PASSWORD), or sqlite:///PATH.db /
    /// postgresql://… opened directly (default: KEEL_TRACKING_URI,
    /// KEEL_BACKEND_STORE_URI, MLFLOW_TRACKING_URI, then the project's
    /// .keel/keel.db).
    #[arg(long, global = true, visible_alias = "backend-store-uri")]
    pub tracking_uri: Option<String>,
    /// With a database opened directly: where `mlflow-artifacts:` URIs point
    /// (the server's --artifacts-destination; default: the project's
    /// .keel/artifacts, else ./keel-artifacts).
    #[arg(long, global = true, env = "KEEL_ARTIFACTS_DESTINATION")]
    pub artifacts_destination: Option<String>,
}

/// The name a direct client records as the actor (`$USER`, else `keel`); a
/// server records the caller it authenticated instead.
pub fn local_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "keel".into())
}

impl ClientArgs {
    /// The settings for a command run in `root` (default: the project around
    /// the current folder).
    pub fn settings(&self, root: Option<&Path>) -> ClientSettings {
        let settings = ClientSettings::new(
            self.tracking_uri.clone(),
            self.artifacts_destination.clone(),
        );
        match root {
            Some(root) => settings.in_project(root),
            None => settings,
        }
    }

    /// Whether a store is configured for this command (the flag or one of
    /// the tracking variables) or the command runs in a project: what
    /// optional records (monitor verdicts) need before they are written.
    pub fn records(&self) -> bool {
        let configured = [
            "KEEL_TRACKING_URI",
            "KEEL_BACKEND_STORE_URI",
            "MLFLOW_TRACKING_URI",
        ]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty()));
        self.tracking_uri.is_some() || configured || self.settings(None).project_root.is_some()
    }

    /// Opens the client the settings name.
    pub async fn open(&self, root: Option<&Path>) -> anyhow::Result<Client> {
        let settings = self.settings(root);
        let target = settings.target()?;
        let described = match &target {
            keel_client::Target::Database { uri, .. } => format!("the metadata store {uri}"),
            keel_client::Target::Server { url, .. } => format!("the keel server {url}"),
        };
        Client::open_target(target, &local_user())
            .await
            .with_context(|| format!("opening {described}"))
    }
}
