//! keel's end-to-end tests, one binary: the real `keel` driven as a user
//! drives it (processes, sockets, the official MLflow Python client), one
//! module per area, with the shared runner in `util`.

mod batch;
mod data;
mod e2e;
mod frontdoor;
mod harden;
mod learn;
mod loadtest;
mod missing;
mod monitor;
mod onnxruntime;
mod pipeline;
mod quickstart;
mod release;
mod replicas;
mod report;
mod serve;
mod util;
