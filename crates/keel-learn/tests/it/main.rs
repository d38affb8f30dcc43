//! keel-learn's integration tests, one binary: parity with onnxruntime on
//! keel's own ONNX exports, and accuracy against scikit-learn.

mod onnx_parity;
mod sklearn_parity;
mod util;
