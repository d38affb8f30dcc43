#!/usr/bin/env python3
"""Where keel's parts stop scaling (docs/scaling.md): small, bounded runs.

    python3 bench/scaling/scaling.py --keel-bin target/release/keel \
        [--postgres postgres://postgres@127.0.0.1:5432/postgres] [--seconds 5]
        [--followers 10,100,400] [--log-requests 5000] [--only write,feed,log,profile]

1. write: `runs/log-batch` of 1,000 metrics per call, raw HTTP, against one
   `keel server` on SQLite and one on PostgreSQL (a fresh database), with 1,
   4 and 16 concurrent clients (each its own run), for --seconds each:
   metrics written per second.
2. feed: F followers long-poll `/api/2.0/keel/registry/changes` (as `keel
   serve` replicas do); the alias moves; time until every follower has the
   change (p50, max), for each F in --followers. SQLite server.
3. log: a `keel serve` with `--log-dir` answers --log-requests 1-row
   requests of distinct generated rows (8 workers), then stops (SIGTERM);
   bytes of Parquet per logged row, with the default 1 s flush and with a
   60 s flush (bigger files).
4. profile: the JSON size of a `keel monitor profile` of 100,000 generated
   rows (what a shard sends to the merge).

Writes bench/results/scaling-<UTC>.json and prints one line per figure.
Timings on a shared 2-core machine are upper bounds: the load average is
recorded before and after each part.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def log(message: str) -> None:
    print(f"scaling: {message}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict | None = None, method: str | None = None, timeout: float = 60.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            text = reply.read()
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{url}: HTTP {error.code}: {error.read()[:500]!r}") from None
    return json.loads(text) if text else {}


def wait_health(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).read()
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer /health")


class Server:
    """A `keel server` on a backend store, in its own folder."""

    def __init__(self, keel: str, store: str, work: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        work.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, RUST_LOG="warn", RUST_BACKTRACE="0")
        for name in ("KEEL_AUTH_TOKEN", "KEEL_TRACKING_URI", "MLFLOW_TRACKING_URI"):
            env.pop(name, None)
        self.process = subprocess.Popen(
            [keel, "server", "--backend-store-uri", store, "--artifacts-destination",
             str(work / "artifacts"), "--port", str(self.port)],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_health(self.url, self.process)

    def api(self, path: str, body: dict | None = None, method: str | None = None) -> dict:
        return call(f"{self.url}/api/2.0/{path}", body, method)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def write_rate(server: Server, clients: int, seconds: float) -> dict:
    experiment = server.api("mlflow/experiments/create", {"name": f"w-{clients}-{time.time_ns()}"})
    runs = [server.api("mlflow/runs/create", {"experiment_id": experiment["experiment_id"]})["run"]["info"]["run_id"]
            for _ in range(clients)]
    stop_at = time.time() + seconds
    counts = [0] * clients
    latencies: list[float] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        step = 0
        while time.time() < stop_at:
            now = int(time.time() * 1000)
            metrics = [{"key": f"m{k % 10}", "value": k * 0.5, "timestamp": now, "step": step * 100 + k // 10}
                       for k in range(1000)]
            started = time.perf_counter()
            server.api("mlflow/runs/log-batch", {"run_id": runs[i], "metrics": metrics})
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
            counts[i] += 1000
            step += 1

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {"clients": clients, "metrics": sum(counts), "seconds": round(wall, 3),
            "metrics_per_s": round(sum(counts) / wall), "batches": len(latencies),
            "batch_p50_ms": round(statistics.median(latencies) * 1000, 2),
            "batch_p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2)}


def postgres_database(base: str) -> tuple[str, str]:
    name = f"keel_scaling_{os.getpid()}"
    subprocess.run(["psql", base, "-qc", f'drop database if exists "{name}"'], check=True, capture_output=True)
    subprocess.run(["psql", base, "-qc", f'create database "{name}"'], check=True, capture_output=True)
    parsed = urllib.parse.urlparse(base)
    url = parsed._replace(scheme="postgresql", path=f"/{name}").geturl()
    return url, name


def part_write(keel: str, work: Path, args) -> list[dict]:
    stores = [("sqlite", f"sqlite:///{work / 'write.db'}")]
    database = None
    if args.postgres:
        url, database = postgres_database(args.postgres)
        stores.append(("postgresql", url))
    results = []
    try:
        for backend, store in stores:
            server = Server(keel, store, work / f"server-{backend}")
            try:
                for clients in (1, 4, 16):
                    before = loadavg()
                    figure = write_rate(server, clients, args.seconds)
                    figure.update(backend=backend, load_before=before, load_after=loadavg())
                    log(f"write {backend} {clients} clients: {figure['metrics_per_s']} metrics/s "
                        f"(batch p50 {figure['batch_p50_ms']} ms, p99 {figure['batch_p99_ms']} ms)")
                    results.append(figure)
            finally:
                server.stop()
    finally:
        if database:
            subprocess.run(["psql", args.postgres, "-qc", f'drop database if exists "{database}"'],
                           capture_output=True)
    return results


def part_feed(keel: str, work: Path, args) -> list[dict]:
    server = Server(keel, f"sqlite:///{work / 'feed.db'}", work / "server-feed")
    results = []
    try:
        server.api("mlflow/registered-models/create", {"name": "risk"})
        for _ in range(2):
            server.api("mlflow/model-versions/create", {"name": "risk", "source": "mlflow-artifacts:/models/risk"})
        server.api("mlflow/registered-models/alias", {"name": "risk", "alias": "champion", "version": "1"})
        for followers in [int(f) for f in args.followers.split(",") if f]:
            since = call(f"{server.url}/api/2.0/keel/registry/changes?since=0&timeout_ms=0")["registry_version"]
            arrived: list[float] = []
            lock = threading.Lock()
            ready = threading.Barrier(followers + 1)

            def follower() -> None:
                ready.wait()
                reply = call(f"{server.url}/api/2.0/keel/registry/changes?since={since}&timeout_ms=30000",
                             timeout=60)
                got = time.perf_counter()
                if reply["registry_version"] > since:
                    with lock:
                        arrived.append(got)

            threads = [threading.Thread(target=follower) for _ in range(followers)]
            for thread in threads:
                thread.start()
            ready.wait()
            time.sleep(1.0)  # every long poll is waiting on the server
            before = loadavg()
            version = "2" if len(results) % 2 == 0 else "1"
            moved = time.perf_counter()
            server.api("mlflow/registered-models/alias", {"name": "risk", "alias": "champion", "version": version})
            for thread in threads:
                thread.join()
            delays = sorted((t - moved) * 1000 for t in arrived)
            figure = {"followers": followers, "received": len(delays),
                      "p50_ms": round(statistics.median(delays), 1) if delays else None,
                      "max_ms": round(delays[-1], 1) if delays else None,
                      "load_before": before, "load_after": loadavg()}
            log(f"feed {followers} followers: {len(delays)} got the move, p50 {figure['p50_ms']} ms, "
                f"max {figure['max_ms']} ms")
            results.append(figure)
    finally:
        server.stop()
    return results


def parquet_rows_and_bytes(folder: Path) -> tuple[int, int, int, dict]:
    """Rows, bytes and files of the Parquet under `folder`, and each column's compressed bytes."""
    import pyarrow.parquet as pq

    rows = size = files = 0
    columns: dict[str, int] = {}
    for path in folder.rglob("*.parquet"):
        metadata = pq.ParquetFile(path).metadata
        rows += metadata.num_rows
        size += path.stat().st_size
        files += 1
        for group in range(metadata.num_row_groups):
            for i in range(metadata.num_columns):
                column = metadata.row_group(group).column(i)
                columns[column.path_in_schema] = columns.get(column.path_in_schema, 0) + column.total_compressed_size
    return rows, size, files, columns


