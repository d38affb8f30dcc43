//! keel-store's integration tests, one binary: every test runs against a
//! fresh SQLite file and, when `KEEL_TEST_POSTGRES_URL` names a server, a
//! fresh PostgreSQL database (mandatory with `CI=true`).

mod monitored;
mod registry;
mod store;
mod users;
mod util;
