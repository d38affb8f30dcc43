//! The metadata store's behaviour, run against every backend: a fresh SQLite
//! file always, and a fresh PostgreSQL database when `KEEL_TEST_POSTGRES_URL`
//! names a server (CI sets it; with `CI=true` and no reachable server the
//! suite fails instead of skipping).

use keel_core::{
    Dataset, DatasetInput, ErrorCode, LoggedModelStatus, Metric, Param, Run, RunStatus, Tag,
    ViewType,
};
use keel_store::{CreateRun, ModelOrder, Store, StoreConfig, UpdateRun};

use crate::util::{Backend, backends};

fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> Metric {
    Metric::new(key, value, timestamp, step)
}

/// The first 10 runs of an experiment's view, in the default order.
async fn search_all(store: &Store, experiment_id: &str, view: ViewType) -> keel_core::Page<Run> {
    store
        .search_runs(&[experiment_id.to_string()], None, view, 10, &[], None)
        .await
        .expect("search runs")
}

async fn new_run(store: &Store, experiment_id: &str) -> String {
    store
        .create_run(CreateRun {
            experiment_id: experiment_id.to_string(),
            user_id: "bob".into(),
            run_name: Some("r".into()),
            start_time: None,
            tags: vec![],
        })
        .await
        .expect("create run")
        .info
        .run_id
}

#[tokio::test]
async fn experiments_lifecycle() {
    for Backend { store, .. } in backends().await {
        let default = store.get_experiment("0").await.unwrap();
        assert_eq!(default.name, "Default");

        let id = store
            .create_experiment("fraud", None, &[Tag::new("team", "risk")])
            .await
            .unwrap();
        let experiment = store.get_experiment(&id).await.unwrap();
        assert_eq!(
            experiment.artifact_location,
            format!("mlflow-artifacts:/{id}")
        );
        assert_eq!(experiment.tags, vec![Tag::new("team", "risk")]);
        assert_eq!(
            store
                .get_experiment_by_name("fraud")
                .await
                .unwrap()
                .experiment_id,
            id
        );

        let duplicate = store
            .create_experiment("fraud", None, &[])
            .await
            .unwrap_err();
        assert_eq!(duplicate.code, ErrorCode::ResourceAlreadyExists);
        assert_eq!(
            store.get_experiment("999").await.unwrap_err().code,
            ErrorCode::ResourceDoesNotExist
        );
        assert_eq!(
            store.get_experiment("abc").await.unwrap_err().code,
            ErrorCode::ResourceDoesNotExist
        );
        assert_eq!(
            store.get_experiment_by_name("nope").await.unwrap_err().code,
            ErrorCode::ResourceDoesNotExist
        );

        store.rename_experiment(&id, "fraud-v2").await.unwrap();
        store.set_experiment_tag(&id, "owner", "bob").await.unwrap();
        store.delete_experiment_tag(&id, "team").await.unwrap();
        assert_eq!(
            store
                .delete_experiment_tag(&id, "team")
                .await
                .unwrap_err()
                .code,
            ErrorCode::ResourceDoesNotExist
        );
        let experiment = store.get_experiment(&id).await.unwrap();
        assert_eq!(
            (experiment.name.as_str(), experiment.tags.clone()),
            ("fraud-v2", vec![Tag::new("owner", "bob")])
        );

        let run_id = new_run(&store, &id).await;
        store.delete_experiment(&id).await.unwrap();
        assert_eq!(
            store.get_run(&run_id).await.unwrap().info.lifecycle_stage,
            keel_core::LifecycleStage::Deleted
        );
        let active = store
            .search_experiments(ViewType::ActiveOnly, 100, None, &[], None)
            .await
            .unwrap();
        assert!(active.items.iter().all(|e| e.experiment_id != id));
        let deleted = store
            .search_experiments(ViewType::DeletedOnly, 100, None, &[], None)
            .await
            .unwrap();
        assert_eq!(deleted.items.len(), 1);
        store.restore_experiment(&id).await.unwrap();
        assert_eq!(
            store.get_run(&run_id).await.unwrap().info.lifecycle_stage,
            keel_core::LifecycleStage::Active
        );
        assert!(store.delete_experiment("0").await.is_err());
    }
}

