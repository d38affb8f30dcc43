"""Logs what keel-ui's browser test looks at, with the official MLflow client.

    MLFLOW_TRACKING_URI=http://127.0.0.1:PORT python ui_fixture.py

Two runs in experiment "ui-browser" with params, step metrics, a CSV, a PNG
and an HTML artifact, user input carrying <script> (run name, tag value,
param value), and a registered model "ui-model" whose version 1 has gate
results that passed and the alias "champion", and whose version 2 has gate
results that failed (the browser presses promote on it). Prints one JSON
line with the ids. MLFLOW_TRACKING_USERNAME/PASSWORD, when set, are sent on
keel's own API calls too.
"""

import json
import os
import struct
import sys
import tempfile
import zlib

import mlflow
import requests
from mlflow import MlflowClient

# Would set window.__xss if any page let it run.
XSS = "<script>window.__xss=1</script>"


def png(path, width=64, height=32):
    """A small gradient PNG written with the standard library only."""
    rows = b"".join(
        b"\x00" + b"".join(bytes([x * 4 % 256, y * 8 % 256, 160]) for x in range(width)) for y in range(height)
    )

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def main():
    uri = os.environ["MLFLOW_TRACKING_URI"]
    experiment_id = mlflow.set_experiment("ui-browser").experiment_id
    work = tempfile.mkdtemp()
    runs = []
    for i, (lr, model) in enumerate([(0.1, "gbdt"), (0.01, "rf")]):
        with mlflow.start_run(run_name=f"{XSS}run-{i}") as run:
            mlflow.log_params({"lr": lr, "model": model, "depth": 6, "note": XSS})
            mlflow.set_tag("team", XSS)
            for step in range(25):
                mlflow.log_metric("loss", 1.0 / (step + 1) + i * 0.05, step=step)
                mlflow.log_metric("val_accuracy", 0.5 + step * 0.015 - i * 0.04, step=step)
            with open(os.path.join(work, "predictions.csv"), "w") as f:
                f.write("id,score,label\n")
                for k in range(150):
                    f.write(f"{k},{k / 150:.4f},{'<b>yes</b>' if k % 2 else 'no'}\n")
            mlflow.log_artifact(os.path.join(work, "predictions.csv"), "tables")
            png(os.path.join(work, "roc.png"))
            mlflow.log_artifact(os.path.join(work, "roc.png"), "plots")
            with open(os.path.join(work, "report.html"), "w") as f:
                f.write("<!doctype html><html><body><h1>Report</h1>" + XSS + "</body></html>")
            mlflow.log_artifact(os.path.join(work, "report.html"))
            runs.append(run.info.run_id)

    client = MlflowClient()
    client.create_registered_model("ui-model", description="the browser test's model")
    version = client.create_model_version("ui-model", f"runs:/{runs[1]}/model", run_id=runs[1])
    gates = {
        "passed": True,
        "gates": [
            {"expression": "val_accuracy >= 0.8", "metric": "val_accuracy", "value": 0.82, "threshold": 0.8, "passed": True, "note": ""},
            {"expression": "loss <= production.loss", "metric": "loss", "value": 0.09, "threshold": None, "production": None, "passed": True, "note": "no production model yet"},
        ],
    }
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user else None
    answer = requests.post(
        f"{uri}/api/2.0/keel/registry/gates",
        json={"name": "ui-model", "version": version.version, "gate_results": gates},
        auth=auth,
        timeout=30,
    )
    answer.raise_for_status()
    client.set_registered_model_alias("ui-model", "champion", version.version)
    failed = client.create_model_version("ui-model", f"runs:/{runs[0]}/model", run_id=runs[0])
    answer = requests.post(
        f"{uri}/api/2.0/keel/registry/gates",
        json={
            "name": "ui-model",
            "version": failed.version,
            "gate_results": {
                "passed": False,
                "gates": [
                    {"expression": "val_accuracy >= 0.8", "metric": "val_accuracy", "value": 0.71, "threshold": 0.8, "passed": False, "note": ""},
                ],
            },
        },
        auth=auth,
        timeout=30,
    )
    answer.raise_for_status()
    print(json.dumps({"experiment_id": experiment_id, "runs": runs, "model": "ui-model", "version": version.version}))


if __name__ == "__main__":
    sys.exit(main())
