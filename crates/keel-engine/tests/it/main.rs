//! keel-engine's integration tests, one binary.

mod engines;