#[tokio::test]
async fn experiment_search_filter_order_and_pages() {
    for Backend { store, .. } in backends().await {
        for name in ["alpha", "Beta", "gamma", "alphabet"] {
            store
                .create_experiment(
                    name,
                    None,
                    &[Tag::new(
                        "kind",
                        if name.starts_with('a') { "a" } else { "other" },
                    )],
                )
                .await
                .unwrap();
        }
        let names = |page: &keel_core::Page<keel_core::Experiment>| {
            page.items
                .iter()
                .map(|e| e.name.clone())
                .collect::<Vec<_>>()
        };
        let like = store
            .search_experiments(
                ViewType::ActiveOnly,
                10,
                Some("name LIKE 'alpha%'"),
                &["name ASC".into()],
                None,
            )
            .await
            .unwrap();
        assert_eq!(names(&like), vec!["alpha", "alphabet"]);
        // LIKE is case-sensitive, ILIKE is not (on both backends).
        let like = store
            .search_experiments(ViewType::ActiveOnly, 10, Some("name LIKE 'b%'"), &[], None)
            .await
            .unwrap();
        assert!(like.items.is_empty());
        let ilike = store
            .search_experiments(ViewType::ActiveOnly, 10, Some("name ILIKE 'b%'"), &[], None)
            .await
            .unwrap();
        assert_eq!(names(&ilike), vec!["Beta"]);
        let tagged = store
            .search_experiments(
                ViewType::ActiveOnly,
                10,
                Some("tags.kind = 'other'"),
                &["name DESC".into()],
                None,
            )
            .await
            .unwrap();
        assert_eq!(names(&tagged), vec!["gamma", "Beta"]);
        let first = store
            .search_experiments(ViewType::ActiveOnly, 2, None, &["name ASC".into()], None)
            .await
            .unwrap();
        assert_eq!(names(&first), vec!["Beta", "Default"]);
        let second = store
            .search_experiments(
                ViewType::ActiveOnly,
                2,
                None,
                &["name ASC".into()],
                first.next_page_token.as_deref(),
            )
            .await
            .unwrap();
        assert_eq!(names(&second), vec!["alpha", "alphabet"]);
        let third = store
            .search_experiments(
                ViewType::ActiveOnly,
                2,
                None,
                &["name ASC".into()],
                second.next_page_token.as_deref(),
            )
            .await
            .unwrap();
        assert_eq!(
            (names(&third), third.next_page_token),
            (vec!["gamma".to_string()], None)
        );
        let bad = store
            .search_experiments(ViewType::ActiveOnly, 10, Some("foo.bar = 1"), &[], None)
            .await
            .unwrap_err();
        assert_eq!(bad.code, ErrorCode::InvalidParameterValue);
        let bad = store
            .search_experiments(
                ViewType::ActiveOnly,
                10,
                Some("attributes.nope = 'x'"),
                &[],
                None,
            )
            .await
            .unwrap_err();
        assert!(bad.message.contains("nope"), "{}", bad.message);
    }
}

