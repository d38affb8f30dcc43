//! keel-server's integration tests, one binary: the router in process
//! (tower's `oneshot` on `keel_server::router`, a temporary SQLite store
//! and artifact folder), every route with one success and one error in
//! MLflow's envelope.

mod auth;
mod bad_input;
mod routes;
mod util;
