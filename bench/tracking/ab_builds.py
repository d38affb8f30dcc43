#!/usr/bin/env python3
"""Two or more keel builds side by side on one raw-HTTP operation, interleaved.

On a machine whose speed drifts from minute to minute, builds measured one
after the other differ by the drift; here each build runs its own `keel
server` (SQLite in a temp dir) with raw_http.py's data (200 runs x 5 params +
5 metrics), then the builds take turns in blocks of 25 calls, in a new random
order each round, so every build sees the same machine. Prints p10/p50/p90 per
build. No MLflow: for ratios against it use raw_http.sh.

    <venv>/bin/python bench/tracking/ab_builds.py BIN1,BIN2[,...] [--rounds 40] [--op search|log_batch]

(`bash tests/python/ensure_venv.sh` prints the venv.) search is raw_http.py's
(filter metrics.m1 > 0.5, order by metrics.m2 DESC, 109 runs answered);
log_batch logs 1,000 new metrics (10 keys x 100 steps) into one run per call.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw_http import API, Conn  # noqa: E402
from run_bench import Server, free_port  # noqa: E402

BLOCK = 25


def start(binary: str) -> tuple[Server, Conn, str]:
    workdir = Path(tempfile.mkdtemp(prefix="keel-ab-"))
    port = free_port()
    server = Server(binary, [binary, "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{workdir}/keel.db",
                             "--artifacts-destination", str(workdir / "artifacts")],
                    dict(os.environ), workdir, port)
    server.start_and_wait(30)
    conn = Conn(port)
    exp = conn.json("POST", f"{API}/experiments/create", {"name": "ab"})["experiment_id"]
    rng = random.Random(1)
    for i in range(200):
        run = conn.json("POST", f"{API}/runs/create", {"experiment_id": exp, "start_time": 1000 + i})
        conn.json("POST", f"{API}/runs/log-batch", {
            "run_id": run["run"]["info"]["run_id"],
            "metrics": [{"key": f"m{j}", "value": rng.random(), "timestamp": 1, "step": 0} for j in range(5)],
            "params": [{"key": f"p{j}", "value": str(j)} for j in range(5)]})
    return server, conn, exp


def request(op: str, conn: Conn, exp: str, run_id: str, n: int) -> tuple[str, str, bytes]:
    if op == "search":
        return "POST", f"{API}/runs/search", json.dumps({
            "experiment_ids": [exp], "filter": "metrics.m1 > 0.5",
            "order_by": ["metrics.m2 DESC"], "max_results": 1000}).encode()
    return "POST", f"{API}/runs/log-batch", json.dumps({"run_id": run_id, "metrics": [
        {"key": f"k{k}", "value": 0.5, "timestamp": 1700000000000 + n, "step": n * 100 + s}
        for k in range(10) for s in range(100)]}).encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", help="comma-separated keel binaries")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--op", choices=["search", "log_batch"], default="search")
    args = ap.parse_args()
    builds = args.builds.split(",")
    started = []
    try:
        for binary in builds:
            server, conn, exp = start(binary)
            run_id = conn.json("POST", f"{API}/runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
            started.append((server, conn, exp, run_id))
        times: list[list[float]] = [[] for _ in builds]
        n = 0
        for round_no in range(args.rounds + 2):  # the first two rounds warm up
            order = list(range(len(builds)))
            random.shuffle(order)
            for i in order:
                _, conn, exp, run_id = started[i]
                for _ in range(BLOCK):
                    n += 1
                    method, path, body = request(args.op, conn, exp, run_id, n)
                    t0 = time.perf_counter_ns()
                    status, data = conn.call(method, path, body)
                    elapsed = (time.perf_counter_ns() - t0) / 1e6
                    if status != 200:
                        raise RuntimeError(f"{builds[i]}: HTTP {status}: {data[:200]!r}")
                    if round_no >= 2:
                        times[i].append(elapsed)
        print(f"{args.op}, {args.rounds} rounds of {BLOCK} calls per build, load {os.getloadavg()[0]:.2f}")
        for binary, t in zip(builds, times):
            t.sort()
            print(f"- {binary}: p10 {t[len(t) // 10]:.3f} / p50 {statistics.median(t):.3f} / "
                  f"p90 {t[9 * len(t) // 10]:.3f} ms ({len(t)} calls)")
    finally:
        for server, *_ in started:
            server.stop()


if __name__ == "__main__":
    main()
