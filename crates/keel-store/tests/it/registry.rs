//! The model registry on every backend (SQLite always; PostgreSQL when
//! `KEEL_TEST_POSTGRES_URL` is set, mandatory with `CI=true`).

use crate::util::{Backend, backends};
use keel_core::{ErrorCode, Stage, Tag};
use keel_store::{Actor, CreateModelVersion, Store};

async fn register(store: &Store, name: &str) -> i64 {
    store
        .create_model_version(
            CreateModelVersion {
                name: name.into(),
                source: "mlflow-artifacts:/1/models/m-1/artifacts".into(),
                user_id: "bob".into(),
                ..Default::default()
            },
            &Actor::user("bob"),
        )
        .await
        .expect("create model version")
        .version
}

#[tokio::test]
async fn models_versions_tags_and_search() {
    for Backend { store, .. } in backends().await {
        store
            .create_registered_model("risk", Some("portfolio risk"), &[Tag::new("team", "quant")])
            .await
            .unwrap();
        let duplicate = store
            .create_registered_model("risk", None, &[])
            .await
            .unwrap_err();
        assert_eq!(duplicate.code, ErrorCode::ResourceAlreadyExists);
        assert_eq!(
            store
                .create_registered_model("a/b", None, &[])
                .await
                .unwrap_err()
                .code,
            ErrorCode::InvalidParameterValue
        );
        assert_eq!(
            (
                register(&store, "risk").await,
                register(&store, "risk").await
            ),
            (1, 2)
        );
        // Registering a version of an unknown model creates the model.
        assert_eq!(register(&store, "denim").await, 1);
        store
            .set_registered_model_tag("denim", "mlflow.prompt.is_prompt", "false")
            .await
            .unwrap();
        store
            .create_registered_model(
                "prompt-x",
                None,
                &[Tag::new("mlflow.prompt.is_prompt", "true")],
            )
            .await
            .unwrap();

        // The filter every MLflow client sends keeps models without the tag.
        let page = store
            .search_registered_models(
                Some("tag.`mlflow.prompt.is_prompt` != 'true'"),
                100,
                &[],
                None,
            )
            .await
            .unwrap();
        let names: Vec<_> = page.items.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["denim", "risk"]);
        let page = store
            .search_registered_models(Some("name LIKE 'ri%'"), 100, &[], None)
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        let risk = &page.items[0];
        assert_eq!(
            (risk.description.as_str(), risk.tags.clone()),
            ("portfolio risk", vec![Tag::new("team", "quant")])
        );
        assert_eq!(
            risk.latest_versions
                .iter()
                .map(|v| v.version)
                .collect::<Vec<_>>(),
            vec![2]
        );

        store
            .set_model_version_tag("risk", 1, "validated", "true")
            .await
            .unwrap();
        let versions = store
            .search_model_versions(Some("name = 'risk'"), 100, &[], None)
            .await
            .unwrap();
        assert_eq!(
            versions.items.iter().map(|v| v.version).collect::<Vec<_>>(),
            vec![2, 1]
        );
        let tagged = store
            .search_model_versions(Some("tags.validated = 'true'"), 100, &[], None)
            .await
            .unwrap();
        assert_eq!(tagged.items.len(), 1);
        assert_eq!(tagged.items[0].tags, vec![Tag::new("validated", "true")]);
        let ordered = store
            .search_model_versions(
                Some("name = 'risk'"),
                100,
                &["version_number ASC".into()],
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            ordered.items.iter().map(|v| v.version).collect::<Vec<_>>(),
            vec![1, 2]
        );

        store
            .update_model_version("risk", 2, "second")
            .await
            .unwrap();
        assert_eq!(
            store
                .get_model_version("risk", 2)
                .await
                .unwrap()
                .description,
            "second"
        );
        assert_eq!(
            store.get_model_version("risk", 9).await.unwrap_err().code,
            ErrorCode::ResourceDoesNotExist
        );
        assert_eq!(
            store.get_registered_model("nope").await.unwrap_err().code,
            ErrorCode::ResourceDoesNotExist
        );

        let renamed = store
            .rename_registered_model("denim", "denim-size")
            .await
            .unwrap();
        assert_eq!(renamed.latest_versions[0].name, "denim-size");
        store
            .delete_registered_model("denim-size", &Actor::user("bob"))
            .await
            .unwrap();
        assert!(store.get_model_version("denim-size", 1).await.is_err());
    }
}

