"""What authentication and the HTTP bounds cost per request, keel beside
`mlflow server --app-name basic-auth`, measured like for like.

Cases (every server of one tool shares one SQLite store, so every case sees
the same data at every moment):

- keel `none`: `keel server` with its default HTTP bounds (timeouts,
  connection cap, body budget) and no authentication;
- keel `no-limits`: the same without the bounds (`--no-http-limits`, hyper
  alone): `none` against it is what the bounds cost (issue 16);
- keel `token` and `basic`: `keel server --app-name basic-auth`, the caller a
  non-admin user holding EDIT on the experiment (a token of that user, then
  HTTP basic auth with keel's credential cache), so every request pays the
  credential check and the grant lookup: against `none`, what authentication
  costs (issue 13);
- mlflow `none` and `basic`: `mlflow server` without and with
  `--app-name basic-auth`, one worker each, the same user and grant.

Requests: log_batch of 100 metrics into the case's own run, and runs/search
over an experiment of `--seed-runs` runs (5 params, 5 metrics each) returning
up to 100. Rounds interleave the cases (the order rotates every round) so that
background load and the store's growth hit them alike. Each block of
`--requests` requests is timed per request on the client (wall) and on the
server (CPU time of the server's processes from /proc/PID/task/*/schedstat,
nanosecond resolution); a case's figure is the median over rounds of its
blocks' per-request means. Costs are relative to the same tool's `none` case.

Checks (the run fails when one does not hold): every request answered 2xx;
the authenticating servers refuse a request without credentials (401) and a
write by a READ-only user (403), so the authenticated cases really were
authenticated; keel `no-limits` really runs without the bounds (a head slower
than `--header-timeout` is answered there and cut off by `none`).

    bench/auth/run.sh [--keel-bin target/release/keel] [--rounds 15] [--requests 40]
        [--mlflow-rounds 5] [--mlflow-requests 10] [--servers keel,mlflow]
    bench/auth/run.sh --instructions --rounds 2 --requests 20   # keel under callgrind

With `--instructions` keel's servers run under `valgrind --tool=callgrind`
and each block's cost is the instructions every server thread executed
(callgrind_control zeroes the counters before a block and dumps them after):
exact and repeatable whatever else the machine runs, which CPU time on a
shared 2-core machine is not (its spread between rounds is about ±10 %).

Writes bench/results/auth-<UTC stamp>.json (machine, load, every block) and
prints Markdown tables.
"""

import argparse
import datetime as dt
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "bench-admin-password"
USER, PASSWORD = "bencher", "bench-user-password"
READER, READER_PASSWORD = "reader", "bench-reader-password"


def log(message):
    print(f"[auth] {message}", file=sys.stderr, flush=True)


