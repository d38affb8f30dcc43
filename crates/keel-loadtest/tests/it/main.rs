//! keel-loadtest's integration tests, one binary.

mod loadtest;
