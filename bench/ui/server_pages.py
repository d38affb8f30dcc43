"""Server-side times of keel's runs table at N runs (default 100,000): the page
as plain HTTP GETs (no browser), for the first page, deep offsets, a sort by a
metric and filters, on a store filled as run_bench.py fills it.

    $(tests/python/ensure_venv.sh)/bin/python bench/ui/server_pages.py KEEL_BIN [N]

Prints a Markdown table: median of 5 warm requests, the first (cold) one, and
the page's size.
"""

import os
import statistics
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_bench as rb  # noqa: E402


def main():
    keel = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    work = tempfile.mkdtemp(prefix="ui-pages-")
    db = os.path.join(work, "store.db")
    origin = f"http://127.0.0.1:{rb.free_port()}"
    port = origin.rsplit(":", 1)[1]
    cmd = [keel, "server", "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", os.path.join(work, "art"), "--port", port]
    log = open(os.path.join(work, "server.log"), "w")
    proc = rb.start(cmd, f"{origin}/health", log)
    exp = requests.post(f"{origin}/api/2.0/mlflow/experiments/create", json={"name": "bench"}, timeout=30).json()["experiment_id"]
    rb.stop(proc)
    rb.fill(db, exp, rb.rows(n), "mlflow-artifacts:", mlflow_schema=False)
    proc = rb.start(cmd, f"{origin}/health", log)
    last = (n - 1) // 100 * 100
    middle = last // 200 * 100
    pages = {
        "first page (100 rows, newest first)": f"/experiments/{exp}",
        f"middle page (offset {middle:,})": f"/experiments/{exp}?offset={middle}",
        f"last page (offset {last:,})": f"/experiments/{exp}?offset={last}",
        "sorted by metric m0 DESC": f"/experiments/{exp}?order=metrics.m0+DESC",
        "filter params.p0 = 'rf'": f"/experiments/{exp}?filter=params.p0+%3D+%27rf%27",
        "filter metrics.m1 > 0.5, columns p0 and m1": f"/experiments/{exp}?filter=metrics.m1+%3E+0.5&col=params.p0&col=metrics.m1",
    }
    print(f"| {n:,} runs | warm median | cold | page |\n|---|---:|---:|---:|")
    try:
        for name, path in pages.items():
            times, size = [], 0
            for _ in range(6):
                t = time.perf_counter()
                answer = requests.get(origin + path, timeout=120)
                times.append((time.perf_counter() - t) * 1000)
                size = len(answer.content)
                if answer.status_code != 200:
                    raise SystemExit(f"{path}: {answer.status_code}")
            print(f"| {name} | {statistics.median(times[1:]):.0f} ms | {times[0]:.0f} ms | {size // 1024} KB |")
    finally:
        rb.stop(proc)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
