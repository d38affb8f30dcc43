"""Check keel-exported ONNX models against keel's native predictions with
onnxruntime.

    python tests/python/check_onnx_parity.py DIR

DIR holds one folder per model, each with model.onnx, inputs.csv (the graph
input, one row per line, NaN for missing) and expected.csv (keel's native
probabilities or values). Exits 1 if any output differs by more than 1e-5
(absolute for probabilities, relative for regression values) or if any
predicted label is not a most probable class of keel's probabilities (ties
within 1e-6 may go either way).
"""

import os
import sys

import numpy as np
import onnxruntime as ort


def main():
    root = sys.argv[1]
    failures = []
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if not os.path.isfile(os.path.join(folder, "model.onnx")):
            continue
        inputs = np.loadtxt(os.path.join(folder, "inputs.csv"), delimiter=",", ndmin=2).astype(np.float32)
        expected = np.loadtxt(os.path.join(folder, "expected.csv"), delimiter=",", ndmin=2)
        session = ort.InferenceSession(os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"])
        outputs = {o.name: v for o, v in zip(session.get_outputs(), session.run(None, {"input": inputs}))}
        if "probabilities" in outputs:
            got = outputs["probabilities"].astype(np.float64)
            diff = float(np.max(np.abs(got - expected)))
            # A label may differ only where keel's top two probabilities tie (to 1e-6).
            chosen = expected[np.arange(len(expected)), outputs["label"]]
            labels_equal = bool(np.all(chosen >= expected.max(axis=1) - 1e-6))
            ok = diff <= 1e-5 and labels_equal
            print(f"{name}: max |probability diff| {diff:.2e}, labels equal: {labels_equal}")
        else:
            got = outputs["variable"].astype(np.float64)
            diff = float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1.0)))
            ok = diff <= 1e-5
            print(f"{name}: max relative value diff {diff:.2e}")
        if not ok:
            failures.append(name)
    if failures:
        print("ONNX parity failed for: " + ", ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
