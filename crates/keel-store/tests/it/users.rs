//! Users, grants and access tokens (issue 13) on both backends.

use keel_core::ErrorCode;
use keel_core::access::{Permission, ResourceType};
use keel_store::Store;

use crate::util::{Backend, backends};

async fn experiment(store: &Store, name: &str) -> String {
    store.create_experiment(name, None, &[]).await.unwrap()
}

#[tokio::test]
async fn users_grants_and_tokens() {
    for Backend { store, .. } in backends().await {
        let alice = store.create_user("alice", "hash-a", false).await.unwrap();
        assert!(!alice.is_admin);
        let duplicate = store.create_user("alice", "x", true).await.unwrap_err();
        assert_eq!(duplicate.code, ErrorCode::ResourceAlreadyExists);
        assert_eq!(
            store.create_user("", "x", false).await.unwrap_err().code,
            ErrorCode::InvalidParameterValue
        );
        store.create_user("bob", "hash-b", true).await.unwrap();
        let names: Vec<String> = store
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        let credential = store.user_credential("alice").await.unwrap().unwrap();
        assert_eq!(credential.password_hash, "hash-a");
        assert!(store.user_credential("nobody").await.unwrap().is_none());

        store
            .update_user_password("alice", "hash-a2")
            .await
            .unwrap();
        store.update_user_admin("alice", true).await.unwrap();
        let credential = store.user_credential("alice").await.unwrap().unwrap();
        assert_eq!(credential.password_hash, "hash-a2");
        assert!(credential.user.is_admin);
        assert_eq!(
            store
                .update_user_admin("nobody", true)
                .await
                .unwrap_err()
                .code,
            ErrorCode::ResourceDoesNotExist
        );

        // Grants: one per resource, a wildcard below a specific grant.
        let exp = experiment(&store, "grants").await;
        let kind = ResourceType::Experiment;
        assert_eq!(store.granted(alice.id, kind, &exp).await.unwrap(), None);
        store
            .grant("alice", kind, "*", Permission::Read)
            .await
            .unwrap();
        assert_eq!(
            store.granted(alice.id, kind, &exp).await.unwrap(),
            Some(Permission::Read)
        );
        store
            .grant("alice", kind, &exp, Permission::Edit)
            .await
            .unwrap();
        assert_eq!(
            store.granted(alice.id, kind, &exp).await.unwrap(),
            Some(Permission::Edit)
        );
        let again = store
            .grant("alice", kind, &exp, Permission::Manage)
            .await
            .unwrap_err();
        assert_eq!(again.code, ErrorCode::ResourceAlreadyExists);
        store
            .set_grant(alice.id, kind, &exp, Permission::Manage)
            .await
            .unwrap();
        assert_eq!(
            store.granted(alice.id, kind, &exp).await.unwrap(),
            Some(Permission::Manage)
        );
        store.revoke("alice", kind, &exp).await.unwrap();
        assert_eq!(
            store.revoke("alice", kind, &exp).await.unwrap_err().code,
            ErrorCode::ResourceDoesNotExist
        );
        assert_eq!(store.list_grants("alice").await.unwrap().len(), 1);

        // Grants on a registered model follow its rename.
        store
            .create_registered_model("risk", None, &[])
            .await
            .unwrap();
        let model = ResourceType::RegisteredModel;
        store
            .grant("alice", model, "risk", Permission::Use)
            .await
            .unwrap();
        store
            .rename_registered_model("risk", "risk2")
            .await
            .unwrap();
        assert_eq!(store.granted(alice.id, model, "risk").await.unwrap(), None);
        assert_eq!(
            store.granted(alice.id, model, "risk2").await.unwrap(),
            Some(Permission::Use)
        );

        // Tokens: found by hash until they expire or are revoked; listed without secrets.
        let now = keel_core::now_millis();
        let token = store.create_token("alice", "ci", "h1", None).await.unwrap();
        store
            .create_token("alice", "old", "h2", Some(now - 1))
            .await
            .unwrap();
        assert_eq!(
            store.token_user("h1", now).await.unwrap().unwrap().username,
            "alice"
        );
        assert!(store.token_user("h2", now).await.unwrap().is_none());
        assert!(store.token_user("h3", now).await.unwrap().is_none());
        let listed = store.list_tokens(Some("alice")).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(store.get_token(token.id).await.unwrap().name, "ci");
        store.revoke_token(token.id).await.unwrap();
        assert!(store.token_user("h1", now).await.unwrap().is_none());
        assert_eq!(
            store.revoke_token(token.id).await.unwrap_err().code,
            ErrorCode::ResourceDoesNotExist
        );

        // Deleting a user takes its grants and tokens with it.
        store.create_token("alice", "", "h4", None).await.unwrap();
        store.delete_user("alice").await.unwrap();
        assert!(store.token_user("h4", now).await.unwrap().is_none());
        assert!(store.list_tokens(None).await.unwrap().is_empty());
        assert_eq!(
            store.get_user("alice").await.unwrap_err().code,
            ErrorCode::ResourceDoesNotExist
        );
        let again = store.create_user("alice", "h", false).await.unwrap();
        assert_eq!(store.granted(again.id, kind, &exp).await.unwrap(), None);

        // The run and logged-model lookups the permission checks use.
        let run = store
            .create_run(keel_store::CreateRun {
                experiment_id: exp.clone(),
                user_id: "bob".into(),
                run_name: None,
                start_time: None,
                tags: vec![],
            })
            .await
            .unwrap();
        assert_eq!(
            store.run_experiment_id(&run.info.run_id).await.unwrap(),
            exp
        );
        assert_eq!(
            store.run_experiment_id("nope").await.unwrap_err().code,
            ErrorCode::ResourceDoesNotExist
        );
    }
}
