//! What a caller may read: the one place every page asks.
//!
//! The answer is keel-server's `Auth::permission`, the same one the REST API's
//! permission table uses: admins (and the open server's anonymous caller, and
//! the shared token) read everything; a basic-auth user reads where a grant
//! or `default_permission` gives at least READ.

use keel_core::Error;
use keel_core::access::{Permission, ResourceType};
use keel_server::AppState;
use keel_server::auth::Caller;

use crate::html::PageError;

/// May `caller` read experiment `experiment_id`, its runs and their artifacts?
pub async fn may_read_experiment(
    state: &AppState,
    caller: &Caller,
    experiment_id: &str,
) -> Result<bool, Error> {
    state
        .auth
        .may_read_experiment(&state.store, caller, experiment_id)
        .await
}

/// May `caller` read registered model `name` and its versions?
pub async fn may_read_model(state: &AppState, caller: &Caller, name: &str) -> Result<bool, Error> {
    state.auth.may_read_model(&state.store, caller, name).await
}

/// What `caller` holds on registered model `name` (the registry's buttons
/// compare it with what a promotion or rollback needs).
pub async fn model_permission(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<Permission, Error> {
    state
        .auth
        .permission(&state.store, caller, ResourceType::RegisteredModel, name)
        .await
}

/// Fails with "not allowed" unless `caller` may read the experiment.
pub async fn check_experiment(
    state: &AppState,
    caller: &Caller,
    experiment_id: &str,
) -> Result<(), PageError> {
    if may_read_experiment(state, caller, experiment_id).await? {
        Ok(())
    } else {
        Err(PageError::Forbidden(format!("experiment {experiment_id}")))
    }
}

/// Fails with "not allowed" unless `caller` may read the model.
pub async fn check_model(state: &AppState, caller: &Caller, name: &str) -> Result<(), PageError> {
    if may_read_model(state, caller, name).await? {
        Ok(())
    } else {
        Err(PageError::Forbidden(format!("model {name}")))
    }
}
