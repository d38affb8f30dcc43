#!/usr/bin/env python3
"""Drive an MLflow-compatible tracking server with the official client and time it.

    python bench_client.py URL [--quick] [--seed 42] [--only a,b,c]

Sections (counts divided by 10 with --quick):
  a  5,000 individual MlflowClient.log_metric calls in one run
     -> wall time, calls/s, per-call p50/p99/max
  b  100,000 metrics via MlflowClient.log_batch in batches of 1,000
     (10 keys x 10,000 steps) -> wall time, metrics/s, per-batch p50/p99
  c  2,000 runs, each create_run + log_batch(5 params + 5 metrics m1..m5,
     uniform [0,1) from a seeded RNG); then 3x
     mlflow.search_runs(experiment_ids=[exp], filter_string="metrics.m1 > 0.5",
                        order_by=["metrics.m2 DESC"], max_results=1000)
     -> each time, the median, the row count, and whether the rows are the
        expected ones (count of m1 > 0.5 capped at 1000, sorted by m2 DESC)

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
import uuid


def pct(xs, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def log(msg):
    print(f"bench_client: {msg}", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--quick", action="store_true", help="divide all counts by 10")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--only", default="a,b,c", help="comma-separated sections to run (a,b,c)")
    args = ap.parse_args()
    sections = set(args.only.split(","))

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    logging.getLogger("mlflow").setLevel(logging.ERROR)

    div = 10 if args.quick else 1
    n_single = 5000 // div
    n_keys = 10
    n_steps = 10000 // div
    batch = 1000
    n_runs = 2000 // div
    n_search = 3

    mlflow.set_tracking_uri(args.url)
    client = MlflowClient(args.url)
    tag = uuid.uuid4().hex[:8]
    out = {
        "url": args.url,
        "quick": args.quick,
        "seed": args.seed,
        "mlflow_client_version": mlflow.__version__,
        "python": sys.version.split()[0],
    }

    # ---------------------------------------------------------------- (a)
    if "a" in sections:
        exp = client.create_experiment(f"bench-single-{tag}")
        run_id = client.create_run(exp, run_name="single").info.run_id
        log(f"(a) {n_single} log_metric calls")
        lat = []
        la0 = loadavg()
        t0 = time.perf_counter()
        for i in range(n_single):
            s = time.perf_counter()
            client.log_metric(run_id, "m", float(i), step=i)
            lat.append(time.perf_counter() - s)
        wall = time.perf_counter() - t0
        n_back = len(client.get_metric_history(run_id, "m"))
        out["log_metric"] = {
            "calls": n_single,
            "wall_s": round(wall, 4),
            "calls_per_s": round(n_single / wall, 2),
            "p50_ms": round(pct(lat, 50) * 1e3, 3),
            "p99_ms": round(pct(lat, 99) * 1e3, 3),
            "max_ms": round(max(lat) * 1e3, 3),
            "points_read_back": n_back,
            "ok": n_back == n_single,
            "loadavg_before": la0,
            "loadavg_after": loadavg(),
        }
        log(f"(a) {out['log_metric']['calls_per_s']} calls/s")

    # ---------------------------------------------------------------- (b)
    if "b" in sections:
        exp = client.create_experiment(f"bench-batch-{tag}")
        run_id = client.create_run(exp, run_name="batch").info.run_id
        total = n_keys * n_steps
        steps_per_batch = batch // n_keys
        log(f"(b) {total} metrics in batches of {batch}")
        ts = int(time.time() * 1000)
        batches = []
        for b0 in range(0, n_steps, steps_per_batch):
            batches.append([Metric(f"k{k}", float(step * n_keys + k), ts + step, step)
                            for step in range(b0, b0 + steps_per_batch) for k in range(n_keys)])
        lat = []
        la0 = loadavg()
        t0 = time.perf_counter()
        for ms in batches:
            s = time.perf_counter()
            client.log_batch(run_id, metrics=ms)
            lat.append(time.perf_counter() - s)
        wall = time.perf_counter() - t0
        n_back = len(client.get_metric_history(run_id, "k0"))
        out["log_batch"] = {
            "metrics": total,
            "batch_size": batch,
            "batches": len(batches),
            "wall_s": round(wall, 4),
            "metrics_per_s": round(total / wall, 1),
            "batch_p50_ms": round(pct(lat, 50) * 1e3, 3),
            "batch_p99_ms": round(pct(lat, 99) * 1e3, 3),
            "k0_points_read_back": n_back,
            "ok": n_back == n_steps,
            "loadavg_before": la0,
            "loadavg_after": loadavg(),
        }
        log(f"(b) {out['log_batch']['metrics_per_s']} metrics/s")

    # ---------------------------------------------------------------- (c)
    if "c" in sections:
        exp = client.create_experiment(f"bench-search-{tag}")
        rng = random.Random(args.seed)
        log(f"(c) creating {n_runs} runs x (5 params + 5 metrics)")
        expected = []  # (m2, run_id) for runs with m1 > 0.5
        la0 = loadavg()
        t0 = time.perf_counter()
        for i in range(n_runs):
            run_id = client.create_run(exp, run_name=f"r{i}").info.run_id
            ms = {f"m{j}": rng.random() for j in range(1, 6)}
            ts = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(k, v, ts, 0) for k, v in ms.items()],
                params=[Param(f"p{j}", str(rng.randint(0, 100))) for j in range(1, 6)],
            )
            if ms["m1"] > 0.5:
                expected.append((ms["m2"], run_id))
        setup = time.perf_counter() - t0
        expected.sort(key=lambda x: -x[0])
        expected_ids = [rid for _, rid in expected[:1000]]
        log(f"(c) setup {setup:.1f}s; searching {n_search}x")
        times, rows, correct = [], [], []
        for _ in range(n_search):
            s = time.perf_counter()
            df = mlflow.search_runs(experiment_ids=[exp], filter_string="metrics.m1 > 0.5",
                                    order_by=["metrics.m2 DESC"], max_results=1000)
            times.append(time.perf_counter() - s)
            rows.append(len(df))
            correct.append(list(df["run_id"]) == expected_ids if len(df) else not expected_ids)
        out["search"] = {
            "runs": n_runs,
            "setup_wall_s": round(setup, 3),
            "setup_runs_per_s": round(n_runs / setup, 2),
            "times_s": [round(t, 4) for t in times],
            "median_s": round(statistics.median(times), 4),
            "rows": rows[0],
            "rows_all_equal": len(set(rows)) == 1,
            "expected_rows": len(expected_ids),
            "rows_match_expected": all(correct),
            "ok": all(correct) and len(set(rows)) == 1,
            "loadavg_before": la0,
            "loadavg_after": loadavg(),
        }
        log(f"(c) median {out['search']['median_s']}s, rows {rows}")

    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
