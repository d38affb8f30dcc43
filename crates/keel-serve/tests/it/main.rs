//! keel-serve's integration tests, one binary: the protocols and contracts
//! over a server started in-process, and hot swap under traffic.

mod hot_swap;
mod protocols;
mod util;
