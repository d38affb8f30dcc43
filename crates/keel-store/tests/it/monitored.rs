//! The monitoring overview: one row per monitored model with its newest verdict.

use keel_store::NewVerdict;

use crate::util::backends;

#[tokio::test]
async fn monitored_models_show_each_models_newest_verdict() {
    for backend in backends().await {
        let store = &backend.store;
        assert!(store.monitored_models(10).await.unwrap().is_empty());
        for (model, rows, drifted) in [
            ("churn", 10, false),
            ("risk", 20, true),
            ("churn", 30, true),
            ("risk", 40, false),
            ("churn", 50, false),
        ] {
            store
                .record_verdict(
                    &NewVerdict {
                        model: model.into(),
                        window_start: Some(1_000),
                        rows,
                        drifted,
                        verdict: "{}".into(),
                    },
                    "watcher",
                )
                .await
                .unwrap();
        }
        let models = store.monitored_models(10).await.unwrap();
        let seen: Vec<(&str, i64, i64, bool)> = models
            .iter()
            .map(|m| (m.model.as_str(), m.verdicts, m.rows, m.drifted))
            .collect();
        assert_eq!(
            seen,
            vec![("churn", 3, 50, false), ("risk", 2, 40, false)],
            "{:?}",
            store.dialect()
        );
        assert!(models[0].last_recorded >= models[1].last_recorded);
        assert_eq!(store.monitored_models(1).await.unwrap().len(), 1);
    }
}