def loadavg():
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid):
    """pid and every descendant (MLflow's server runs its app in child processes)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ns(pids):
    """CPU time used so far by every thread of `pids`, in nanoseconds."""
    total = 0
    for pid in pids:
        for sched in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                total += int(sched.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


class Server:
    def __init__(self, tool, name, cmd, env, work, instructions=False):
        self.tool, self.name = tool, name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = cmd + ["--port", str(self.port)]
        self.cmd = cmd
        self.instructions = instructions
        self.dumps = Path(work) / f"callgrind-{tool}-{name}"
        if instructions:
            # Counted, not timed: instructions executed by every thread,
            # zeroed before and dumped after each block (callgrind_control).
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.dumps}.%p",
                   "--dump-line=no"] + cmd
        self.log = open(os.path.join(work, f"{tool}-{name}.log"), "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 180
        while True:
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise SystemExit(f"{' '.join(cmd)} did not start; see {self.log.name}")
            time.sleep(0.1)
        self.pids = tree(self.proc.pid)

    def cpu(self):
        return cpu_ns(self.pids)

    def zero(self):
        subprocess.run(["callgrind_control", "-z", str(self.proc.pid)], check=True,
                       capture_output=True, timeout=120)

    def dumped_instructions(self):
        """Instructions since the last zero (dumps them; callgrind zeroes on dump)."""
        before = set(self.dumps.parent.glob(f"{self.dumps.name}.*"))
        subprocess.run(["callgrind_control", "-d", str(self.proc.pid)], check=True,
                       capture_output=True, timeout=120)
        new = sorted(set(self.dumps.parent.glob(f"{self.dumps.name}.*")) - before)
        if not new:
            raise SystemExit(f"callgrind wrote no dump for {self.name}")
        total = 0
        for dump in new:
            for line in dump.read_text().splitlines():
                if line.startswith(("totals:", "summary:")):
                    total = max(total, int(line.split()[1]))
        return total

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def servers_for(tool, keel_bin, work, extra_path, instructions=False):
    """The servers of one tool, sharing one store."""
    ini = os.path.join(work, "basic_auth.ini")
    with open(ini, "w") as f:
        f.write(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{work}/auth.db\n"
                "admin_username = admin\n")
        if instructions:
            # valgrind runs keel ~50x slower: the credential cache's 60 s
            # would expire between blocks that take a few real seconds.
            f.write("auth_cache_ttl_seconds = 3000\n")
    env = dict(os.environ, MLFLOW_AUTH_CONFIG_PATH=ini, MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
               MLFLOW_FLASK_SERVER_SECRET_KEY="bench", PYTHONPATH=extra_path,
               MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", RUST_LOG="warn")
    auth = ["--app-name", "basic-auth"]
    if tool == "keel":
        base = [keel_bin, "server", "--host", "127.0.0.1", "--backend-store-uri",
                f"sqlite:///{work}/keel.db", "--artifacts-destination", f"{work}/artifacts"]
        # The authenticating server first: it creates the store and its admin.
        authed = Server(tool, "auth", base + auth, env, work, instructions)
        return {"auth": authed, "none": Server(tool, "none", base, env, work, instructions),
                "no-limits": Server(tool, "no-limits", base + ["--no-http-limits"], env, work, instructions)}
    base = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--host", "127.0.0.1",
            "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
            "--artifacts-destination", f"{work}/artifacts", "--workers", "1"]
    authed = Server(tool, "auth", base + auth, env, work)
    return {"auth": authed, "none": Server(tool, "none", base, env, work)}


def setup(tool, servers, seed_runs):
    """Users, grants, the experiment with its seeded runs, and one run per case.
    Returns (experiment id, {case: (server, session, run id)})."""
    url = servers["auth"].url
    admin = requests.Session()
    admin.auth = ("admin", ADMIN_PASSWORD)
    for user, password in ((USER, PASSWORD), (READER, READER_PASSWORD)):
        admin.post(f"{url}/api/2.0/mlflow/users/create",
                   json={"username": user, "password": password}, timeout=60).raise_for_status()
    exp = admin.post(f"{url}/api/2.0/mlflow/experiments/create",
                     json={"name": f"bench-auth-{time.time()}"}, timeout=60)
    exp.raise_for_status()
    exp = exp.json()["experiment_id"]
    admin.post(f"{url}/api/3.0/mlflow/users/permissions/grant",
               json={"username": USER, "resource_type": "experiment", "resource_id": exp,
                     "permission": "EDIT"}, timeout=60).raise_for_status()
    for i in range(seed_runs):
        run = admin.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": exp},
                         timeout=60).json()["run"]["info"]["run_id"]
        admin.post(f"{url}/api/2.0/mlflow/runs/log-batch", json={
            "run_id": run,
            "params": [{"key": f"p{j}", "value": str(i * j)} for j in range(5)],
            "metrics": [{"key": f"m{j}", "value": i * 0.1 + j, "timestamp": 0, "step": 0} for j in range(5)],
        }, timeout=60).raise_for_status()
    cases = {"none": servers["none"], "basic": servers["auth"]}
    if tool == "keel":
        cases["no-limits"] = servers["no-limits"]
        cases["token"] = servers["auth"]
    out = {}
    for case, server in cases.items():
        session = requests.Session()
        if case == "basic":
            session.auth = (USER, PASSWORD)
        elif case == "token":
            token = admin.post(f"{url}/api/2.0/keel/tokens/create", json={"username": USER}, timeout=60)
            token.raise_for_status()
            session.headers["Authorization"] = f"Bearer {token.json()['token']}"
        run = session.post(f"{server.url}/api/2.0/mlflow/runs/create", json={"experiment_id": exp},
                           timeout=60)
        run.raise_for_status()
        out[case] = (server, session, run.json()["run"]["info"]["run_id"])
    return exp, out


def sanity(tool, servers, exp, case_runs):
    """The authenticated cases are authenticated; keel's no-limits case has no bounds."""
    problems = []
    url = servers["auth"].url
    r = requests.post(f"{url}/api/2.0/mlflow/runs/search", json={"experiment_ids": [exp]}, timeout=60)
    if r.status_code != 401:
        problems.append(f"{tool}: a request without credentials got {r.status_code}, not 401")
    run = case_runs["basic"][2]
    r = requests.post(f"{url}/api/2.0/mlflow/runs/log-batch", auth=(READER, READER_PASSWORD), timeout=60,
                      json={"run_id": run, "metrics": [{"key": "x", "value": 1, "timestamp": 0, "step": 0}]})
    if r.status_code != 403:
        problems.append(f"{tool}: a READ user's log_batch got {r.status_code}, not 403")
    if tool == "keel":
        # A head that takes longer than the header timeout: cut off with the
        # bounds (--header-timeout 10s by default), answered without them.
        for case, want_answer in (("no-limits", True), ("none", False)):
            port = servers[case].port
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                time.sleep(11)
                try:
                    s.sendall(b"\r\n")
                    answered = s.recv(64).startswith(b"HTTP/1.1 200")
                except OSError:
                    answered = False
            if answered != want_answer:
                problems.append(f"keel {case}: a head sent over 11 s was "
                                f"{'answered' if answered else 'cut off'}")
    return problems