#[tokio::test]
async fn runs_params_metrics_tags() {
    for Backend { store, .. } in backends().await {
        let experiment = store.create_experiment("e", None, &[]).await.unwrap();
        let run = store
            .create_run(CreateRun {
                experiment_id: experiment.clone(),
                user_id: "bob".into(),
                run_name: Some("baseline".into()),
                start_time: Some(1000),
                tags: vec![Tag::new("team", "risk")],
            })
            .await
            .unwrap();
        let run_id = run.info.run_id.clone();
        assert_eq!(run_id.len(), 32);
        assert_eq!(
            run.info.artifact_uri,
            format!("mlflow-artifacts:/{experiment}/{run_id}/artifacts")
        );
        assert!(
            run.data
                .tags
                .contains(&Tag::new("mlflow.runName", "baseline"))
        );

        // Params are immutable; the same value again is fine.
        store
            .log_param(
                &run_id,
                Param {
                    key: "lr".into(),
                    value: "0.1".into(),
                },
            )
            .await
            .unwrap();
        store
            .log_param(
                &run_id,
                Param {
                    key: "lr".into(),
                    value: "0.1".into(),
                },
            )
            .await
            .unwrap();
        let changed = store
            .log_param(
                &run_id,
                Param {
                    key: "lr".into(),
                    value: "0.2".into(),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(changed.code, ErrorCode::InvalidParameterValue);
        assert!(
            changed
                .message
                .contains("Changing param values is not allowed"),
            "{}",
            changed.message
        );

        // Latest metric = max (step, timestamp, value), whatever the arrival order.
        for (value, timestamp, step) in [(0.5, 10, 2), (0.9, 5, 5), (0.1, 20, 1), (0.7, 30, 5)] {
            store
                .log_metric(&run_id, metric("acc", value, timestamp, step))
                .await
                .unwrap();
        }
        store
            .log_metric(&run_id, metric("acc", 0.7, 30, 5))
            .await
            .unwrap(); // idempotent duplicate
        store
            .log_metric(&run_id, metric("loss", f64::NAN, 1, 0))
            .await
            .unwrap();
        store
            .log_metric(&run_id, metric("big", f64::INFINITY, 1, 0))
            .await
            .unwrap();
        let run = store.get_run(&run_id).await.unwrap();
        let latest = |key: &str| {
            run.data
                .metrics
                .iter()
                .find(|m| m.key == key)
                .cloned()
                .unwrap()
        };
        assert_eq!(
            (
                latest("acc").value,
                latest("acc").step,
                latest("acc").timestamp
            ),
            (0.7, 5, 30)
        );
        assert!(latest("loss").value.is_nan());
        assert_eq!(latest("big").value, f64::MAX);
        let history = store
            .get_metric_history(&run_id, "acc", None, None)
            .await
            .unwrap();
        assert_eq!(history.items.len(), 4);
        let paged = store
            .get_metric_history(&run_id, "acc", Some(3), None)
            .await
            .unwrap();
        assert_eq!(paged.items.len(), 3);
        let rest = store
            .get_metric_history(&run_id, "acc", Some(3), paged.next_page_token.as_deref())
            .await
            .unwrap();
        assert_eq!((rest.items.len(), rest.next_page_token), (1, None));

        // Tags: set, overwrite, delete; renaming through mlflow.runName updates the run name.
        store
            .set_tag(&run_id, Tag::new("team", "fraud"))
            .await
            .unwrap();
        store
            .set_tag(&run_id, Tag::new("mlflow.runName", "renamed"))
            .await
            .unwrap();
        store.delete_tag(&run_id, "team").await.unwrap();
        assert_eq!(
            store.delete_tag(&run_id, "team").await.unwrap_err().code,
            ErrorCode::ResourceDoesNotExist
        );
        let info = store
            .update_run(
                &run_id,
                UpdateRun {
                    status: Some(RunStatus::Finished),
                    end_time: Some(2000),
                    run_name: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (info.status, info.end_time, info.run_name.as_str()),
            (RunStatus::Finished, Some(2000), "renamed")
        );

        // Unknown ids.
        assert_eq!(
            store
                .get_run("0123456789abcdef0123456789abcdef")
                .await
                .unwrap_err()
                .code,
            ErrorCode::ResourceDoesNotExist
        );
        let missing = store
            .log_metric("nope", metric("a", 1.0, 1, 0))
            .await
            .unwrap_err();
        assert_eq!(missing.code, ErrorCode::ResourceDoesNotExist);

        // A deleted run takes no more writes; restore brings it back.
        store.delete_run(&run_id).await.unwrap();
        assert_eq!(
            store
                .log_metric(&run_id, metric("a", 1.0, 1, 0))
                .await
                .unwrap_err()
                .code,
            ErrorCode::InvalidParameterValue
        );
        store.restore_run(&run_id).await.unwrap();
        store
            .log_metric(&run_id, metric("a", 1.0, 1, 0))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn log_batch_is_atomic_and_bounded() {
    for Backend { store, .. } in backends().await {
        let run_id = new_run(&store, "0").await;
        store
            .log_param(
                &run_id,
                Param {
                    key: "fixed".into(),
                    value: "1".into(),
                },
            )
            .await
            .unwrap();

        let batch = |bad: Option<(&str, &str)>| {
            let mut params = vec![Param {
                key: "new".into(),
                value: "x".into(),
            }];
            if let Some((k, v)) = bad {
                params.push(Param {
                    key: k.into(),
                    value: v.into(),
                });
            }
            (
                vec![metric("m", 1.0, 1, 0), metric("m", 2.0, 2, 1)],
                params,
                vec![Tag::new("t", "v")],
            )
        };
        // A param conflict rolls back the metrics, tags and other params of the same batch.
        let (metrics, params, tags) = batch(Some(("fixed", "2")));
        assert!(
            store
                .log_batch(&run_id, metrics, params, tags)
                .await
                .is_err()
        );
        // So does an invalid metric key.
        let (mut metrics, params, tags) = batch(None);
        metrics.push(metric("bad$key", 1.0, 1, 0));
        assert_eq!(
            store
                .log_batch(&run_id, metrics, params, tags)
                .await
                .unwrap_err()
                .code,
            ErrorCode::InvalidParameterValue
        );
        let run = store.get_run(&run_id).await.unwrap();
        assert!(run.data.metrics.is_empty(), "{:?}", run.data.metrics);
        assert_eq!(run.data.params.len(), 1);
        assert!(!run.data.tags.iter().any(|t| t.key == "t"));

        let too_many: Vec<Metric> = (0..1001).map(|i| metric("m", i as f64, i, i)).collect();
        let error = store
            .log_batch(&run_id, too_many, vec![], vec![])
            .await
            .unwrap_err();
        assert!(error.message.contains("1000"), "{}", error.message);
        let full: Vec<Metric> = (0..1000)
            .map(|i| metric(&format!("k{}", i % 10), i as f64, i, i))
            .collect();
        store
            .log_batch(&run_id, full, vec![], vec![])
            .await
            .unwrap();
        let history = store
            .get_metric_history(&run_id, "k3", None, None)
            .await
            .unwrap();
        assert_eq!(history.items.len(), 100);
        assert_eq!(store.get_run(&run_id).await.unwrap().data.metrics.len(), 10);
    }
}

#[tokio::test]
async fn concurrent_writers_lose_nothing() {
    for Backend { store, .. } in backends().await {
        let run_id = new_run(&store, "0").await;
        let mut tasks = Vec::new();
        for writer in 0..8i64 {
            let store = store.clone();
            let run_id = run_id.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25i64 {
                    let step = writer * 100 + i;
                    store
                        .log_metric(&run_id, metric("shared", step as f64, step, step))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let history = store
            .get_metric_history(&run_id, "shared", None, None)
            .await
            .unwrap();
        assert_eq!(history.items.len(), 200);
        let run = store.get_run(&run_id).await.unwrap();
        assert_eq!(run.data.metrics[0].step, 724);
    }
}

#[tokio::test]
async fn search_runs_grammar() {
    for Backend { store, .. } in backends().await {
        let experiment = store.create_experiment("search", None, &[]).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..6i64 {
            let run = store
                .create_run(CreateRun {
                    experiment_id: experiment.clone(),
                    user_id: "bob".into(),
                    run_name: Some(format!("run-{i}")),
                    start_time: Some(1000 + i),
                    tags: vec![Tag::new(
                        "family",
                        if i % 2 == 0 { "Linear" } else { "tree" },
                    )],
                })
                .await
                .unwrap();
            let run_id = run.info.run_id;
            let mut metrics = vec![metric("acc", i as f64 / 10.0, 1, 0)];
            if i != 3 {
                metrics.push(metric("loss", 1.0 - i as f64 / 10.0, 1, 0));
            }
            store
                .log_batch(
                    &run_id,
                    metrics,
                    vec![Param {
                        key: "depth".into(),
                        value: i.to_string(),
                    }],
                    vec![],
                )
                .await
                .unwrap();
            ids.push(run_id);
        }
        let search = |filter: &'static str, order: Vec<&'static str>| {
            let store = store.clone();
            let experiment = experiment.clone();
            async move {
                let order: Vec<String> = order.into_iter().map(String::from).collect();
                store
                    .search_runs(
                        &[experiment],
                        Some(filter),
                        ViewType::ActiveOnly,
                        100,
                        &order,
                        None,
                    )
                    .await
                    .map(|page| {
                        page.items
                            .iter()
                            .map(|r| r.info.run_name.clone())
                            .collect::<Vec<_>>()
                    })
            }
        };
        assert_eq!(
            search("metrics.acc > 0.25", vec!["metrics.acc DESC"])
                .await
                .unwrap(),
            vec!["run-5", "run-4", "run-3"]
        );
        assert_eq!(
            search("params.depth = '2'", vec![]).await.unwrap(),
            vec!["run-2"]
        );
        assert_eq!(
            search(
                "params.depth IN ('1', '4')",
                vec!["attributes.start_time ASC"]
            )
            .await
            .unwrap(),
            vec!["run-1", "run-4"]
        );
        assert_eq!(
            search("tags.family LIKE 'Lin%'", vec!["run_name"])
                .await
                .unwrap(),
            vec!["run-0", "run-2", "run-4"]
        );
        assert_eq!(
            search("tags.family LIKE 'lin%'", vec![]).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            search("tags.family ILIKE 'lin%'", vec!["run_name"])
                .await
                .unwrap(),
            vec!["run-0", "run-2", "run-4"]
        );
        assert_eq!(
            search("attributes.run_name = 'run-1'", vec![])
                .await
                .unwrap(),
            vec!["run-1"]
        );
        assert_eq!(
            search(
                "attributes.status = 'RUNNING' and metrics.acc < 0.15",
                vec!["run_name DESC"]
            )
            .await
            .unwrap(),
            vec!["run-1", "run-0"]
        );
        assert_eq!(
            search("metrics.acc >= 0.5 OR params.depth = '0'", vec!["run_name"])
                .await
                .unwrap(),
            vec!["run-0", "run-5"]
        );
        // Runs lacking the sort key come last in both directions.
        let by_loss = search("metrics.acc >= 0", vec!["metrics.loss ASC"])
            .await
            .unwrap();
        assert_eq!(by_loss.last().map(String::as_str), Some("run-3"));
        let by_loss = search("metrics.acc >= 0", vec!["metrics.loss DESC"])
            .await
            .unwrap();
        assert_eq!(by_loss.last().map(String::as_str), Some("run-3"));
        assert_eq!(
            search("tags.family IS NULL", vec![]).await.unwrap(),
            Vec::<String>::new()
        );
        // Default order: newest start_time first.
        assert_eq!(
            search("", vec![])
                .await
                .unwrap()
                .first()
                .map(String::as_str),
            Some("run-5")
        );
        // Errors name the problem.
        let error = search("params.depth = 2", vec![]).await.unwrap_err();
        assert!(error.message.contains("quoted"), "{}", error.message);
        let error = search("metrics.acc > 'x'", vec![]).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidParameterValue);
        let error = search("attributes.colour = 'red'", vec![])
            .await
            .unwrap_err();
        assert!(error.message.contains("colour"), "{}", error.message);
        // Pagination.
        let first = store
            .search_runs(
                std::slice::from_ref(&experiment),
                None,
                ViewType::ActiveOnly,
                4,
                &[],
                None,
            )
            .await
            .unwrap();
        let second = store
            .search_runs(
                std::slice::from_ref(&experiment),
                None,
                ViewType::ActiveOnly,
                4,
                &[],
                first.next_page_token.as_deref(),
            )
            .await
            .unwrap();
        assert_eq!(
            (
                first.items.len(),
                second.items.len(),
                second.next_page_token
            ),
            (4, 2, None)
        );
        // Deleted runs only show up when asked for.
        store.delete_run(&ids[0]).await.unwrap();
        let deleted = search_all(&store, &experiment, ViewType::DeletedOnly).await;
        assert_eq!(deleted.items.len(), 1);
    }
}

#[tokio::test]
async fn dataset_inputs_and_logged_models() {
    for Backend { store, .. } in backends().await {
        let experiment = store.create_experiment("lineage", None, &[]).await.unwrap();
        let run_id = new_run(&store, &experiment).await;
        let input = DatasetInput {
            dataset: Dataset {
                name: "train".into(),
                digest: "b3:abc123".into(),
                source_type: "keel".into(),
                source: "data/train.csv".into(),
                schema: Some("{\"columns\":[]}".into()),
                profile: Some("{\"num_rows\":10}".into()),
            },
            tags: vec![Tag::new("mlflow.data.context", "training")],
        };
        store
            .log_inputs(&run_id, vec![input.clone()], vec![])
            .await
            .unwrap();
        store
            .log_inputs(&run_id, vec![input.clone()], vec![])
            .await
            .unwrap(); // idempotent
        let run = store.get_run(&run_id).await.unwrap();
        assert_eq!(run.dataset_inputs, vec![input]);
        let found = store
            .search_runs(
                std::slice::from_ref(&experiment),
                Some("datasets.digest = 'b3:abc123' AND datasets.context = 'training'"),
                ViewType::ActiveOnly,
                10,
                &[],
                None,
            )
            .await
            .unwrap();
        assert_eq!(found.items.len(), 1);

        let model = store
            .create_logged_model(
                &experiment,
                Some("model"),
                Some(&run_id),
                None,
                vec![Param {
                    key: "C".into(),
                    value: "1".into(),
                }],
                vec![],
            )
            .await
            .unwrap();
        assert!(model.model_id.starts_with("m-"));
        assert_eq!(
            model.artifact_location,
            format!(
                "mlflow-artifacts:/{experiment}/models/{}/artifacts",
                model.model_id
            )
        );
        assert_eq!(model.status, LoggedModelStatus::Pending);
        let mut with_model = metric("acc", 0.9, 5, 0);
        with_model.model_id = Some(model.model_id.clone());
        store
            .log_batch(&run_id, vec![with_model], vec![], vec![])
            .await
            .unwrap();
        store
            .log_outputs(
                &run_id,
                vec![keel_core::ModelOutput {
                    model_id: model.model_id.clone(),
                    step: 0,
                }],
            )
            .await
            .unwrap();
        store
            .set_logged_model_tags(&model.model_id, vec![Tag::new("stage", "candidate")])
            .await
            .unwrap();
        let model = store
            .finalize_logged_model(&model.model_id, LoggedModelStatus::Ready)
            .await
            .unwrap();
        assert_eq!(model.status, LoggedModelStatus::Ready);
        assert_eq!(model.metrics.len(), 1);
        assert_eq!(model.metrics[0].run_id.as_deref(), Some(run_id.as_str()));
        assert_eq!(model.tags, vec![Tag::new("stage", "candidate")]);
        let run = store.get_run(&run_id).await.unwrap();
        assert_eq!(run.model_outputs.len(), 1);
        let page = store
            .search_logged_models(
                std::slice::from_ref(&experiment),
                Some("name = 'model'"),
                10,
                &[ModelOrder {
                    field_name: "creation_timestamp".into(),
                    ascending: false,
                }],
                None,
            )
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        let none = store
            .search_logged_models(
                std::slice::from_ref(&experiment),
                Some("name = 'notes.txt'"),
                10,
                &[],
                None,
            )
            .await
            .unwrap();
        assert!(none.items.is_empty());
        let mut unknown = metric("acc", 0.9, 6, 0);
        unknown.model_id = Some("m-doesnotexist".into());
        assert_eq!(
            store
                .log_batch(&run_id, vec![unknown], vec![], vec![])
                .await
                .unwrap_err()
                .code,
            ErrorCode::ResourceDoesNotExist
        );
    }
}

#[tokio::test]
async fn migrations_are_versioned_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite:///{}", dir.path().join("keel.db").display());
    let store = Store::open(StoreConfig::new(uri.clone())).await.unwrap();
    let id = store.create_experiment("kept", None, &[]).await.unwrap();
    let version = store.schema_version().await.unwrap();
    assert!(version >= 1);
    store.close().await;
    let reopened = Store::open(StoreConfig::new(uri)).await.unwrap();
    assert_eq!(reopened.schema_version().await.unwrap(), version);
    assert_eq!(reopened.get_experiment(&id).await.unwrap().name, "kept");
}

#[tokio::test]
async fn count_runs_by_view() {
    for Backend { store, .. } in backends().await {
        let id = store.create_experiment("counted", None, &[]).await.unwrap();
        let other = store.create_experiment("other", None, &[]).await.unwrap();
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(new_run(&store, &id).await);
        }
        new_run(&store, &other).await;
        store.delete_run(&runs[0]).await.unwrap();
        assert_eq!(
            store.count_runs(&id, ViewType::ActiveOnly).await.unwrap(),
            2
        );
        assert_eq!(
            store.count_runs(&id, ViewType::DeletedOnly).await.unwrap(),
            1
        );
        assert_eq!(store.count_runs(&id, ViewType::All).await.unwrap(), 3);
        assert_eq!(store.count_runs("nope", ViewType::All).await.unwrap(), 0);
    }
}

/// A search's page gets each run's own side data, whatever the backend's plan:
/// metrics, params and tags by key, inputs in input id order, model outputs by
/// model id, and a run with nothing logged gets nothing.
#[tokio::test]
async fn a_page_of_runs_gets_each_runs_own_data() {
    for Backend { store, .. } in backends().await {
        let experiment = store.create_experiment("page", None, &[]).await.unwrap();
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(new_run(&store, &experiment).await);
        }
        let models = [
            store
                .create_logged_model(&experiment, Some("b"), None, None, vec![], vec![])
                .await
                .unwrap()
                .model_id,
            store
                .create_logged_model(&experiment, Some("a"), None, None, vec![], vec![])
                .await
                .unwrap()
                .model_id,
        ];
        for (i, run) in runs.iter().enumerate().take(2) {
            let keys = ["zeta", "alpha", "mid"];
            store
                .log_batch(
                    run,
                    keys.iter()
                        .map(|k| metric(k, i as f64, 1, 0))
                        .chain([metric("nan", f64::NAN, 1, 0)])
                        .collect(),
                    keys.iter()
                        .map(|k| Param {
                            key: format!("{k}{i}"),
                            value: format!("v{i}"),
                        })
                        .collect(),
                    keys.iter().map(|k| Tag::new(*k, format!("t{i}"))).collect(),
                )
                .await
                .unwrap();
        }
        let dataset = |name: &str| DatasetInput {
            dataset: Dataset {
                name: name.into(),
                digest: format!("d-{name}"),
                source_type: "keel".into(),
                source: format!("data/{name}.csv"),
                schema: None,
                profile: Some("{}".into()),
            },
            tags: vec![
                Tag::new("z", name),
                Tag::new("mlflow.data.context", "training"),
            ],
        };
        store
            .log_inputs(
                &runs[1],
                vec![dataset("one"), dataset("two")],
                vec![keel_core::ModelInput {
                    model_id: models[0].clone(),
                }],
            )
            .await
            .unwrap();
        store
            .log_outputs(
                &runs[0],
                models
                    .iter()
                    .map(|m| keel_core::ModelOutput {
                        model_id: m.clone(),
                        step: 3,
                    })
                    .collect(),
            )
            .await
            .unwrap();

        let page = search_all(&store, &experiment, ViewType::ActiveOnly).await;
        assert_eq!(page.items.len(), 3);
        for found in &page.items {
            let i = runs.iter().position(|r| *r == found.info.run_id).unwrap();
            let data = &found.data;
            if i == 2 {
                assert!(data.metrics.is_empty() && data.params.is_empty());
                assert!(data.tags.iter().all(|t| t.key.starts_with("mlflow.")));
                assert!(found.dataset_inputs.is_empty() && found.model_inputs.is_empty());
                assert!(found.model_outputs.is_empty());
                continue;
            }
            let metric_keys: Vec<&str> = data.metrics.iter().map(|m| m.key.as_str()).collect();
            assert_eq!(metric_keys, ["alpha", "mid", "nan", "zeta"]);
            assert!(data.metrics[2].value.is_nan());
            assert!(
                data.metrics
                    .iter()
                    .filter(|m| m.key != "nan")
                    .all(|m| m.value == i as f64)
            );
            let params: Vec<(&str, &str)> = data
                .params
                .iter()
                .map(|p| (p.key.as_str(), p.value.as_str()))
                .collect();
            let (a, m, z) = (format!("alpha{i}"), format!("mid{i}"), format!("zeta{i}"));
            let v = format!("v{i}");
            assert_eq!(params, [(a.as_str(), v.as_str()), (&m, &v), (&z, &v)]);
            let tags: Vec<&str> = data.tags.iter().map(|t| t.key.as_str()).collect();
            assert!(tags.starts_with(&["alpha", "mid"]) && tags.contains(&"zeta"));
            assert!(tags.is_sorted());
            assert!(
                data.tags
                    .iter()
                    .filter(|t| t.key.len() < 6)
                    .all(|t| t.value == format!("t{i}"))
            );
            if i == 1 {
                let mut names: Vec<&str> = found
                    .dataset_inputs
                    .iter()
                    .map(|d| d.dataset.name.as_str())
                    .collect();
                names.sort();
                assert_eq!(names, ["one", "two"]);
                for input in &found.dataset_inputs {
                    assert_eq!(input.dataset, dataset(&input.dataset.name).dataset);
                    let tag_keys: Vec<&str> = input.tags.iter().map(|t| t.key.as_str()).collect();
                    assert_eq!(tag_keys, ["mlflow.data.context", "z"]);
                }
                assert_eq!(found.model_inputs.len(), 1);
                assert_eq!(found.model_inputs[0].model_id, models[0]);
                assert!(found.model_outputs.is_empty());
            } else {
                assert!(found.dataset_inputs.is_empty() && found.model_inputs.is_empty());
                let mut expected = models.to_vec();
                expected.sort();
                let outputs: Vec<&str> = found
                    .model_outputs
                    .iter()
                    .map(|o| o.model_id.as_str())
                    .collect();
                assert_eq!(outputs, expected);
                assert!(found.model_outputs.iter().all(|o| o.step == 3));
            }
        }
        // A single run reads the same way.
        let one = store.get_run(&runs[1]).await.unwrap();
        let searched = page
            .items
            .iter()
            .find(|r| r.info.run_id == runs[1])
            .unwrap();
        // (compared as text: the NaN metric is not equal to itself)
        assert_eq!(format!("{one:?}"), format!("{searched:?}"));
    }
}
