#!/usr/bin/env python3
"""The tracking server's own cost over raw HTTP: keel server vs mlflow server (issue 19).

Called by bench/tracking/raw_http.sh with the pinned venv's Python. No MLflow
client: requests go over one keep-alive `http.client` connection with bodies
encoded before the clock starts, so what is timed is the server plus one
loopback round trip and the stdlib's request/response handling (the floor is
measured too: `GET /health`). For each server, one after the other:

  1. start it (SQLite backend by default; keel also on PostgreSQL with
     --keel-backend postgresql://...), wait for /health;
  2. set up: one experiment, 200 runs, each logged with 5 params p0..p4 and
     5 metrics m0..m4 (uniform [0,1), seed 1) in one log-batch;
  3. search: runs/search with filter "metrics.m1 > 0.5", order_by
     "metrics.m2 DESC", max_results 1000 (about 100 runs answered), --search
     timed calls after 20 untimed ones; the answer's run ids and order are
     checked against the expected ones;
  4. log_batch: runs/log-batch of 1,000 metrics (10 keys x 100 steps) into one
     run, --batches timed calls after 5 untimed; every call logs new steps, so
     every call inserts 1,000 new points; afterwards get-history of one key must
     hold every step;
  5. floor: --search calls of GET /health.

Per operation: p50, mean, p90 of the wall time per call, and the server's CPU
time per call (utime + stime of its whole process tree from /proc, before and
after). Writes <out>/tracking-raw-<UTC timestamp>.json and prints a Markdown
table with the ratio mlflow / keel (above 1: keel is faster).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import REPO, Server, free_port, log, loadavg, machine_info, process_tree, cmd_version  # noqa: E402

API = "/api/2.0/mlflow"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> float:
    total = 0
    for pid in process_tree(root):  # root is in it
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


class Conn:
    def __init__(self, port: int):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        # As requests/urllib3 do: no Nagle delay on the client's side.
        self.c.connect()
        self.c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.c.request(method, path, body=body, headers=headers)
        r = self.c.getresponse()
        return r.status, r.read()

    def json(self, method: str, path: str, payload: dict | None = None) -> dict:
        status, data = self.call(method, path, None if payload is None else json.dumps(payload).encode())
        if status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {data[:300]!r}")
        return json.loads(data)


def timed(conn: Conn, pid: int, method: str, path: str, bodies: list[bytes | None], warmup: int) -> dict:
    for body in bodies[:warmup]:
        status, data = conn.call(method, path, body)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}: {data[:300]!r}")
    times = []
    cpu0 = cpu_seconds(pid)
    last = b""
    for body in bodies[warmup:]:
        t0 = time.perf_counter_ns()
        status, last = conn.call(method, path, body)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}: {last[:300]!r}")
    cpu = cpu_seconds(pid) - cpu0
    times.sort()
    return {
        "calls": len(times),
        "p50_ms": round(statistics.median(times), 3),
        "mean_ms": round(statistics.fmean(times), 3),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))], 3),
        "min_ms": round(times[0], 3),
        "server_cpu_ms_per_call": round(cpu / len(times) * 1000, 3),
        "response_bytes": len(last),
        "_last": last,
    }


def measure(url_port: int, pid: int, args) -> dict:
    conn = Conn(url_port)
    exp = conn.json("POST", f"{API}/experiments/create", {"name": "raw-http"})["experiment_id"]
    rng = random.Random(1)
    m1, m2 = {}, {}
    for i in range(args.runs):
        run = conn.json("POST", f"{API}/runs/create", {"experiment_id": exp, "start_time": 1000 + i})
        run_id = run["run"]["info"]["run_id"]
        metrics = [{"key": f"m{j}", "value": rng.random(), "timestamp": 1, "step": 0} for j in range(5)]
        m1[run_id], m2[run_id] = metrics[1]["value"], metrics[2]["value"]
        conn.json("POST", f"{API}/runs/log-batch", {
            "run_id": run_id, "metrics": metrics,
            "params": [{"key": f"p{j}", "value": str(j)} for j in range(5)]})
    expected = sorted((r for r in m1 if m1[r] > 0.5), key=lambda r: -m2[r])

    body = json.dumps({"experiment_ids": [exp], "filter": "metrics.m1 > 0.5",
                       "order_by": ["metrics.m2 DESC"], "max_results": 1000}).encode()
    search = timed(conn, pid, "POST", f"{API}/runs/search", [body] * (args.search + 20), 20)
    answered = [r["info"]["run_id"] for r in json.loads(search.pop("_last"))["runs"]]
    search["runs_answered"] = len(answered)
    search["ok"] = answered == expected

    run_id = conn.json("POST", f"{API}/runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
    bodies = []
    for b in range(args.batches + 5):
        bodies.append(json.dumps({"run_id": run_id, "metrics": [
            {"key": f"k{k}", "value": rng.random(), "timestamp": 1700000000000 + b, "step": b * 100 + s}
            for k in range(10) for s in range(100)]}).encode())
    batch = timed(conn, pid, "POST", f"{API}/runs/log-batch", bodies, 5)
    batch.pop("_last")
    history = conn.json("GET", f"{API}/metrics/get-history?run_id={run_id}&metric_key=k3&max_results=25000")
    batch["ok"] = len(history.get("metrics", [])) == len(bodies) * 100

    health = timed(conn, pid, "GET", "/health", [None] * (args.search + 20), 20)
    health.pop("_last")
    return {"search": search, "log_batch": batch, "health": health}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keel-bin", default=str(REPO / "target" / "release" / "keel"))
    ap.add_argument("--keel-backend", default="", help="keel's --backend-store-uri (default: SQLite in a temp dir)")
    ap.add_argument("--servers", default="keel,mlflow")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--search", type=int, default=200, help="timed search calls")
    ap.add_argument("--batches", type=int, default=200, help="timed log-batch calls")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--orig-args", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    keel_bin = str(Path(args.keel_bin).resolve())
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    out = {
        "benchmark": "tracking-raw-http",
        "timestamp_utc": stamp,
        "command": f"bench/tracking/raw_http.sh {args.orig_args}".strip(),
        "machine": machine_info(),
        "versions": {"keel": cmd_version([keel_bin, "--version"]), "keel_bin": keel_bin,
                     "mlflow": cmd_version([sys.executable, "-c", "import mlflow; print(mlflow.__version__)"])},
        "settings": {"runs": args.runs, "search_calls": args.search, "batch_calls": args.batches},
        "servers": {},
    }
    rc = 0
    for name in [s for s in args.servers.split(",") if s]:
        workdir = Path(tempfile.mkdtemp(prefix=f"keel-raw-{name}-"))
        port = free_port()
        env = dict(os.environ)
        if name == "keel":
            backend = args.keel_backend or f"sqlite:///{workdir}/keel.db"
            cmd = [keel_bin, "server", "--backend-store-uri", backend,
                   "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
        else:
            for k in ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "MLFLOW_WORKERS", "MLFLOW_TRACKING_URI"):
                env.pop(k, None)
            backend = f"sqlite:///{workdir}/mlflow.db"
            cmd = [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
                   "--backend-store-uri", backend, "--artifacts-destination", str(workdir / "artifacts")]
        server = Server(name, cmd, env, workdir, port)
        res: dict = {"backend": backend.split("://")[0].split("+")[0], "loadavg_before": loadavg()}
        try:
            log(f"{name}: starting")
            server.start_and_wait(300)
            res.update(measure(port, server.proc.pid, args))
            res["loadavg_after"] = loadavg()
            if not (res["search"]["ok"] and res["log_batch"]["ok"]):
                res["error"] = "read-back check failed"
                rc = 1
        except Exception as e:  # noqa: BLE001 - recorded in the results
            res["error"] = str(e)
            log(f"{name}: ERROR: {e}")
            rc = 1
        finally:
            server.stop()
        out["servers"][name] = res
        log(f"{name}: {json.dumps(res)}")
    out["machine"]["loadavg_end"] = loadavg()
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    path = path / f"tracking-raw-{stamp}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")

    s = out["servers"]
    print(f"## Tracking server over raw HTTP ({stamp}; load {out['machine']['loadavg']} -> "
          f"{out['machine']['loadavg_end']}; keel {out['versions']['keel']}, mlflow {out['versions']['mlflow']})\n")
    names = list(s)
    print("| operation | " + " | ".join(f"{n} ({s[n].get('backend')}) p50 / mean / server CPU ms" for n in names)
          + (" | mlflow / keel: wall p50, server CPU |" if {"keel", "mlflow"} <= set(names) else " |"))
    print("|---|" + "---:|" * (len(names) + (1 if {"keel", "mlflow"} <= set(names) else 0)))
    for op in ("log_batch", "search", "health"):
        cells = []
        for n in names:
            r = s[n].get(op)
            cells.append("error" if not r else f"{r['p50_ms']} / {r['mean_ms']} / {r['server_cpu_ms_per_call']}")
        ratio = ""
        if {"keel", "mlflow"} <= set(names) and s["keel"].get(op) and s["mlflow"].get(op):
            k, m = s["keel"][op], s["mlflow"][op]
            cpu = (f"{m['server_cpu_ms_per_call'] / k['server_cpu_ms_per_call']:.0f}x"
                   if k["server_cpu_ms_per_call"] > 0 else "n/a")
            ratio = f" | {m['p50_ms'] / k['p50_ms']:.1f}x, {cpu}"
        print(f"| {op} | " + " | ".join(cells) + ratio + " |")
    for n in names:
        if "error" in s[n]:
            print(f"- **{n} error**: {s[n]['error'][:300]}")
        else:
            print(f"- {n}: search answered {s[n]['search']['runs_answered']} runs "
                  f"({s[n]['search']['response_bytes']} bytes), order correct: {s[n]['search']['ok']}; "
                  f"log-batch history complete: {s[n]['log_batch']['ok']}")
    print(f"- results: {path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
