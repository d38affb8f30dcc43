#!/usr/bin/env python3
"""Tracking-server benchmark: keel server vs mlflow server, same machine, same run.

Called by bench/tracking/run.sh (which first ensures the pinned venv and then runs
this file with the venv's Python). For each server, one after the other:

  1. start it in its own temp dir (SQLite backend, local artifact directory,
     127.0.0.1, free port) as its own process group;
  2. time launch -> first 200 on GET /health (polled every 2 ms for the first
     2 s, then every 50 ms: start-up figures under 2 s are exact to ~2 ms);
  3. sample resident memory when idle (3 s after ready);
  4. run bench_client.py URL [--quick] against it (official MlflowClient);
  5. sample resident memory after the load: sum of VmRSS (and Pss) over the
     server's whole process tree;
  6. stop it (SIGTERM to the group, SIGKILL after 20 s).

mlflow runs with its default settings (4 uvicorn workers, job execution on,
i.e. 15 processes), as in the measured baseline. Writes
<out>/tracking-<UTC timestamp>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


# ------------------------------------------------------------------ process tree memory


def _stat(pid: int):
    """(ppid, pgid) of a process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2:].split()
    return int(rest[1]), int(rest[2])


def process_tree(root: int) -> list[int]:
    """root, its descendants, and every process in root's process group."""
    children: dict[int, list[int]] = {}
    group = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = _stat(int(d))
        if st is None:
            continue
        ppid, pgid = st
        children.setdefault(ppid, []).append(int(d))
        if pgid == root:
            group.add(int(d))
    seen, todo = set(), [root]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo += children.get(p, [])
    return sorted((seen | group) & {int(d) for d in os.listdir("/proc") if d.isdigit()})


def tree_memory(root: int) -> dict:
    rss = pss = 0
    n = 0
    per = []
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        kb = 0
        name = ""
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                kb = int(line.split()[1])
            elif line.startswith("Name:"):
                name = line.split(None, 1)[1].strip()
        p_kb = 0
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    p_kb = int(line.split()[1])
                    break
        except OSError:
            pass
        if kb == 0 and p_kb == 0:
            continue  # zombie or kernel thread
        n += 1
        rss += kb
        pss += p_kb
        per.append({"pid": pid, "name": name, "rss_mib": round(kb / 1024, 1)})
    return {"rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1), "processes": n, "per_process": per}


# ------------------------------------------------------------------ server lifecycle


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict, workdir: Path, port: int):
        self.name, self.cmd, self.env, self.workdir, self.port = name, cmd, env, workdir, port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen | None = None

    def start_and_wait(self, timeout: float) -> float:
        logf = open(self.log_path, "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, env=self.env, stdout=logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode} before /health; "
                                   f"log tail: {self.log_tail()}")
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{self.name} not healthy after {timeout:.0f}s; log tail: {self.log_tail()}")
            # Fine polling while a fast server may come up, coarse for slow ones.
            time.sleep(0.002 if time.perf_counter() - t0 < 2.0 else 0.05)

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        pids = process_tree(self.proc.pid)
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.time() + 10
        while time.time() < deadline and any(Path(f"/proc/{p}").exists() and _stat(p) for p in pids):
            time.sleep(0.2)
        for p in pids + [self.proc.pid]:
            try:
                if _stat(p) is not None:
                    os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None


def run_one(name: str, cmd: list[str], env: dict, workdir: Path, port: int, args, py: str) -> dict:
    res: dict = {"command": " ".join(shlex.quote(c) for c in cmd), "workdir": str(workdir)}
    srv = Server(name, cmd, env, workdir, port)
    try:
        log(f"{name}: starting: {res['command']}")
        res["loadavg_before"] = loadavg()
        res["startup_s"] = round(srv.start_and_wait(args.startup_timeout), 3)
        log(f"{name}: healthy after {res['startup_s']} s")
        time.sleep(3)
        res["memory_idle"] = tree_memory(srv.proc.pid)
        client_cmd = [py, str(HERE / "bench_client.py"), srv.url] + (["--quick"] if args.quick else [])
        if args.only_sections:
            client_cmd += ["--only", args.only_sections]
        log(f"{name}: running {' '.join(client_cmd[1:])}")
        t0 = time.perf_counter()
        cp = subprocess.run(client_cmd, stdout=subprocess.PIPE, text=True, timeout=args.client_timeout)
        res["client_wall_s"] = round(time.perf_counter() - t0, 1)
        if cp.returncode != 0:
            raise RuntimeError(f"bench_client.py exited {cp.returncode}; server log tail: {srv.log_tail()}")
        res["client"] = json.loads(cp.stdout)
        res["memory_after_load"] = tree_memory(srv.proc.pid)
        res["loadavg_after"] = loadavg()
        log(f"{name}: RSS after load {res['memory_after_load']['rss_mib']} MiB "
            f"in {res['memory_after_load']['processes']} processes")
    except Exception as e:  # noqa: BLE001 - recorded in the results
        res["error"] = str(e)
        log(f"{name}: ERROR: {e}")
    finally:
        srv.stop()
    return res


