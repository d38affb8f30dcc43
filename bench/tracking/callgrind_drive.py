#!/usr/bin/env python3
"""Client half of bench/tracking/callgrind.sh: sets up the raw-HTTP bench's data
(200 runs x 5 params + 5 metrics), warms up, zeroes the server's callgrind
counters, makes N calls of one operation (runs/search as raw_http.py's, or
runs/log-batch of 1,000 new metrics), waits a second (so the background WAL
checkpointer's work lands in the window), and dumps the counters.

    callgrind_drive.py PORT search|log_batch N SERVER_PID
"""
import http.client
import json
import random
import socket
import subprocess
import sys
import time

port, op, n, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
for _ in range(600):
    try:
        conn.connect()
        break
    except OSError:
        time.sleep(0.1)
conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
API = "/api/2.0/mlflow"


def call(path, payload=None, raw=None):
    body = raw if raw is not None else json.dumps(payload).encode()
    conn.request("POST", API + path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise SystemExit(f"{path}: HTTP {response.status}: {data[:300]!r}")
    return data


exp = json.loads(call("/experiments/create", {"name": "callgrind"}))["experiment_id"]
rng = random.Random(1)
for i in range(200):
    run = json.loads(call("/runs/create", {"experiment_id": exp, "start_time": 1000 + i}))["run"]["info"]["run_id"]
    call("/runs/log-batch", {
        "run_id": run, "params": [{"key": f"p{j}", "value": str(j)} for j in range(5)],
        "metrics": [{"key": f"m{j}", "value": rng.random(), "timestamp": 1, "step": 0} for j in range(5)]})
target = json.loads(call("/runs/create", {"experiment_id": exp}))["run"]["info"]["run_id"]
search = json.dumps({"experiment_ids": [exp], "filter": "metrics.m1 > 0.5",
                     "order_by": ["metrics.m2 DESC"], "max_results": 1000}).encode()
batches = [json.dumps({"run_id": target, "metrics": [
    {"key": f"k{k}", "value": rng.random(), "timestamp": 1700000000000 + b, "step": b * 100 + s}
    for k in range(10) for s in range(100)]}).encode() for b in range(n + 10)]


def one():
    if op == "search":
        return call("/runs/search", raw=search)
    return call("/runs/log-batch", raw=batches.pop())


for _ in range(10):
    one()
time.sleep(1.0)
subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
for _ in range(n):
    last = one()
time.sleep(1.0)
subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
if op == "search":
    print(f"runs answered: {len(json.loads(last)['runs'])}", file=sys.stderr)