#[tokio::test]
async fn aliases_stages_uris_and_audit() {
    for Backend { store, .. } in backends().await {
        for _ in 0..3 {
            register(&store, "risk").await;
        }
        for bad in ["3", "v3", "V12", "latest", "with space", ""] {
            let error = store
                .set_registered_model_alias("risk", bad, 1, &Actor::user("bob"))
                .await
                .unwrap_err();
            assert_eq!(
                error.code,
                ErrorCode::InvalidParameterValue,
                "alias {bad:?}"
            );
        }
        let unknown = store
            .set_registered_model_alias("risk", "production", 9, &Actor::user("bob"))
            .await
            .unwrap_err();
        assert_eq!(unknown.code, ErrorCode::ResourceDoesNotExist);

        let before = store.registry_version().await.unwrap();
        let first = store
            .set_registered_model_alias("risk", "production", 1, &Actor::user("bob"))
            .await
            .unwrap();
        assert_eq!((first.from_version, first.to_version), (None, Some(1)));
        let second = store
            .set_registered_model_alias(
                "risk",
                "production",
                2,
                &Actor {
                    user: "ci".into(),
                    reason: "gates passed".into(),
                    cause: "pipeline run abc".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!((second.from_version, second.to_version), (Some(1), Some(2)));
        assert_eq!(
            (second.reason.as_str(), second.cause.as_str()),
            ("gates passed", "pipeline run abc")
        );
        assert!(store.registry_version().await.unwrap() > before);
        let changes = store.registry_changes_since(before, 100).await.unwrap();
        assert_eq!(
            changes.iter().filter(|c| c.action == "set_alias").count(),
            2
        );

        assert_eq!(
            store
                .get_model_version_by_alias("risk", "production")
                .await
                .unwrap()
                .version,
            2
        );
        assert_eq!(
            store
                .resolve_model_uri("models:/risk@production")
                .await
                .unwrap()
                .version,
            2
        );
        assert_eq!(
            store
                .resolve_model_uri("models:/risk/1")
                .await
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            store
                .resolve_model_uri("models:/risk/latest")
                .await
                .unwrap()
                .version,
            3
        );
        assert!(store.resolve_model_uri("risk").await.is_err());
        assert_eq!(
            store
                .resolve_model_uri("models:/risk@nope")
                .await
                .unwrap_err()
                .code,
            ErrorCode::ResourceDoesNotExist
        );
        let version = store.get_model_version("risk", 2).await.unwrap();
        assert_eq!(version.aliases, vec!["production".to_string()]);
        let model = store.get_registered_model("risk").await.unwrap();
        assert_eq!(model.aliases, vec![("production".to_string(), 2)]);

        // Rollback goes to the previous holder from the audit log.
        let rollback = store
            .rollback_alias("risk", "production", &Actor::user("bob"))
            .await
            .unwrap();
        assert_eq!(
            (
                rollback.action.as_str(),
                rollback.from_version,
                rollback.to_version
            ),
            ("rollback", Some(2), Some(1))
        );
        assert_eq!(
            store
                .get_model_version_by_alias("risk", "production")
                .await
                .unwrap()
                .version,
            1
        );

        // Deleting the version that holds an alias removes the alias and audits it.
        store
            .delete_model_version("risk", 1, &Actor::user("bob"))
            .await
            .unwrap();
        assert_eq!(
            store
                .get_model_version_by_alias("risk", "production")
                .await
                .unwrap_err()
                .code,
            ErrorCode::ResourceDoesNotExist
        );
        let history = store.registry_audit(Some("risk"), 100).await.unwrap();
        assert!(history.iter().any(|e| e.action == "delete_alias"
            && e.target == "production"
            && e.from_version == Some(1)));
        assert!(
            history
                .iter()
                .any(|e| e.action == "delete_version" && e.from_version == Some(1))
        );

        // Legacy stages.
        store
            .transition_model_version_stage(
                "risk",
                2,
                Stage::Production,
                false,
                &Actor::user("bob"),
            )
            .await
            .unwrap();
        store
            .transition_model_version_stage("risk", 3, Stage::Production, true, &Actor::user("bob"))
            .await
            .unwrap();
        assert_eq!(
            store
                .get_model_version("risk", 2)
                .await
                .unwrap()
                .current_stage,
            Stage::Archived
        );
        let latest = store
            .get_latest_versions("risk", &[Stage::Production])
            .await
            .unwrap();
        assert_eq!(
            latest.iter().map(|v| v.version).collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(
            store
                .resolve_model_uri("models:/risk/Production")
                .await
                .unwrap()
                .version,
            3
        );

        store
            .delete_registered_model_alias("risk", "staging", &Actor::user("bob"))
            .await
            .unwrap_err();
        store
            .set_registered_model_alias("risk", "staging", 3, &Actor::user("bob"))
            .await
            .unwrap();
        store
            .delete_registered_model_alias("risk", "staging", &Actor::user("bob"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn versions_from_runs_record_lineage() {
    for Backend { store, .. } in backends().await {
        let run = store
            .create_run(keel_store::CreateRun {
                experiment_id: "0".into(),
                user_id: "bob".into(),
                run_name: Some("train".into()),
                start_time: None,
                tags: vec![Tag::new("mlflow.source.git.commit", "abc123")],
            })
            .await
            .unwrap();
        let input = keel_core::DatasetInput {
            dataset: keel_core::Dataset {
                name: "train".into(),
                digest: "b3:feed".into(),
                source_type: "keel".into(),
                source: "data/train.csv".into(),
                schema: None,
                profile: None,
            },
            tags: vec![Tag::new("mlflow.data.context", "training")],
        };
        store
            .log_inputs(&run.info.run_id, vec![input], vec![])
            .await
            .unwrap();
        let version = store
            .create_model_version(
                CreateModelVersion {
                    name: "risk".into(),
                    source: format!("runs:/{}/model", run.info.run_id),
                    run_id: Some(run.info.run_id.clone()),
                    ..Default::default()
                },
                &Actor::user("bob"),
            )
            .await
            .unwrap();
        let lineage: serde_json::Value =
            serde_json::from_str(version.lineage.as_deref().unwrap()).unwrap();
        assert_eq!(lineage["git_commit"], "abc123");
        assert_eq!(lineage["run_id"], run.info.run_id.as_str());
        assert_eq!(lineage["datasets"][0]["digest"], "b3:feed");
        assert_eq!(lineage["datasets"][0]["context"], "training");
        // Where the version's files are: runs:/RUN/PATH is under the run's
        // artifact root; a logged model's source is its artifact location.
        assert_eq!(
            store.version_artifact_uri(&version).await.unwrap(),
            format!("{}/model", run.info.artifact_uri)
        );
        let logged = store
            .create_logged_model("0", Some("m"), None, None, vec![], vec![])
            .await
            .unwrap();
        let from_logged = store
            .create_model_version(
                CreateModelVersion {
                    name: "risk".into(),
                    source: format!("models:/{}", logged.model_id),
                    ..Default::default()
                },
                &Actor::user("bob"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.version_artifact_uri(&from_logged).await.unwrap(),
            logged.artifact_location
        );
        assert!(
            store
                .resolve_model_uri(&format!("models:/{}", logged.model_id))
                .await
                .unwrap_err()
                .message
                .contains("not a registered model version")
        );
        let unknown = CreateModelVersion {
            name: "risk".into(),
            source: "x".into(),
            run_id: Some("0123456789abcdef0123456789abcdef".into()),
            ..Default::default()
        };
        assert_eq!(
            store
                .create_model_version(unknown, &Actor::user("bob"))
                .await
                .unwrap_err()
                .code,
            ErrorCode::ResourceDoesNotExist
        );
    }
}

#[tokio::test]
async fn concurrent_promotions_keep_one_holder_and_every_audit_row() {
    for Backend { store, .. } in backends().await {
        for _ in 0..8 {
            register(&store, "race").await;
        }
        let mut tasks = Vec::new();
        for writer in 0..8i64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..5i64 {
                    let version = (writer + round) % 8 + 1;
                    store
                        .set_registered_model_alias(
                            "race",
                            "production",
                            version,
                            &Actor::user(format!("w{writer}")),
                        )
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let moves: Vec<_> = store
            .registry_audit(Some("race"), 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "set_alias")
            .rev()
            .collect();
        assert_eq!(moves.len(), 40, "every promotion is audited");
        // The audit log is a chain: each move starts where the previous one ended.
        for pair in moves.windows(2) {
            assert_eq!(
                pair[1].from_version, pair[0].to_version,
                "audit chain broken: {pair:?}"
            );
        }
        let holder = store
            .get_model_version_by_alias("race", "production")
            .await
            .unwrap()
            .version;
        assert_eq!(Some(holder), moves.last().and_then(|e| e.to_version));
        let model = store.get_registered_model("race").await.unwrap();
        assert_eq!(model.aliases.len(), 1, "exactly one holder");
    }
}
