"""Export ONNX models the way other tools do, for `keel models import` tests.

    python tests/python/export_onnx_models.py --out DIR

Writes into DIR:
- sk_logreg.onnx: StandardScaler + LogisticRegression on breast_cancer
  (Scaler, LinearClassifier; zipmap=False);
- sk_forest.onnx: RandomForestClassifier on iris (TreeEnsembleClassifier,
  zipmap=False, so probabilities are a [N, 3] tensor);
- sk_gbr.onnx: GradientBoostingRegressor on diabetes (TreeEnsembleRegressor);
- torch_like.onnx: MatMul + Add + Sigmoid on an input [batch, 4] with a
  symbolic batch dimension, built with the onnx helper as
  torch.onnx.export writes a one-layer logistic model (torch itself is too
  big to install for a test);
- cancer_signature.json: the breast_cancer feature names in MLflow's
  signature format (`inputs` is a JSON string of column specs);
- cancer.csv, iris.csv, diabetes.csv: each data set with a `target`
  column (headers: the signature's names, or f0..);
- expected.json: what each model's signature should say (task, classes,
  feature count, producer), and the accuracy / R² that onnxruntime's own
  predictions score on the CSV, for `keel evaluate` to match.

Nothing is downloaded: the data sets ship inside scikit-learn. Seeds are fixed.
"""

import argparse
import json
import os

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper
from skl2onnx import __version__ as skl2onnx_version
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    expected = {}

    cancer = load_breast_cancer()
    x = cancer.data.astype(np.float32)
    logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, cancer.target)
    # zipmap=False: probabilities as a [N, 2] tensor, which keel's engine
    # serves (it refuses ZipMap's sequence of maps).
    save(to_onnx(logreg, x[:1], target_opset=17, options={"zipmap": False}), out, "sk_logreg.onnx")
    names = [str(name) for name in cancer.feature_names]
    with open(os.path.join(out, "cancer_signature.json"), "w") as f:
        json.dump(
            {
                "inputs": json.dumps([{"type": "float", "name": n} for n in names]),
                "outputs": json.dumps([{"type": "long"}]),
            },
            f,
        )
    expected["sk_logreg.onnx"] = {
        "task": "classification",
        "classes": ["0", "1"],
        "features": len(names),
        "first_feature": names[0],
        "ml": ["LinearClassifier", "Scaler"],
    }

    iris = load_iris()
    x = iris.data.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(x, iris.target)
    save(
        to_onnx(forest, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}, options={"zipmap": False}),
        out,
        "sk_forest.onnx",
    )
    expected["sk_forest.onnx"] = {
        "task": "classification",
        "classes": ["0", "1", "2"],
        "features": 4,
        "first_feature": "f0",
        "ml": ["TreeEnsembleClassifier"],
    }

    diabetes = load_diabetes()
    x = diabetes.data.astype(np.float32)
    gbr = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(x, diabetes.target)
    save(to_onnx(gbr, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}), out, "sk_gbr.onnx")
    expected["sk_gbr.onnx"] = {
        "task": "regression",
        "classes": [],
        "features": 10,
        "first_feature": "f0",
        "ml": ["TreeEnsembleRegressor"],
    }

    rng = np.random.default_rng(0)
    weights = helper.make_tensor("fc.weight", TensorProto.FLOAT, [4, 1], rng.normal(size=4).tolist())
    bias = helper.make_tensor("fc.bias", TensorProto.FLOAT, [1], [0.25])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "fc.weight"], ["/fc/MatMul_output_0"], name="/fc/MatMul"),
            helper.make_node("Add", ["/fc/MatMul_output_0", "fc.bias"], ["/fc/Add_output_0"], name="/fc/Add"),
            helper.make_node("Sigmoid", ["/fc/Add_output_0"], ["output"], name="/Sigmoid"),
        ],
        "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1])],
        initializer=[weights, bias],
    )
    torch_like = helper.make_model(
        graph,
        producer_name="pytorch",
        producer_version="2.5.1",
        opset_imports=[helper.make_opsetid("", 17)],
    )
    torch_like.ir_version = 8
    onnx.checker.check_model(torch_like)
    save(torch_like, out, "torch_like.onnx")
    expected["torch_like.onnx"] = {
        "task": "classification",
        "classes": ["0", "1"],
        "features": 4,
        "first_feature": "f0",
        "ml": [],
        "producer": "pytorch 2.5.1",
    }
    for name in ("sk_logreg.onnx", "sk_forest.onnx", "sk_gbr.onnx"):
        expected[name]["producer"] = f"skl2onnx {skl2onnx_version}"
    write_csv(out, "cancer.csv", names, cancer.data, cancer.target)
    write_csv(out, "iris.csv", [f"f{i}" for i in range(4)], iris.data, iris.target)
    write_csv(out, "diabetes.csv", [f"f{i}" for i in range(10)], diabetes.data, diabetes.target)
    for name, csv, y, task in [
        ("sk_logreg.onnx", "cancer.csv", cancer.target, "accuracy"),
        ("sk_forest.onnx", "iris.csv", iris.target, "accuracy"),
        ("sk_gbr.onnx", "diabetes.csv", diabetes.target, "r2"),
    ]:
        x = np.loadtxt(os.path.join(out, csv), delimiter=",", skiprows=1, usecols=range(expected[name]["features"]))
        session = onnxruntime.InferenceSession(os.path.join(out, name), providers=["CPUExecutionProvider"])
        answer = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
        if task == "accuracy":
            score = float(np.mean(np.asarray(answer).ravel() == y))
        else:
            predicted = np.asarray(answer, dtype=np.float64).ravel()
            score = float(1 - np.sum((y - predicted) ** 2) / np.sum((y - np.mean(y)) ** 2))
        expected[name]["data"] = csv
        expected[name]["ort"] = {task: score}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


def write_csv(out, name, columns, x, y):
    with open(os.path.join(out, name), "w") as f:
        f.write(",".join(['"' + c + '"' for c in columns] + ["target"]) + "\n")
        for row, target in zip(x, y):
            f.write(",".join(repr(float(v)) for v in row) + f",{target.item()!r}\n")


def save(model, out, name):
    with open(os.path.join(out, name), "wb") as f:
        f.write(model.SerializeToString())


if __name__ == "__main__":
    main()