def part_log(keel: str, work: Path, args) -> list[dict]:
    env = dict(os.environ, RUST_LOG="warn", RUST_BACKTRACE="0")
    data = work / "portfolio.csv"
    subprocess.run([keel, "generate", "portfolio", "--rows", str(args.log_requests), "--seed", "11",
                    "--out", str(data), "--quiet"], check=True, env=env)
    subprocess.run([keel, "train", "--algo", "gbdt", "--data", str(data), "--target", "default",
                    "--out", str(work / "risk"), "--quiet"], check=True, env=env)
    with data.open() as f:
        rows = [{k: v for k, v in row.items() if k != "default"} for row in csv.DictReader(f)]
    results = []
    for flush in ("1s", "60s"):
        logs = work / f"logs-{flush}"
        port = free_port()
        server = subprocess.Popen(
            [keel, "serve", str(work / "risk"), "--port", str(port), "--log-dir", str(logs),
             "--log-flush-interval", flush, "--replica-id", "bench-0"],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        wait_health(url, server)

        def send(row: dict) -> None:
            call(f"{url}/invocations", {"dataframe_records": [row]})

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(send, rows))
        wall = time.perf_counter() - started
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        logged, size, files, columns = parquet_rows_and_bytes(logs / "predictions")
        figure = {"flush_interval": flush, "requests": len(rows), "rows_logged": logged, "files": files,
                  "parquet_bytes": size, "bytes_per_row": round(size / logged, 1) if logged else None,
                  "column_bytes_per_row": {c: round(b / logged, 1) for c, b in sorted(
                      columns.items(), key=lambda item: -item[1])} if logged else {},
                  "send_seconds": round(wall, 2), "requests_per_s": round(len(rows) / wall)}
        log(f"log flush {flush}: {logged} rows in {files} files, {size} bytes, "
            f"{figure['bytes_per_row']} bytes/row ({figure['requests_per_s']} req/s sent)")
        results.append(figure)
    return results


