#!/usr/bin/env python3
"""Serving benchmark: keel serve vs mlflow models serve, same model, same run.

Called by bench/serving/run.sh (which first ensures the pinned venv of
bench/serving/requirements.txt). Steps:

  1. train each model (RandomForestClassifier(50), LogisticRegression) on
     sklearn's breast_cancer data (stratified 75/25 split, random_state=0);
     save it as an MLflow model (mlflow.sklearn, with a signature) and export
     it to ONNX (skl2onnx, zipmap=False) next to a signature.json holding the
     column names and training ranges (so keel's input contract has ranges
     to check);
  2. write the request bodies: MLflow `dataframe_split` JSON with 1 and with
     100 test rows (rows inside the training range), the same bytes for both
     servers;
  3. for each server, one after the other: start it (127.0.0.1, free port,
     own process group), time launch -> GET /health 200, check that its
     predictions for the 100-row body equal sklearn's, then load it:
       - `keel loadtest URL --body B -c C --duration D --warmup 2s`
         (closed loop) and `wrk -t2 -cC -dD --latency -s wrk.lua URL`,
         at 1 row and at 100 rows per request;
       - one connection, 1 row, keel loadtest (serial latency);
     sample its memory, stop it;
  4. a load-generator check: keel loadtest vs wrk, closed loop, on a trivial
     endpoint (keel server's GET /health), to show the generator's ceiling.

mlflow runs as `mlflow models serve -m DIR --env-manager local -w 1`; keel as
`keel serve DIR --log-dir LOG` (prediction logging on). Writes
<out>/serving-<UTC timestamp>.json and prints Markdown tables with ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# Process-tree memory, server lifecycle and machine facts are shared with the
# tracking benchmark.
_spec = importlib.util.spec_from_file_location("tracking_bench", REPO / "bench" / "tracking" / "run_bench.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)
log, loadavg, Server, tree_memory = common.log, common.loadavg, common.Server, common.tree_memory

MODELS = {
    "rf": "RandomForestClassifier(n_estimators=50, random_state=0)",
    "lr": "LogisticRegression(max_iter=10000)",
}


# ------------------------------------------------------------------ model and bodies


def build_model(kind: str, workdir: Path) -> dict:
    """Trains, saves (MLflow + ONNX + signature.json), writes bodies; returns paths and facts."""
    import numpy as np
    import onnxruntime as ort
    import pandas as pd
    from mlflow.models import infer_signature
    import mlflow.sklearn
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer(as_frame=True)
    x, y = data.data.astype("float64"), data.target
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    model = (RandomForestClassifier(n_estimators=50, random_state=0) if kind == "rf"
             else LogisticRegression(max_iter=10000))
    t0 = time.perf_counter()
    model.fit(x_train, y_train)
    fit_s = time.perf_counter() - t0
    accuracy = float((model.predict(x_test) == y_test).mean())

    mlflow_dir = workdir / f"{kind}-mlflow"
    # MLflow 3.17 saves with skops, which asks which non-default types to trust
    # (the trees of the forest we have just trained).
    trusted = ["sklearn.tree._tree.Tree"] if kind == "rf" else None
    mlflow.sklearn.save_model(model, str(mlflow_dir), skops_trusted_types=trusted,
                              signature=infer_signature(x_train, model.predict(x_train)))

    onnx_dir = workdir / f"{kind}-onnx"
    onnx_dir.mkdir()
    onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
                          options={id(model): {"zipmap": False}})
    (onnx_dir / "model.onnx").write_bytes(onx.SerializeToString())
    lo, hi, mean = x_train.min(), x_train.max(), x_train.mean()
    signature = {
        "inputs": [{"name": c, "type": "numeric", "min": float(lo[c]), "max": float(hi[c]),
                    "mean": float(mean[c])} for c in x.columns],
        "classes": [int(c) for c in model.classes_],
        "task": "classification",
    }
    (onnx_dir / "signature.json").write_text(json.dumps(signature, indent=1))

    # The ONNX export must answer like sklearn.
    session = ort.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": x_test.to_numpy(np.float32)})
    onnx_labels, onnx_proba = outputs[0], outputs[1]
    proba_diff = float(np.abs(onnx_proba - model.predict_proba(x_test)).max())
    labels_equal = int((onnx_labels == model.predict(x_test)).sum())

    # Bodies: test rows inside the training range (keel checks ranges), cycled to 100.
    inside = x_test[((x_test >= lo) & (x_test <= hi)).all(axis=1)]
    rows = pd.concat([inside] * (100 // max(len(inside), 1) + 1)).iloc[:100]
    bodies = {}
    for n in (1, 100):
        part = rows.iloc[:n]
        body = {"dataframe_split": {"columns": list(x.columns), "data": part.to_numpy().tolist()}}
        path = workdir / f"{kind}-body-{n}.json"
        path.write_text(json.dumps(body))
        bodies[n] = {"path": str(path), "bytes": path.stat().st_size,
                     "expected": [int(v) for v in model.predict(part)]}
    return {
        "model": MODELS[kind],
        "data": "sklearn breast_cancer, 426 train / 143 test rows, stratified, random_state=0",
        "fit_s": round(fit_s, 3),
        "test_accuracy": accuracy,
        "onnx_vs_sklearn_max_proba_diff": proba_diff,
        "onnx_labels_equal": f"{labels_equal}/{len(x_test)}",
        "test_rows_inside_training_range": len(inside),
        "mlflow_dir": str(mlflow_dir),
        "onnx_dir": str(onnx_dir),
        "bodies": bodies,
    }


def labels_of(answer) -> list | None:
    """Class labels from a scoring answer: {"predictions": [...]}, items numbers,
    strings or objects with a label field."""
    preds = answer.get("predictions") if isinstance(answer, dict) else answer
    if not isinstance(preds, list):
        return None
    out = []
    for p in preds:
        if isinstance(p, dict):
            p = next((p[k] for k in ("label", "prediction", "class", "predicted_label") if k in p), None)
        elif isinstance(p, list) and len(p) == 1:
            p = p[0]
        try:
            out.append(int(float(p)))
        except (TypeError, ValueError):
            return None
    return out


def check_predictions(url: str, body: dict) -> dict:
    data = Path(body["path"]).read_bytes()
    req = urllib.request.Request(f"{url}/invocations", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    res = {"status": status, "answer_head": raw[:300].decode(errors="replace")}
    try:
        labels = labels_of(json.loads(raw))
    except ValueError:
        labels = None
    expected = body["expected"]
    res["equal_to_sklearn"] = (f"{sum(a == b for a, b in zip(labels, expected))}/{len(expected)}"
                               if labels is not None and len(labels) == len(expected) else "unreadable")
    res["ok"] = status == 200 and labels == expected
    return res


# ------------------------------------------------------------------ load generators


def keel_loadtest(keel_bin: str, url: str, body: str | None, connections: int, duration: float,
                  warmup: float = 2.0) -> dict:
    # keel's durations need a unit: whole milliseconds.
    cmd = [keel_bin, "loadtest", url, "-c", str(connections), "--duration", f"{round(duration * 1000)}ms",
           "--warmup", f"{round(warmup * 1000)}ms", "--timeout", "30s", "--json", "--quiet"]
    if body:
        cmd += ["--body", body]
    res = {"tool": "keel loadtest", "command": " ".join(shlex.quote(c) for c in cmd),
           "loadavg_before": loadavg()}
    env = dict(os.environ, RUST_BACKTRACE="0")
    cp = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + warmup + 120)
    if cp.returncode != 0:
        res["error"] = f"exit {cp.returncode}: {cp.stderr.strip()[-500:]}"
        return res
    r = json.loads(cp.stdout)
    res.update({k: r[k] for k in ("requests", "ok", "errors", "error_rate", "rps", "p50_ms", "p90_ms",
                                  "p99_ms", "max_ms", "duration_s", "error_kinds")})
    return res


def wrk(url: str, body: str | None, connections: int, duration: float) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{int(round(duration))}s", "--timeout", "30s", "--latency"]
    env = dict(os.environ)
    env.pop("WRK_BODY_FILE", None)
    if body:
        env["WRK_BODY_FILE"] = body
    cmd += ["-s", str(HERE / "wrk.lua"), url]
    res = {"tool": "wrk", "command": (f"WRK_BODY_FILE={shlex.quote(body)} " if body else "")
           + " ".join(shlex.quote(c) for c in cmd), "loadavg_before": loadavg()}
    if shutil.which("wrk") is None:
        res["error"] = "wrk not installed (apt-get install wrk)"
        return res
    cp = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 120)
    line = next((ln for ln in cp.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if cp.returncode != 0 or line is None:
        res["error"] = f"exit {cp.returncode}: {(cp.stderr or cp.stdout).strip()[-500:]}"
        return res
    w = json.loads(line[len("WRK_JSON "):])
    errors = sum(w[k] for k in ("errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout"))
    secs = w["duration_us"] / 1e6
    res.update({"requests": w["requests"], "errors": errors,
                "error_rate": errors / w["requests"] if w["requests"] else 0.0,
                "rps": w["requests"] / secs if secs else 0.0,
                "p50_ms": w["p50_us"] / 1e3, "p90_ms": w["p90_us"] / 1e3, "p99_ms": w["p99_us"] / 1e3,
                "max_ms": w["max_us"] / 1e3, "duration_s": secs, "wrk": w})
    return res


# ------------------------------------------------------------------ one server


def serve_and_load(name: str, cmd: list[str], workdir: Path, port: int, model: dict, args) -> dict:
    res: dict = {"command": " ".join(shlex.quote(c) for c in cmd), "loads": {}}
    env = dict(os.environ, RUST_BACKTRACE="0")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    srv = Server(name, cmd, env, workdir, port)
    try:
        log(f"{name}: starting: {res['command']}")
        res["startup_s"] = round(srv.start_and_wait(args.startup_timeout), 3)
        log(f"{name}: healthy after {res['startup_s']} s")
        res["predictions"] = check_predictions(srv.url, model["bodies"][100])
        log(f"{name}: predictions for 100 rows equal to sklearn: {res['predictions']['equal_to_sklearn']}")
        if not res["predictions"]["ok"]:
            raise RuntimeError(f"{name} does not answer like sklearn: {res['predictions']}")
        url = f"{srv.url}/invocations"
        for rows in (1, 100):
            body = model["bodies"][rows]["path"]
            for tool in ("keel", "wrk"):
                key = f"{rows}row-{tool}"
                log(f"{name}: {key}: {args.connections} connections, {args.duration} s")
                if tool == "keel":
                    r = keel_loadtest(args.keel_bin, url, body, args.connections, args.duration)
                else:
                    r = wrk(url, body, args.connections, args.duration)
                if "rps" in r:
                    r["rows_per_s"] = r["rps"] * rows
                    log(f"{name}: {key}: {r['rps']:,.1f} req/s, p50 {r['p50_ms']:.2f} ms, "
                        f"p99 {r['p99_ms']:.2f} ms, errors {r['errors']}")
                else:
                    log(f"{name}: {key}: {r.get('error')}")
                res["loads"][key] = r
        r = keel_loadtest(args.keel_bin, url, model["bodies"][1]["path"], 1, max(args.duration / 2, 2))
        res["loads"]["1row-serial"] = r
        res["memory_after_load"] = tree_memory(srv.proc.pid)
        res["loadavg_after"] = loadavg()
    except Exception as e:  # noqa: BLE001 - recorded in the results
        res["error"] = str(e)
        log(f"{name}: ERROR: {e}; log tail:\n{srv.log_tail()}")
    finally:
        srv.stop()
    return res


def generator_check(args) -> dict:
    """keel loadtest and wrk against a trivial endpoint: the load generators' ceiling."""
    workdir = Path(tempfile.mkdtemp(prefix="keel-bench-gen-"))
    port = common.free_port()
    cmd = [args.keel_bin, "server", "--backend-store-uri", f"sqlite:///{workdir}/keel.db",
           "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    srv = Server("keel server", cmd, dict(os.environ, RUST_BACKTRACE="0"), workdir, port)
    res: dict = {"target": "GET /health of `keel server` (answers \"OK\")",
                 "server_command": " ".join(shlex.quote(c) for c in cmd)}
    try:
        srv.start_and_wait(60)
        url = f"{srv.url}/health"
        c = args.generator_connections
        res["keel"] = keel_loadtest(args.keel_bin, url, None, c, args.duration)
        res["wrk"] = wrk(url, None, c, args.duration)
        for tool in ("keel", "wrk"):
            r = res[tool]
            if "rps" in r:
                log(f"generator check: {r['tool']}: {r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                    f"p99 {r['p99_ms']:.2f} ms")
    except Exception as e:  # noqa: BLE001
        res["error"] = str(e)
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return res


# ------------------------------------------------------------------ report


def fmt(v, spec="{:,.1f}") -> str:
    return spec.format(v) if isinstance(v, (int, float)) else "n/a"


def ratio(k, m, better: str) -> float | None:
    if not isinstance(k, (int, float)) or not isinstance(m, (int, float)):
        return None
    if better == "higher":
        return k / m if m else None
    return m / k if k else None


def model_table(kind: str, servers: dict, connections: int) -> tuple[str, list]:
    keel, mlf = servers.get("keel", {}), servers.get("mlflow", {})
    rows_out = []
    lines = [f"| {MODELS[kind]} | keel serve | mlflow models serve | keel advantage |", "|---|---:|---:|---:|"]

    def add(label, get, better, spec):
        k, m = get(keel), get(mlf)
        r = ratio(k, m, better) if better != "info" else None
        rs = "" if r is None else (f"{r:,.0f}×" if r >= 10 else f"{r:,.2f}×")
        lines.append(f"| {label} | {fmt(k, spec)} | {fmt(m, spec)} | {rs} |")
        rows_out.append({"metric": label, "keel": k, "mlflow": m, "better": better,
                         "ratio_keel_advantage": round(r, 3) if r is not None else None})

    def load(key, field):
        return lambda s: s.get("loads", {}).get(key, {}).get(field)

    for rows in (1, 100):
        for tool, tname in (("keel", "keel loadtest"), ("wrk", "wrk")):
            key = f"{rows}row-{tool}"
            if rows == 1:
                add(f"1 row, {tname}, {connections} conn: req/s", load(key, "rps"), "higher", "{:,.1f}")
            else:
                add(f"100 rows, {tname}, {connections} conn: rows/s", load(key, "rows_per_s"), "higher", "{:,.0f}")
            add(f"  p50 (ms)", load(key, "p50_ms"), "lower", "{:,.2f}")
            add(f"  p99 (ms)", load(key, "p99_ms"), "lower", "{:,.2f}")
            add(f"  errors", load(key, "errors"), "info", "{:,}")
    add("1 row, 1 connection (keel loadtest): p50 (ms)", load("1row-serial", "p50_ms"), "lower", "{:,.2f}")
    add("1 row, 1 connection: req/s", load("1row-serial", "rps"), "higher", "{:,.1f}")
    add("start-up to /health (s)", lambda s: s.get("startup_s"), "lower", "{:,.2f}")
    add("server RSS after load (MiB)", lambda s: (s.get("memory_after_load") or {}).get("rss_mib"),
        "lower", "{:,.1f}")
    return "\n".join(lines), rows_out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s per load (for testing the harness)")
    ap.add_argument("--keel-bin", default=str(REPO / "target" / "release" / "keel"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory for the JSON result")
    ap.add_argument("--servers", default="keel,mlflow", help="which servers to run, in order")
    ap.add_argument("--models", default="rf,lr", help="rf (RandomForest 50), lr (LogisticRegression)")
    ap.add_argument("--duration", type=float, default=12.0, help="seconds per load (after a 2 s warm-up)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--generator-connections", type=int, default=32)
    ap.add_argument("--no-generator-check", action="store_true")
    ap.add_argument("--keel-serve-args", default="serve {model} --host 127.0.0.1 --port {port} --log-dir {logdir}",
                    help="arguments of keel serve ({model}, {port}, {logdir} are filled in)")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--argv0", default="bench/serving/run.sh", help=argparse.SUPPRESS)
    ap.add_argument("--orig-args", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.duration = 3.0
    args.keel_bin = str(Path(args.keel_bin).resolve()) if os.path.exists(args.keel_bin) else args.keel_bin
    if not os.path.exists(args.keel_bin):
        log(f"no keel binary at {args.keel_bin} (cargo build --release, or --keel-bin)")
        return 2

    venv = Path(sys.prefix)
    ort_lib = next(iter(sorted((venv / "lib").glob("python3*/site-packages/onnxruntime/capi/libonnxruntime.so*"))), None)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    py = sys.executable
    out = {
        "benchmark": "serving",
        "timestamp_utc": stamp,
        "command": f"{args.argv0} {args.orig_args}".strip(),
        "machine": common.machine_info(),
        "versions": {
            "keel": common.cmd_version([args.keel_bin, "--version"]),
            "keel_bin": args.keel_bin,
            "wrk": common.cmd_version(["sh", "-c", "wrk --version 2>&1 | head -1"]),
            "python_packages": {p: common.cmd_version([py, "-c", f"import {p}; print({p}.__version__)"])
                                for p in ("mlflow", "sklearn", "skl2onnx", "onnx", "onnxruntime", "numpy")},
            "venv": str(venv),
            "onnxruntime_library": str(ort_lib) if ort_lib else None,
        },
        "settings": {"duration_s": args.duration, "warmup_s": 2.0, "connections": args.connections,
                     "generator_connections": args.generator_connections},
        "notes": [
            "servers run one after the other, never concurrently; every load is on 127.0.0.1 and "
            "shares the machine's cores with the server.",
            "keel loadtest runs closed loop (each connection sends as soon as its previous answer is in), "
            "after a 2 s warm-up; wrk -t2 has no warm-up and runs right after it on the warm server.",
            "bodies are MLflow dataframe_split JSON with the 30 named breast_cancer columns, the same "
            "bytes for both servers; rows are test rows inside the training range.",
            "mlflow: `mlflow models serve --env-manager local -w 1`; keel: `keel serve` on the ONNX "
            "export (ONNX Runtime from the onnxruntime wheel) with a signature.json (names, ranges) "
            "and prediction logging on.",
            "ratio = keel advantage: keel/mlflow for throughput, mlflow/keel for latency.",
        ],
        "models": {},
    }

    if out["machine"].get("loadavg"):
        log(f"load average {out['machine']['loadavg']}")
    rc = 0
    root = Path(tempfile.mkdtemp(prefix="keel-bench-serving-"))
    tables = []
    try:
        for kind in [m for m in args.models.split(",") if m]:
            if kind not in MODELS:
                log(f"unknown model {kind!r} (rf, lr)")
                return 2
            log(f"{kind}: training and exporting {MODELS[kind]}")
            model = build_model(kind, root)
            log(f"{kind}: test accuracy {model['test_accuracy']:.4f}, ONNX labels equal "
                f"{model['onnx_labels_equal']}, max probability diff {model['onnx_vs_sklearn_max_proba_diff']:.2e}")
            entry = {"model": model, "servers": {}}
            out["models"][kind] = entry
            for name in [s for s in args.servers.split(",") if s]:
                workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
                port = common.free_port()
                if name == "keel":
                    fill = {"model": model["onnx_dir"], "port": port, "logdir": str(workdir / "predictions")}
                    cmd = [args.keel_bin] + [a.format(**fill) for a in shlex.split(args.keel_serve_args)]
                    if ort_lib:
                        os.environ["KEEL_ONNXRUNTIME_LIB"] = str(ort_lib)
                elif name == "mlflow":
                    cmd = [str(Path(py).parent / "mlflow"), "models", "serve", "-m", model["mlflow_dir"],
                           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
                else:
                    log(f"unknown server {name!r}")
                    return 2
                res = serve_and_load(name, cmd, workdir, port, model, args)
                if name == "keel":
                    logdir = workdir / "predictions"
                    # Parquet only: the spool folder (_spool/) holds a lock and leftovers.
                    files = list(logdir.rglob("*.parquet")) if logdir.exists() else []
                    res["prediction_log"] = {"dir": str(logdir), "files": len(files),
                                             "bytes": sum(p.stat().st_size for p in files)}
                entry["servers"][name] = res
                if "error" in res:
                    rc = 1
            md, rows = model_table(kind, entry["servers"], args.connections)
            entry["table"] = rows
            tables.append(md)
        if not args.no_generator_check:
            log("generator check: keel loadtest vs wrk on keel server's GET /health")
            out["generator_check"] = generator_check(args)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    out["loadavg_end"] = loadavg()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"serving-{stamp}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nServing benchmark, {stamp}, load average {out['machine'].get('loadavg')} -> {out['loadavg_end']}\n")
    for md in tables:
        print(md + "\n")
    g = out.get("generator_check")
    if g:
        print(f"| load generator on {g['target']}, {args.generator_connections} conn | req/s | p50 (ms) | p99 (ms) |")
        print("|---|---:|---:|---:|")
        for tool in ("keel", "wrk"):
            r = g.get(tool, {})
            print(f"| {r.get('tool', tool)} | {fmt(r.get('rps'), '{:,.0f}')} | {fmt(r.get('p50_ms'), '{:,.2f}')} "
                  f"| {fmt(r.get('p99_ms'), '{:,.2f}')} |")
    print(f"\nresults: {path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
