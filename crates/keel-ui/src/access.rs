//! What a caller may read: the one place every page asks.
//!
//! Today every authenticated caller may read everything (the server's only
//! authentication is the shared token, or none on loopback). When users and
//! permissions arrive (issue 13), these functions consult the permission
//! table for `caller.user` and the pages follow without change.

use keel_core::Error;
use keel_server::AppState;
use keel_server::auth::Caller;

use crate::html::PageError;

/// May `caller` read experiment `experiment_id`, its runs and their artifacts?
pub async fn may_read_experiment(
    _state: &AppState,
    _caller: &Caller,
    _experiment_id: &str,
) -> Result<bool, Error> {
    Ok(true)
}

/// May `caller` read registered model `name` and its versions?
pub async fn may_read_model(
    _state: &AppState,
    _caller: &Caller,
    _name: &str,
) -> Result<bool, Error> {
    Ok(true)
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