def part_profile(keel: str, work: Path, args) -> dict:
    env = dict(os.environ, RUST_LOG="warn", RUST_BACKTRACE="0")
    data = work / "profile.csv"
    subprocess.run([keel, "generate", "portfolio", "--rows", "100000", "--seed", "5",
                    "--out", str(data), "--quiet"], check=True, env=env)
    out = work / "profile.json"
    subprocess.run([keel, "monitor", "profile", str(data), "--output", str(out)], check=True, env=env,
                   capture_output=True)
    profile = json.loads(out.read_text())
    figure = {"rows": 100000, "columns": len(profile.get("columns", [])), "json_bytes": out.stat().st_size}
    log(f"profile of 100,000 rows x {figure['columns']} columns: {figure['json_bytes']} bytes of JSON")
    return figure


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keel-bin", default=str(REPO / "target" / "release" / "keel"))
    ap.add_argument("--postgres", default=os.environ.get("KEEL_TEST_POSTGRES_URL", ""))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--followers", default="10,100,400")
    ap.add_argument("--log-requests", type=int, default=5000)
    ap.add_argument("--only", default="write,feed,log,profile")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args()
    keel = str(Path(args.keel_bin).resolve())
    parts = [p for p in args.only.split(",") if p]
    result: dict = {"command": " ".join([sys.argv[0], *sys.argv[1:]]), "keel_bin": keel,
                    "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "cpus": os.cpu_count(), "load_start": loadavg()}
    with tempfile.TemporaryDirectory(prefix="keel-scaling-") as tmp:
        work = Path(tmp)
        if "write" in parts:
            result["write"] = part_write(keel, work, args)
        if "feed" in parts:
            result["feed"] = part_feed(keel, work, args)
        if "log" in parts:
            result["log"] = part_log(keel, work, args)
        if "profile" in parts:
            result["profile"] = part_profile(keel, work, args)
    result["load_end"] = loadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"scaling-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"raw: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
