//! ONNX Runtime without hand work: with no KEEL_ONNXRUNTIME_LIB or
//! ORT_DYLIB_PATH, `keel serve --engine onnx` finds libonnxruntime.so in the
//! active Python environment's `onnxruntime` wheel and says which one it
//! loaded. The search order itself is unit-tested in keel-engine
//! (`onnx/locate.rs`, fake files in temporary folders).

use crate::util::{self, Serve};

#[test]
fn keel_serve_finds_onnx_runtime_in_the_active_venv_and_says_so() {
    // The pinned venv (tests/run.sh) has onnxruntime; skipped outside CI without it.
    let Some(python) = util::python_with("onnxruntime") else {
        return;
    };
    let venv = python.parent().unwrap().parent().unwrap().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let model = crate::serve::risk_model(dir.path());
    let model = model.to_str().unwrap();
    let serve = Serve::spawn_with(
        &["serve", model, "--engine", "onnx", "--no-log"],
        |command| {
            command
                .env_remove("KEEL_ONNXRUNTIME_LIB")
                .env_remove("ORT_DYLIB_PATH")
                .env_remove("CONDA_PREFIX")
                .env_remove("LD_LIBRARY_PATH")
                // As `source venv/bin/activate` leaves it.
                .env("VIRTUAL_ENV", &venv);
        },
    );
    let loaded = serve
        .stderr_line("ONNX Runtime")
        .expect("keel serve did not say which ONNX Runtime it loaded");
    let wheel = venv.join("lib");
    assert!(
        loaded.contains(&wheel.display().to_string())
            && loaded.contains("onnxruntime/capi/libonnxruntime.so"),
        "{loaded}"
    );
    assert!(
        loaded.contains(&format!("VIRTUAL_ENV={}", venv.display())),
        "{loaded}"
    );
    serve.stop();
}
