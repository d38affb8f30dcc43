#!/usr/bin/env python3
"""Batch benchmark: batch scoring rows/s and sharded profiling.

Called by bench/batch/run.sh (which first ensures the pinned venv of
bench/serving/requirements.txt: the same model stack as the serving bench).

(a) Scoring. The serving bench's LogisticRegression on sklearn's
    breast_cancer data (30 numeric columns; its build_model: 75% train
    split), saved as an MLflow model (mlflow.sklearn) and exported to ONNX
    (skl2onnx, zipmap=False) with a signature.json. --score-rows rows (default 1M) are drawn (with replacement,
    seed 0) from the data set and written once as CSV. Then, one after the
    other on the same file:
      - `keel predict ONNX_DIR data.csv --output out.parquet` (ONNX Runtime
        from the onnxruntime wheel; every core);
      - `mlflow models predict -m MLFLOW_DIR -i data.csv -t csv -o out.json
        --env-manager local` (the peer: MLflow's batch CLI);
      - the pandas pyfunc loop in this venv:
        `mlflow.pyfunc.load_model(DIR).predict(pd.read_csv(data.csv))`
        (in-process, timed from before read_csv to after predict; no output file).
    keel's labels are checked against sklearn's on the first 1,000 rows.
(b) Profiling. --profile-rows rows (default 10M; 6 numeric columns and one
    categorical) written once as Parquet with row groups of 250k rows
    (pyarrow). `keel monitor profile` of the whole file, then N = 1, 2, 4
    shards, each shard its own `keel monitor profile --shard I/N` process,
    all N started together (wall time until the last ends), then
    `keel monitor merge` of the N profiles; the merge's counts are checked
    against the whole's.

Writes <out>/batch-<UTC timestamp>.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

_spec = importlib.util.spec_from_file_location("tracking_bench", REPO / "bench" / "tracking" / "run_bench.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)
log = common.log


def timed(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def build_model(workdir: Path) -> dict:
    """The serving bench's LogisticRegression (MLflow model + ONNX export with
    a signature.json), loaded back for the label check."""
    import mlflow.sklearn
    from sklearn.datasets import load_breast_cancer

    spec = importlib.util.spec_from_file_location("serving_bench", REPO / "bench" / "serving" / "serving_bench.py")
    serving = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serving)
    built = serving.build_model("lr", workdir)
    x = load_breast_cancer(as_frame=True).data.astype("float64")
    return {"model": mlflow.sklearn.load_model(built["mlflow_dir"]), "x": x,
            "mlflow_dir": built["mlflow_dir"], "onnx_dir": built["onnx_dir"],
            "description": built["model"] + ", " + built["data"]}


def bench_scoring(args, workdir: Path, env: dict) -> dict:
    import numpy as np
    import pandas as pd
    import mlflow.pyfunc

    built = build_model(workdir)
    rng = np.random.default_rng(0)
    x = built["x"]
    rows = x.iloc[rng.integers(0, len(x), args.score_rows)].reset_index(drop=True)
    data = workdir / "score.csv"
    t0 = time.perf_counter()
    rows.to_csv(data, index=False)
    log(f"wrote {args.score_rows:,} rows to {data} in {time.perf_counter() - t0:.1f}s "
        f"({data.stat().st_size / 1e6:.0f} MB)")
    result = {"rows": args.score_rows, "columns": x.shape[1], "csv_bytes": data.stat().st_size,
              "model": built["description"],
              "runs": {}}

    out = workdir / "keel-out.parquet"
    keel_s = timed([args.keel_bin, "-q", "predict", built["onnx_dir"], str(data), "--output", str(out)], env)
    import pyarrow.parquet as pq
    table = pq.read_table(out)
    expected = built["model"].predict(rows.iloc[:1000])
    got = table.column("predictions").to_numpy()[:1000]
    agree = int((got == expected).sum())
    result["runs"]["keel predict"] = {"seconds": keel_s, "rows_per_s": args.score_rows / keel_s,
                                      "labels_equal_sklearn_first_1000": agree,
                                      "output_rows": table.num_rows}
    log(f"keel predict: {keel_s:.2f}s, {args.score_rows / keel_s:,.0f} rows/s, labels {agree}/1000")

    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    try:
        mlflow_s = timed([mlflow_bin, "models", "predict", "-m", built["mlflow_dir"], "-i", str(data),
                          "-t", "csv", "-o", str(workdir / "mlflow-out.json"), "--env-manager", "local"], env)
        result["runs"]["mlflow models predict"] = {"seconds": mlflow_s, "rows_per_s": args.score_rows / mlflow_s}
        log(f"mlflow models predict: {mlflow_s:.2f}s, {args.score_rows / mlflow_s:,.0f} rows/s")
    except SystemExit as failure:
        result["runs"]["mlflow models predict"] = {"error": str(failure)[-2000:]}
        log(f"mlflow models predict failed: {str(failure)[-500:]}")

    t0 = time.perf_counter()
    model = mlflow.pyfunc.load_model(built["mlflow_dir"])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    predictions = model.predict(pd.read_csv(data))
    loop_s = time.perf_counter() - t0
    result["runs"]["pandas pyfunc loop"] = {"seconds": loop_s, "rows_per_s": args.score_rows / loop_s,
                                            "load_model_s": load_s, "predictions": len(predictions)}
    log(f"pandas pyfunc loop: {loop_s:.2f}s (+{load_s:.2f}s load), {args.score_rows / loop_s:,.0f} rows/s")
    return result


def bench_profiling(args, workdir: Path, env: dict) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = workdir / "profile.parquet"
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    schema = pa.schema([(f"x{i}", pa.float64()) for i in range(6)] + [("city", pa.string())])
    cities = np.array(["rome", "oslo", "lima", "kyiv", "pune", "quito", "riga", "nairobi"])
    with pq.ParquetWriter(path, schema) as writer:
        left = args.profile_rows
        while left > 0:
            n = min(250_000, left)
            columns = [rng.normal(i, 1 + i, n) for i in range(6)]
            columns.append(cities[rng.integers(0, len(cities), n)])
            writer.write_table(pa.Table.from_arrays([pa.array(c) for c in columns], schema=schema),
                               row_group_size=250_000)
            left -= n
    log(f"wrote {args.profile_rows:,} rows to {path} in {time.perf_counter() - t0:.1f}s "
        f"({path.stat().st_size / 1e6:.0f} MB, {pq.ParquetFile(path).num_row_groups} row groups)")
    result = {"rows": args.profile_rows, "row_groups": pq.ParquetFile(path).num_row_groups,
              "parquet_bytes": path.stat().st_size, "runs": {}}

    whole = workdir / "whole.json"
    whole_s = timed([args.keel_bin, "-q", "monitor", "profile", str(path), "--output", str(whole)], env)
    result["runs"]["whole (no --shard)"] = {"seconds": whole_s, "rows_per_s": args.profile_rows / whole_s}
    log(f"whole: {whole_s:.2f}s")
    whole_profile = json.loads(whole.read_text())
    for n in (1, 2, 4):
        outputs = [workdir / f"shard-{i}-of-{n}.json" for i in range(n)]
        t0 = time.perf_counter()
        procs = [subprocess.Popen([args.keel_bin, "-q", "monitor", "profile", str(path), "--shard", f"{i}/{n}",
                                   "--output", str(outputs[i])], env=env, stderr=subprocess.PIPE, text=True)
                 for i in range(n)]
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"shard failed: {err[-2000:]}")
        shards_s = time.perf_counter() - t0
        merged = workdir / f"merged-{n}.json"
        merge_s = timed([args.keel_bin, "-q", "monitor", "merge", *map(str, outputs), "--output", str(merged)], env)
        merged_profile = json.loads(merged.read_text())
        same_counts = all(a[k] == b[k] for a, b in zip(whole_profile["columns"], merged_profile["columns"])
                          for k in ("count", "nulls", "histogram", "counts", "distinct", "min", "max") if k in a)
        result["runs"][f"{n} shard(s)"] = {
            "shards_wall_s": shards_s, "merge_s": merge_s, "total_s": shards_s + merge_s,
            "rows_per_s": args.profile_rows / (shards_s + merge_s),
            "merged_equals_whole_counts_and_sketches": same_counts,
            "shard_profile_bytes": [p.stat().st_size for p in outputs],
        }
        log(f"{n} shard(s): {shards_s:.2f}s + merge {merge_s:.3f}s; merged == whole: {same_counts}")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keel-bin", default=str(REPO / "target" / "release" / "keel"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--score-rows", type=int, default=1_000_000)
    ap.add_argument("--profile-rows", type=int, default=10_000_000)
    ap.add_argument("--only", choices=["scoring", "profiling"], default=None)
    ap.add_argument("--argv0", default="bench/batch/run.sh", help=argparse.SUPPRESS)
    ap.add_argument("--orig-args", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not os.path.exists(args.keel_bin):
        log(f"no keel binary at {args.keel_bin} (cargo build --release, or --keel-bin)")
        return 2
    args.keel_bin = str(Path(args.keel_bin).resolve())
    venv = Path(sys.prefix)
    ort_lib = next(iter(sorted((venv / "lib").glob("python3*/site-packages/onnxruntime/capi/libonnxruntime.so*"))), None)
    env = dict(os.environ, RUST_LOG="warn")
    if ort_lib:
        env["KEEL_ONNXRUNTIME_LIB"] = str(ort_lib)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    py = sys.executable
    out = {
        "benchmark": "batch",
        "timestamp_utc": stamp,
        "command": f"{args.argv0} {args.orig_args}".strip(),
        "machine": common.machine_info(),
        "versions": {
            "keel": common.cmd_version([args.keel_bin, "--version"]),
            "keel_bin": args.keel_bin,
            "python_packages": {p: common.cmd_version([py, "-c", f"import {p}; print({p}.__version__)"])
                                for p in ("mlflow", "sklearn", "pandas", "pyarrow", "onnxruntime", "numpy")},
            "onnxruntime_library": str(ort_lib) if ort_lib else None,
        },
        "notes": [
            "every run is alone on the machine (one after the other); the shards of one N run together.",
            "keel predict scores the ONNX export with ONNX Runtime (the onnxruntime wheel's library); "
            "mlflow models predict and the pyfunc loop score the scikit-learn model.",
            "mlflow models predict runs with --env-manager local (no conda/virtualenv): the pinned venv.",
        ],
    }
    root = Path(tempfile.mkdtemp(prefix="keel-bench-batch-"))
    if args.only in (None, "scoring"):
        out["scoring"] = bench_scoring(args, root, env)
    if args.only in (None, "profiling"):
        out["profiling"] = bench_profiling(args, root, env)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"batch-{stamp}.json"
    path.write_text(json.dumps(out, indent=1))
    log(f"wrote {path}")
    if "scoring" in out:
        print("\n| scorer | seconds | rows/s |\n|---|---:|---:|")
        for name, run in out["scoring"]["runs"].items():
            if "seconds" in run:
                print(f"| {name} | {run['seconds']:.2f} | {run['rows_per_s']:,.0f} |")
    if "profiling" in out:
        print("\n| profiling | wall s | merge s | rows/s |\n|---|---:|---:|---:|")
        for name, run in out["profiling"]["runs"].items():
            wall = run.get("shards_wall_s", run.get("seconds"))
            print(f"| {name} | {wall:.2f} | {run.get('merge_s', 0):.3f} | {run['rows_per_s']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