# ------------------------------------------------------------------ report


def dig(d: dict, path: str):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


ROWS = [
    # label, path, better, format
    ("startup to /health (s)", "startup_s", "lower", "{:.3f}"),
    ("log_metric x{a}: calls/s", "client.log_metric.calls_per_s", "higher", "{:,.1f}"),
    ("log_metric x{a}: wall (s)", "client.log_metric.wall_s", "lower", "{:,.2f}"),
    ("log_metric per call p50 (ms)", "client.log_metric.p50_ms", "lower", "{:,.2f}"),
    ("log_metric per call p99 (ms)", "client.log_metric.p99_ms", "lower", "{:,.2f}"),
    ("log_batch {b} metrics: metrics/s", "client.log_batch.metrics_per_s", "higher", "{:,.0f}"),
    ("log_batch {b} metrics: wall (s)", "client.log_batch.wall_s", "lower", "{:,.2f}"),
    ("log_batch per 1,000 batch p50 (ms)", "client.log_batch.batch_p50_ms", "lower", "{:,.2f}"),
    ("create {c} runs (create_run + log_batch): runs/s", "client.search.setup_runs_per_s", "higher", "{:,.1f}"),
    ("search_runs over {c} runs, median of 3 (s)", "client.search.median_s", "lower", "{:.4f}"),
    ("search_runs rows returned", "client.search.rows", "same", "{}"),
    ("server RSS after load (MiB)", "memory_after_load.rss_mib", "lower", "{:,.1f}"),
    ("server PSS after load (MiB)", "memory_after_load.pss_mib", "lower", "{:,.1f}"),
    ("server RSS idle after start (MiB)", "memory_idle.rss_mib", "lower", "{:,.1f}"),
    ("server processes", "memory_after_load.processes", "info", "{}"),
]


def table(results: dict, quick: bool) -> tuple[str, list]:
    div = 10 if quick else 1
    counts = {"a": f"{5000 // div:,}", "b": f"{100000 // div:,}", "c": f"{2000 // div:,}"}
    keel, mlf = results.get("keel", {}), results.get("mlflow", {})
    lines = ["| metric | keel | mlflow | ratio |", "|---|---:|---:|---:|"]
    rows = []
    for label, path, better, fmt in ROWS:
        label = label.format(**counts)
        k, m = dig(keel, path), dig(mlf, path)
        ks = fmt.format(k) if k is not None else "n/a"
        ms = fmt.format(m) if m is not None else "n/a"
        ratio = None
        rs = ""
        if k is not None and m is not None:
            if better == "same":
                rs = "same" if k == m else "DIFFERENT"
            elif better == "higher" and m:
                ratio = k / m
            elif better == "lower" and k:
                ratio = m / k
            if ratio is not None:
                rs = f"{ratio:,.1f}x" if ratio >= 10 else f"{ratio:,.2f}x"
        rows.append({"metric": label, "keel": k, "mlflow": m, "better": better,
                     "ratio_keel_advantage": round(ratio, 3) if ratio is not None else None})
        lines.append(f"| {label} | {ks} | {ms} | {rs} |")
    return "\n".join(lines), rows


def cmd_version(cmd: list[str]) -> str | None:
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if cp.returncode != 0:
            return None
        out = (cp.stdout or cp.stderr).strip()
        return out.splitlines()[0] if out else None
    except Exception:  # noqa: BLE001
        return None


