"""Replica switch time after an alias move (called by bench/replicas/run.sh).

keel: one `keel server` (SQLite, or --backend-store-uri), two versions of a
model registered through it, N `keel serve models:/risk@champion` replicas
(prediction log on), steady sequential traffic on every replica (C clients
each), and K alias moves alternating v2, v1, v2, ... every --gap seconds with
`keel models promote risk V --alias champion --force`. For each move and
replica: the time from the promote command's return (the alias is committed
by then) to the replica's first answer from the new version, read from the
`x-keel-model-version` header of real answers. Failed requests (anything but
200, or a transport error) are counted over the whole run.

The peer: `mlflow models serve` loads a model once and does not follow an
alias, so an MLflow user switches versions by restarting it. The figure
beside keel's is that restart: the time from starting `mlflow models serve
-m DIR --env-manager local -w 1` on the same data's scikit-learn model to its
first answer (R restarts), during which a single instance answers nothing.

Writes <out>/replicas-<UTC>.json and prints a Markdown table.
"""

import argparse
import http.client
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROW = {"age": 41, "income": 52000, "employment_years": 6, "credit_score": 690,
       "loan_amount": 12000, "debt_to_income": 0.31, "home_ownership": "rent",
       "purpose": "car"}


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env=None, cwd=None):
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def wait_http(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            host, port = url.split("//")[1].split(":")
            c = http.client.HTTPConnection(host, int(port), timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not start")


def start_replica(keel, server_url, work, i):
    proc = subprocess.Popen(
        [keel, "serve", "models:/risk@champion", "--tracking-uri", server_url,
         "--port", "0", "--log-dir", os.path.join(work, "logs"),
         "--replica-id", f"replica-{i}", "--cache-dir", os.path.join(work, f"cache-{i}")],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env=dict(os.environ, RUST_LOG="warn"))
    address = None
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"on http://(\S+)", line)
        if m:
            address = m.group(1)
            break
    if address is None:
        raise SystemExit(f"replica {i} did not start")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, address


class Client(threading.Thread):
    """Sequential predictions on one replica over one keep-alive connection."""

    def __init__(self, address, stop):
        super().__init__(daemon=True)
        self.host, port = address.split(":")
        self.port = int(port)
        self.stop = stop
        self.answers = []  # (monotonic time of the answer, version)
        self.failed = 0
        self.body = json.dumps({"dataframe_records": [ROW]})

    def run(self):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("POST", "/invocations", self.body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.answers.append((time.monotonic(),
                                         response.getheader("x-keel-model-version")))
                else:
                    self.failed += 1
            except OSError:
                self.failed += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)


def keel_side(args, work):
    env = dict(os.environ)
    keel = args.keel_bin
    for seed in ("1", "2"):
        run([keel, "generate", "portfolio", "--rows", "3000", "--seed", seed,
             "--out", os.path.join(work, f"train-{seed}.csv")])
        run([keel, "train", "--algo", "logistic", "--target", "default", "--data",
             os.path.join(work, f"train-{seed}.csv"), "--out", os.path.join(work, "artifacts", f"model-{seed}")])
    port = free_port()
    backend = args.backend_store_uri or f"sqlite:///{work}/keel.db"
    server = subprocess.Popen(
        [keel, "server", "--port", str(port), "--backend-store-uri", backend,
         "--artifacts-destination", os.path.join(work, "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    replicas = []
    try:
        wait_http(url)
        env["MLFLOW_TRACKING_URI"] = url
        for seed in ("1", "2"):
            run([keel, "models", "register", "risk", os.path.join(work, "artifacts", f"model-{seed}")],
                env=env)
        run([keel, "models", "promote", "risk", "1", "--alias", "champion", "--force",
             "--reason", "bench"], env=env)
        replicas = [start_replica(keel, url, work, i) for i in range(args.replicas)]
        stop = threading.Event()
        clients = [[Client(address, stop) for _ in range(args.clients)] for _, address in replicas]
        for group in clients:
            for c in group:
                c.start()
        time.sleep(2)
        moves = []
        for k in range(args.moves):
            target = "2" if k % 2 == 0 else "1"
            started = time.monotonic()
            run([keel, "models", "promote", "risk", target, "--alias", "champion", "--force",
                 "--reason", f"bench move {k}"], env=env)
            returned = time.monotonic()
            moves.append({"to": target, "command_started": started, "returned": returned})
            time.sleep(args.gap)
        stop.set()
        for group in clients:
            for c in group:
                c.join()
        switch = []  # per move: per replica seconds from the command's return
        for k, move in enumerate(moves):
            end = moves[k + 1]["command_started"] if k + 1 < len(moves) else float("inf")
            per_replica = []
            for group in clients:
                firsts = [t for c in group for (t, v) in c.answers
                          if v == move["to"] and move["returned"] <= t < end]
                per_replica.append(min(firsts) - move["returned"] if firsts else None)
            switch.append({"to": move["to"],
                           "promote_command_s": move["returned"] - move["command_started"],
                           "replica_switch_s": per_replica})
        answered = sum(len(c.answers) for group in clients for c in group)
        failed = sum(c.failed for group in clients for c in group)
        return {"moves": switch, "answered": answered, "failed": failed,
                "backend": "postgresql" if args.backend_store_uri else "sqlite"}
    finally:
        for proc, _ in replicas:
            proc.terminate()
        for proc, _ in replicas:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.terminate()
        server.wait(30)


def mlflow_side(args, work):
    """Restart time of `mlflow models serve` (start to first answer)."""
    python = os.path.join(args.venv, "bin", "python")
    model_dir = os.path.join(work, "mlflow-model")
    script = f"""
import pandas as pd, mlflow.sklearn
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
df = pd.read_csv({os.path.join(work, 'train-1.csv')!r})
y = df.pop('default')
cat = ['home_ownership', 'purpose']
num = [c for c in df.columns if c not in cat]
pipe = make_pipeline(ColumnTransformer([('c', make_pipeline(SimpleImputer(strategy='most_frequent'),
                                                           OneHotEncoder(handle_unknown='ignore')), cat),
                                        ('n', make_pipeline(SimpleImputer(), StandardScaler()), num)]),
                     LogisticRegression(max_iter=1000))
pipe.fit(df, y)
mlflow.sklearn.save_model(pipe, {model_dir!r}, input_example=df.head(2), skops_trusted_types=['numpy.dtype'])
"""
    run([python, "-c", script])
    mlflow = os.path.join(args.venv, "bin", "mlflow")
    restarts = []
    body = json.dumps({"dataframe_records": [ROW]})
    for _ in range(args.restarts):
        port = free_port()
        started = time.monotonic()
        proc = subprocess.Popen([mlflow, "models", "serve", "-m", model_dir, "--env-manager", "local",
                                 "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                                stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "mlflow.log"), "w"),
                                env=dict(os.environ, MLFLOW_TRACKING_URI=f"file://{work}/mlruns",
                                         PATH=os.path.join(args.venv, "bin") + os.pathsep + os.environ["PATH"]))
        first = None
        deadline = started + 180
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    first = time.monotonic() - started
                    break
            except OSError:
                pass
            time.sleep(0.05)
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if first is None:
            with open(os.path.join(work, "mlflow.log")) as f:
                raise SystemExit("mlflow models serve did not answer within 180 s:\n" + f.read()[-3000:])
        restarts.append(first)
    return {"restart_to_first_answer_s": restarts}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--keel-bin", required=True)
    p.add_argument("--venv", required=True)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--clients", type=int, default=2, help="sequential clients per replica")
    p.add_argument("--moves", type=int, default=10)
    p.add_argument("--gap", type=float, default=3.0, help="seconds between alias moves")
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--backend-store-uri", default=None)
    p.add_argument("--out", default="bench/results")
    p.add_argument("--command", default="bench/replicas/run.sh")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-replicas-") as work:
        log("keel: server, 2 versions, replicas, alias moves ...")
        keel = keel_side(args, work)
        log("mlflow: restarts of mlflow models serve ...")
        peer = mlflow_side(args, work)
    switches = [s for m in keel["moves"] for s in m["replica_switch_s"]]
    missing = sum(1 for s in switches if s is None)
    measured = sorted(s for s in switches if s is not None)
    worst_per_move = [max((s for s in m["replica_switch_s"] if s is not None), default=None)
                      for m in keel["moves"]]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result = {
        "command": args.command, "utc": stamp, "machine": f"{platform.node()} {os.cpu_count()} cores",
        "replicas": args.replicas, "clients_per_replica": args.clients, "moves": args.moves,
        "gap_s": args.gap, "keel": keel, "mlflow": peer,
        "summary": {
            "switch_median_s": statistics.median(measured) if measured else None,
            "switch_max_s": measured[-1] if measured else None,
            "all_replicas_switched_median_s": statistics.median(
                [w for w in worst_per_move if w is not None]) if measured else None,
            "all_replicas_from_command_start_median_s": statistics.median(
                [m["promote_command_s"] + w for m, w in zip(keel["moves"], worst_per_move)
                 if w is not None]) if measured else None,
            "promote_command_median_s": statistics.median(
                [m["promote_command_s"] for m in keel["moves"]]),
            "never_switched": missing,
            "answered": keel["answered"], "failed": keel["failed"],
            "mlflow_restart_median_s": statistics.median(peer["restart_to_first_answer_s"]),
        },
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"replicas-{stamp}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    s = result["summary"]
    fmt = lambda v: "n/a" if v is None else f"{v * 1000:.0f} ms"
    print(f"| {args.replicas} replicas x {args.clients} clients, {args.moves} alias moves "
          f"({keel['backend']}) | figure |\n|---|---:|")
    print(f"| keel: one replica on the new version, median | {fmt(s['switch_median_s'])} |")
    print(f"| keel: one replica, worst | {fmt(s['switch_max_s'])} |")
    print(f"| keel: all replicas on the new version, median per move | "
          f"{fmt(s['all_replicas_switched_median_s'])} |")
    print(f"| keel: `keel models promote` command (start to exit), median | "
          f"{fmt(s['promote_command_median_s'])} |")
    print(f"| keel: all replicas on the new version, from the command's start, median | "
          f"{fmt(s['all_replicas_from_command_start_median_s'])} |")
    print(f"| keel: requests answered / failed | {s['answered']} / {s['failed']} |")
    print(f"| keel: replica-moves never switched | {s['never_switched']} |")
    print(f"| mlflow models serve: restart to first answer, median of {args.restarts} | "
          f"{fmt(s['mlflow_restart_median_s'])} |")
    print(f"\nraw: {path}")
    return 0 if s["failed"] == 0 and missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