def verification(servers, exp):
    """Instructions of one runs/search whose basic credential is not cached
    (a user's first request: one PBKDF2 verification), next to the same
    request with the credential cached."""
    url = servers["auth"].url
    requests.post(f"{url}/api/2.0/mlflow/users/create", auth=("admin", ADMIN_PASSWORD), timeout=120,
                  json={"username": "cold", "password": "bench-cold-password"}).raise_for_status()
    out = []
    for _ in range(2):
        servers["auth"].zero()
        requests.post(f"{url}/api/2.0/mlflow/runs/search", auth=("cold", "bench-cold-password"), timeout=600,
                      json={"experiment_ids": [exp], "max_results": 1}).raise_for_status()
        out.append(servers["auth"].dumped_instructions())
    return {"first_request": out[0], "cached": out[1], "verification": out[0] - out[1]}


def calls(exp, run, step):
    batch = [{"key": f"m{i}", "value": i * 0.5, "timestamp": 0, "step": step} for i in range(100)]
    return {
        "log_batch": ("runs/log-batch", {"run_id": run, "metrics": batch}),
        "runs/search": ("runs/search", {"experiment_ids": [exp], "max_results": 100}),
    }


def block(server, session, exp, run, op, n, step0):
    """n requests of op; returns per-request wall ms (list) and server CPU ns
    (or, under callgrind, instructions) per request."""
    walls = []
    if server.instructions:
        server.zero()
    before = server.cpu()
    for step in range(step0, step0 + n):
        path, body = calls(exp, run, step)[op]
        start = time.perf_counter()
        r = session.post(f"{server.url}/api/2.0/mlflow/{path}", json=body, timeout=120)
        walls.append((time.perf_counter() - start) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{server.tool} {op}: HTTP {r.status_code}: {r.text[:300]}")
    if server.instructions:
        return walls, server.dumped_instructions() / n
    return walls, (server.cpu() - before) / n


def measure(tool, exp, case_runs, rounds, n):
    names = list(case_runs)
    blocks = []
    step = 1_000
    for _, (server, session, run) in case_runs.items():  # warm-up
        for op in ("log_batch", "runs/search"):
            block(server, session, exp, run, op, 5, step)
            step += 5
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for op in ("log_batch", "runs/search"):
            for case in order:
                server, session, run = case_runs[case]
                walls, cpu = block(server, session, exp, run, op, n, step)
                step += n
                blocks.append({"tool": tool, "case": case, "op": op, "round": r + 1,
                               "wall_ms": walls, "server_cost_per_request": cpu})
        log(f"{tool} round {r + 1}/{rounds} done (load {loadavg()[0]:.1f})")
    return blocks


def summarize(blocks):
    out = {}
    for b in blocks:
        key = (b["tool"], b["case"], b["op"])
        s = out.setdefault(key, {"cpu": [], "wall_mean": [], "wall": []})
        s["cpu"].append(b["server_cost_per_request"])
        s["wall_mean"].append(statistics.mean(b["wall_ms"]))
        s["wall"].extend(b["wall_ms"])
    return {k: {"cost": statistics.median(v["cpu"]), "wall_ms_block_median": statistics.median(v["wall_mean"]),
                "wall_ms_median": statistics.median(v["wall"]), "blocks": len(v["cpu"])}
            for k, v in out.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keel-bin", default=str(REPO / "target" / "release" / "keel"))
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--requests", type=int, default=40, help="requests per block (keel)")
    p.add_argument("--mlflow-rounds", type=int, default=5)
    p.add_argument("--mlflow-requests", type=int, default=10)
    p.add_argument("--seed-runs", type=int, default=100)
    p.add_argument("--servers", default="keel,mlflow")
    p.add_argument("--extra-path", default="")
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    p.add_argument("--instructions", action="store_true",
                   help="run keel's servers under callgrind and count instructions per request "
                        "instead of CPU time (exact whatever the machine's load; keel only)")
    a = p.parse_args()
    if a.instructions:
        a.servers = "keel"
    unit = "instructions/request" if a.instructions else "server CPU us/request"
    scale = 1 if a.instructions else 1e-3
    blocks, problems, commands, versions, verify = [], [], {}, {}, None
    load_start = loadavg()
    for tool in a.servers.split(","):
        with tempfile.TemporaryDirectory(prefix=f"keel-bench-auth-{tool}-") as work:
            servers = servers_for(tool, a.keel_bin, work, a.extra_path, a.instructions)
            try:
                commands[tool] = {name: " ".join(s.cmd) for name, s in servers.items()}
                versions[tool] = requests.get(f"{servers['none'].url}/version", timeout=10).text.strip()
                exp, case_runs = setup(tool, servers, a.seed_runs)
                problems += sanity(tool, servers, exp, case_runs)
                rounds, n = (a.rounds, a.requests) if tool == "keel" else (a.mlflow_rounds, a.mlflow_requests)
                blocks += measure(tool, exp, case_runs, rounds, n)
                if a.instructions:
                    verify = verification(servers, exp)
            finally:
                for s in servers.values():
                    s.stop()
    summary = summarize(blocks)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    raw = Path(a.out) / f"auth-{'instructions-' if a.instructions else ''}{stamp}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({
        "bench": "auth", "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_start": load_start, "loadavg_end": loadavg()},
        "args": vars(a), "commands": commands, "versions": versions,
        "server_cost_unit": "instructions" if a.instructions else "CPU ns",
        "summary": [{"tool": t, "case": c, "op": o, **v} for (t, c, o), v in summary.items()],
        "password_verification_instructions": verify,
        "checks_failed": problems, "blocks": blocks,
    }, indent=1) + "\n")
    print(f"\n{os.cpu_count()} cores, load average {load_start[0]:.1f} at start, {loadavg()[0]:.1f} at end; "
          f"keel {a.rounds} rounds x {a.requests} requests per case and request, mlflow "
          f"{a.mlflow_rounds} x {a.mlflow_requests}; cases interleaved, one keep-alive connection each\n")
    if a.instructions:
        print("keel's servers under valgrind --tool=callgrind: wall times are valgrind's, not keel's\n")
    print(f"| server | case | request | {unit} | vs none | wall ms (median) | vs none (wall) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for (tool, case, op), v in summary.items():
        base = summary.get((tool, "none", op))
        cost = f"{(v['cost'] / base['cost'] - 1) * 100:+.1f} %" if base and case != "none" else ""
        wall = f"{(v['wall_ms_median'] / base['wall_ms_median'] - 1) * 100:+.1f} %" if base and case != "none" else ""
        print(f"| {tool} {versions.get(tool, '')} | {case} | {op} | {v['cost'] * scale:,.0f} | {cost} | "
              f"{v['wall_ms_median']:.2f} | {wall} |")
    if "keel" in versions and "mlflow" in versions:
        print()
        for op in ("log_batch", "runs/search"):
            k, m = summary[("keel", "basic", op)], summary[("mlflow", "basic", op)]
            print(f"- {op} with basic auth: keel {k['wall_ms_median']:.2f} ms vs mlflow "
                  f"{m['wall_ms_median']:.2f} ms wall ({m['wall_ms_median'] / k['wall_ms_median']:.0f}x), "
                  f"server CPU {m['cost'] / k['cost']:.0f}x")
    if verify:
        print(f"\nbasic auth, first request of a credential (PBKDF2, then cached for the TTL): "
              f"{verify['first_request']:,} instructions vs {verify['cached']:,} cached "
              f"(the verification: {verify['verification']:,})")
    print(f"\nraw: {raw.relative_to(REPO) if raw.is_relative_to(REPO) else raw}")
    if problems:
        for problem in problems:
            log(f"CHECK FAILED: {problem}")
        return 1
    print("checks: unauthenticated 401 and READ-user write 403 on the auth servers"
          + ("; keel's no-limits server has no header timeout, the default one does" if "keel" in versions else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