def machine_info() -> dict:
    info = {
        "nproc": cmd_version(["nproc"]),
        "os_cpu_count": os.cpu_count(),
        "loadavg": loadavg(),
        "uname": " ".join(platform.uname()),
        "python": sys.version.split()[0],
        "sqlite_python": sqlite3.sqlite_version,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_total_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info["git_commit"] = cmd_version(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="divide all counts by 10 (for testing)")
    ap.add_argument("--keel-bin", default=str(REPO / "target" / "release" / "keel"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory for the JSON result")
    ap.add_argument("--servers", default="keel,mlflow", help="which servers to run, in order")
    ap.add_argument("--only-sections", default="", help="pass --only to bench_client.py (a,b,c)")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--client-timeout", type=float, default=4 * 3600.0)
    ap.add_argument("--argv0", default="bench/tracking/run.sh", help=argparse.SUPPRESS)
    ap.add_argument("--orig-args", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()

    venv = Path(sys.prefix)
    py = sys.executable
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    keel_bin = str(Path(args.keel_bin).resolve()) if os.path.exists(args.keel_bin) else args.keel_bin

    out = {
        "benchmark": "tracking",
        "timestamp_utc": stamp,
        "command": f"{args.argv0} {args.orig_args}".strip(),
        "quick": args.quick,
        "machine": machine_info(),
        "versions": {
            "keel": cmd_version([keel_bin, "--version"]) if os.path.exists(keel_bin) else None,
            "keel_bin": keel_bin,
            "mlflow": cmd_version([py, "-c", "import mlflow; print(mlflow.__version__)"]),
            "venv": str(venv),
        },
        "notes": [
            "mlflow server runs with its defaults: 4 uvicorn workers and server job execution "
            "(huey consumers) enabled, as in the measured baseline; both servers use SQLite and a "
            "local artifact directory (--artifacts-destination).",
            "servers run one after the other, never concurrently; the client is the official "
            "MlflowClient / mlflow.search_runs in the same venv.",
            "ratio = keel advantage: mlflow/keel for lower-is-better rows, keel/mlflow for "
            "higher-is-better rows (>1 means keel is better).",
            "memory = sum of VmRSS (and Pss from smaps_rollup) over the server's process tree.",
        ],
        "servers": {},
    }

    base_env = dict(os.environ)
    base_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base_env.get('PATH', '')}"
    rc = 0
    for name in [s for s in args.servers.split(",") if s]:
        workdir = Path(tempfile.mkdtemp(prefix=f"keel-bench-{name}-"))
        port = free_port()
        env = dict(base_env)
        if name == "keel":
            cmd = [keel_bin, "server", "--backend-store-uri", f"sqlite:///{workdir}/keel.db",
                   "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1",
                   "--port", str(port)]
        elif name == "mlflow":
            # Default settings: do not let the caller's environment change them.
            for k in ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "MLFLOW_WORKERS", "MLFLOW_TRACKING_URI"):
                env.pop(k, None)
            cmd = [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
                   "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
                   "--artifacts-destination", str(workdir / "artifacts")]
        else:
            log(f"unknown server {name!r}")
            return 2
        res = run_one(name, cmd, env, workdir, port, args, py)
        out["servers"][name] = res
        if "error" in res:
            rc = 1
        elif not all(dig(res, f"client.{s}.ok") in (True, None) for s in ("log_metric", "log_batch", "search")):
            res["error"] = "the client's read-back checks failed (see client.*.ok)"
            rc = 1
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            res["workdir"] = None

    md, rows = table(out["servers"], args.quick)
    out["table"] = rows
    k_rows = dig(out["servers"], "keel.client.search.rows")
    m_rows = dig(out["servers"], "mlflow.client.search.rows")
    out["search_rows_match"] = (k_rows == m_rows) if k_rows is not None and m_rows is not None else None
    if out["search_rows_match"] is False:
        rc = 1
    out["machine"]["loadavg_end"] = loadavg()

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"tracking-{stamp}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")

    m = out["machine"]
    print(f"## Tracking server benchmark ({'quick, counts / 10' if args.quick else 'full'})\n")
    print(f"`{out['command']}` at {stamp}; nproc {m['nproc']}, load average {m['loadavg']} -> "
          f"{m['loadavg_end']}; keel {out['versions']['keel']}, mlflow {out['versions']['mlflow']} "
          f"(default server settings); CPU {m.get('cpu')}\n")
    print(md)
    print()
    for name, res in out["servers"].items():
        if "error" in res:
            print(f"- **{name} error**: {res['error'].splitlines()[0][:300]}")
    if out["search_rows_match"] is not None:
        print(f"- search rows equal on both servers: {out['search_rows_match']}")
    print(f"- ratio = keel advantage (>1 means keel is better); results: {path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
