"""Cost of authentication per request: keel server with no auth, an access
token and HTTP basic auth (credential cache on), beside `mlflow server
--app-name basic-auth` (and without auth) in the same run, on log_batch
(100 metrics per call) and runs/search. The authenticated caller is a
non-admin user holding EDIT on the experiment, so every request pays the
whole check: credential, then the permission table's grant lookup.

    bench/auth/run.sh [--keel-bin target/release/keel] [--requests 300] [--servers keel,mlflow]

Prints a Markdown table: median and mean milliseconds per request per case,
and each authenticated case's cost over the same server without auth.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import requests

ADMIN_PASSWORD = "bench-admin-password"
USER, PASSWORD = "bencher", "bench-user-password"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(kind, auth, keel_bin, work, extra_path):
    port = free_port()
    env = dict(os.environ)
    ini = os.path.join(work, "basic_auth.ini")
    with open(ini, "w") as f:
        f.write(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{work}/auth.db\n"
                "admin_username = admin\n")
    env.update(MLFLOW_AUTH_CONFIG_PATH=ini, MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
               MLFLOW_FLASK_SERVER_SECRET_KEY="bench", PYTHONPATH=extra_path,
               MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    app = ["--app-name", "basic-auth"] if auth else []
    if kind == "keel":
        cmd = [keel_bin, "server", "--backend-store-uri", f"sqlite:///{work}/keel.db",
               "--artifacts-destination", f"{work}/artifacts", "--port", str(port)] + app
    else:
        cmd = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--host",
               "127.0.0.1", "--port", str(port), "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
               "--artifacts-destination", f"{work}/artifacts", "--workers", "1"] + app
    log = open(os.path.join(work, f"{kind}.log"), "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{kind} did not start; see {work}/{kind}.log")


def setup(url, auth):
    """A user with EDIT on a fresh experiment and one run; returns the session kwargs."""
    admin = requests.Session()
    if auth:
        admin.auth = ("admin", ADMIN_PASSWORD)
        r = admin.post(f"{url}/api/2.0/mlflow/users/create",
                       json={"username": USER, "password": PASSWORD}, timeout=60)
        r.raise_for_status()
    exp = admin.post(f"{url}/api/2.0/mlflow/experiments/create",
                     json={"name": f"bench-{time.time()}"}, timeout=60).json()["experiment_id"]
    if auth:
        admin.post(f"{url}/api/3.0/mlflow/users/permissions/grant",
                   json={"username": USER, "resource_type": "experiment", "resource_id": exp,
                         "permission": "EDIT"}, timeout=60).raise_for_status()
    run = admin.post(f"{url}/api/2.0/mlflow/runs/create",
                     json={"experiment_id": exp}, timeout=60).json()["run"]["info"]["run_id"]
    return exp, run


def measure(session, url, exp, run, n):
    batch = [{"key": f"m{i}", "value": i * 0.5, "timestamp": 0, "step": 0} for i in range(100)]
    out = {}
    for name, call in [
        ("log_batch", lambda step: session.post(
            f"{url}/api/2.0/mlflow/runs/log-batch",
            json={"run_id": run, "metrics": [dict(m, step=step) for m in batch]}, timeout=60)),
        ("runs/search", lambda step: session.post(
            f"{url}/api/2.0/mlflow/runs/search",
            json={"experiment_ids": [exp], "max_results": 100}, timeout=60)),
    ]:
        for step in range(10):  # warm-up (connections, caches)
            call(step).raise_for_status()
        times = []
        for step in range(10, 10 + n):
            start = time.perf_counter()
            r = call(step)
            times.append((time.perf_counter() - start) * 1000)
            r.raise_for_status()
        out[name] = (statistics.median(times), statistics.mean(times))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--keel-bin", default="target/release/keel")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--servers", default="keel,mlflow")
    p.add_argument("--extra-path", default="")
    a = p.parse_args()
    rows = []
    for kind in a.servers.split(","):
        for auth in (False, True):
            with tempfile.TemporaryDirectory(prefix=f"keel-bench-auth-{kind}-") as work:
                proc, url = start(kind, auth, a.keel_bin, work, a.extra_path)
                try:
                    exp, run = setup(url, auth)
                    cases = [("none", None)]
                    if auth:
                        cases = [("basic", (USER, PASSWORD))]
                        if kind == "keel":
                            token = requests.post(
                                f"{url}/api/2.0/keel/tokens/create", json={"username": USER},
                                auth=("admin", ADMIN_PASSWORD), timeout=60).json()["token"]
                            cases.append(("token", token))
                    for case, cred in cases:
                        s = requests.Session()
                        if isinstance(cred, tuple):
                            s.auth = cred
                        elif cred:
                            s.headers["Authorization"] = f"Bearer {cred}"
                        for op, (median, mean) in measure(s, url, exp, run, a.requests).items():
                            rows.append((kind, case, op, median, mean))
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
    base = {(k, op): med for k, c, op, med, _ in rows if c == "none"}
    print(f"\n{a.requests} requests per case, one keep-alive connection, 127.0.0.1\n")
    print("| server | auth | request | median ms | mean ms | vs no auth |")
    print("|---|---|---|---:|---:|---:|")
    for kind, case, op, median, mean in rows:
        ratio = median / base[(kind, op)] if (kind, op) in base else float("nan")
        print(f"| {kind} | {case} | {op} | {median:.2f} | {mean:.2f} | {(ratio - 1) * 100:+.1f} % |")


if __name__ == "__main__":
    main()
