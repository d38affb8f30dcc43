"""UI benchmark: keel's web UI vs `mlflow server`'s UI in the same headless Chromium.

For an experiment with N runs (default N = 2,000 and 100,000), both stores get
the same rows (written straight into each one's SQLite schema: the quickest
fill), then Chromium opens the experiment's MLflow link
(`/#/experiments/ID/runs`, the runs tab: MLflow 3.17 opens an experiment
on its GenAI overview) and the time from navigation to the newest run's name in the runs table is
taken in the page: a script installed before any page script
(`Page.addScriptToEvaluateOnNewDocument`) watches the DOM and stamps the first
moment the name appears; the navigation starts from a script on a page of the
same origin that stamps `Date.now()` first. One cold load (fresh profile),
then REPEATS warm loads (median). Also the run page's transferred bytes with
the cache disabled (sum of `transferSize` over the navigation and every
resource) for a run with 3 metrics x 1,000 steps.

Writes bench/results/ui-<UTC>.json and prints a Markdown table. Exit code 1 if
a page never showed the newest run (every figure printed was measured).
"""

import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import requests

REPEATS = 5
PARAMS = 5
METRICS = 3
HISTORY_STEPS = 1000
CHROME_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
    "--window-size=1280,900",
]

# Runs before any page script: stamps when the newest run's name first appears.
WATCH = """
(() => {
  const want = %s;
  const seen = (node) => node && node.textContent && node.textContent.indexOf(want) >= 0;
  const stamp = () => { if (!window.__seen) window.__seen = Date.now(); };
  const observer = new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'characterData' ? seen(r.target) : [...r.addedNodes].some(seen)) {
        stamp(); observer.disconnect(); return;
      }
    }
  });
  observer.observe(document, {childList: true, subtree: true, characterData: true});
})();
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer in {timeout} s")


def rows(n, seed=7):
    """The runs both stores get: (run_id, name, start_ms, params, metrics)."""
    rng = random.Random(seed)
    base = 1_790_000_000_000
    out = []
    for i in range(n):
        run_id = uuid.UUID(int=rng.getrandbits(128)).hex
        params = {f"p{k}": str(rng.choice([0.1, 0.01, 0.001, 3, 7, "gbdt", "rf"])) for k in range(PARAMS)}
        metrics = {f"m{k}": rng.random() for k in range(METRICS)}
        out.append((run_id, f"run-{i:06d}", base + i * 1000, params, metrics))
    return out


def fill(db, experiment_id, data, artifact_root, mlflow_schema):
    """Inserts the runs into a keel or an MLflow SQLite store (one transaction)."""
    con = sqlite3.connect(db)
    cur = con.cursor()
    run_rows = []
    for run_id, name, start, _, _ in data:
        uri = f"{artifact_root}/{experiment_id}/{run_id}/artifacts"
        if mlflow_schema:
            run_rows.append((run_id, name, "LOCAL", "", "", "bench", "FINISHED", start, start + 500, "", "active", uri, int(experiment_id), None))
        else:
            run_rows.append((run_id, int(experiment_id), name, "bench", "FINISHED", start, start + 500, uri, "active", None))
    if mlflow_schema:
        cur.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", run_rows)
    else:
        cur.executemany("INSERT INTO runs (run_uuid, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage, deleted_time) VALUES (?,?,?,?,?,?,?,?,?,?)", run_rows)
    cur.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)" if mlflow_schema else "INSERT INTO params (run_uuid, key, value) VALUES (?,?,?)",
                    [((k, v, r) if mlflow_schema else (r, k, v)) for r, _, _, p, _ in data for k, v in p.items()])
    cur.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)" if mlflow_schema else "INSERT INTO tags (run_uuid, key, value) VALUES (?,?,?)",
                    [(("mlflow.runName", n, r) if mlflow_schema else (r, "mlflow.runName", n)) for r, n, _, _, _ in data])
    points = [(r, k, v, s + 400, 0) for r, _, s, _, m in data for k, v in m.items()]
    # The newest run has a metric history, drawn on its page.
    newest_id, _, newest_start, _, _ = data[-1]
    history = [(newest_id, f"m{k}", 1 / (step + 1) + k, newest_start + step, step) for k in range(METRICS) for step in range(HISTORY_STEPS)]
    if mlflow_schema:
        cur.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,0)", [(k, v, t, r, st) for r, k, v, t, st in points + history])
        latest = {(r, k): (v, t, st) for r, k, v, t, st in points + history}
        cur.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?,?,?,?,0,?)", [(k, v, t, st, r) for (r, k), (v, t, st) in latest.items()])
    else:
        cur.executemany("INSERT OR IGNORE INTO metrics (run_uuid, key, value, timestamp, step, is_nan) VALUES (?,?,?,?,?,0)", points + history)
        latest = {(r, k): (v, t, st) for r, k, v, t, st in points + history}
        cur.executemany("INSERT INTO latest_metrics (run_uuid, key, value, timestamp, step, is_nan) VALUES (?,?,?,?,?,0)", [(r, k, v, t, st) for (r, k), (v, t, st) in latest.items()])
    con.commit()
    con.close()


class Browser:
    """chromedriver + headless Chromium over plain WebDriver HTTP."""

    def __init__(self):
        self.port = free_port()
        self.driver = subprocess.Popen(["chromedriver", f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.root = f"http://127.0.0.1:{self.port}"
        wait_http(f"{self.root}/status", 30)
        self.profile = tempfile.mkdtemp(prefix="ui-bench-profile-")
        binary = next(p for p in ["/usr/lib/chromium/chromium", "/usr/bin/chromium"] if os.path.exists(p))
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": binary, "args": CHROME_ARGS + [f"--user-data-dir={self.profile}"]}}}}
        answer = requests.post(f"{self.root}/session", json=caps, timeout=60).json()["value"]
        self.base = f"{self.root}/session/{answer['sessionId']}"

    def call(self, method, path, body=None):
        answer = requests.request(method, self.base + path, json=body, timeout=300).json()
        value = answer.get("value")
        if isinstance(value, dict) and "error" in value:
            raise RuntimeError(f"webdriver {path}: {value}")
        return value

    def cdp(self, cmd, params):
        return self.call("POST", "/goog/cdp/execute", {"cmd": cmd, "params": params})

    def run(self, script, *args):
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def open(self, url):
        self.call("POST", "/url", {"url": url})

    def quit(self):
        try:
            requests.delete(self.base, timeout=30)
        finally:
            self.driver.kill()
            self.driver.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


def time_to_newest(browser, origin, url, newest, timeout=120):
    """ms from navigation start to the newest run's name in the DOM."""
    browser.open(f"{origin}/health")
    browser.run("sessionStorage.setItem('t0', String(Date.now())); setTimeout(() => { location.href = arguments[0]; }, 0);", url)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = browser.run("return window.__seen ? window.__seen - Number(sessionStorage.getItem('t0')) : null;")
        except RuntimeError:
            value = None
        if value is not None:
            return value
        time.sleep(0.02)
    return None


def run_page_weight(browser, url, newest):
    browser.cdp("Network.enable", {})
    browser.cdp("Network.setCacheDisabled", {"cacheDisabled": True})
    browser.open(url)
    deadline = time.time() + 120
    while time.time() < deadline and not browser.run("return document.body && document.body.textContent.indexOf(arguments[0]) >= 0;", newest):
        time.sleep(0.1)
    time.sleep(2)  # let late requests finish
    weight = browser.run(
        "const e = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];"
        "return {bytes: e.reduce((s, x) => s + (x.transferSize || 0), 0), requests: e.length};")
    browser.cdp("Network.setCacheDisabled", {"cacheDisabled": False})
    return weight


def measure(name, origin, experiment_id, data, use_hash):
    newest = data[-1][1]
    # MLflow 3.17 opens an experiment on its GenAI overview; its runs table is
    # the /runs tab. keel maps the same link to its runs table.
    url = f"{origin}/#/experiments/{experiment_id}/runs" if use_hash else f"{origin}/experiments/{experiment_id}"
    browser = Browser()
    try:
        browser.cdp("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH % json.dumps(newest)})
        cold = time_to_newest(browser, origin, url, newest)
        warm = [time_to_newest(browser, origin, url, newest) for _ in range(REPEATS)]
        run_url = f"{origin}/#/experiments/{experiment_id}/runs/{data[-1][0]}"
        weight = run_page_weight(browser, run_url, newest)
    finally:
        browser.quit()
    ok = cold is not None and all(w is not None for w in warm)
    result = {"server": name, "url": url, "cold_ms": cold, "warm_ms": warm, "warm_median_ms": statistics.median(warm) if ok else None,
              "run_page_bytes": weight["bytes"], "run_page_requests": weight["requests"], "newest_seen": ok}
    print(f"  {name}: cold {cold} ms, warm {warm} ms, run page {weight['bytes']} B in {weight['requests']} requests", file=sys.stderr, flush=True)
    return result


def start(cmd, health, log):
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(health)
    return proc


def stop(proc):
    # The server was started in its own session: end that group only.
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, 9)
        proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keel-bin", required=True)
    parser.add_argument("--runs", default="2000,100000")
    parser.add_argument("--servers", default="keel,mlflow")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    load_start = os.getloadavg()
    results = []
    venv_bin = os.path.dirname(sys.executable)
    for n in [int(x) for x in args.runs.split(",")]:
        data = rows(n)
        print(f"{n} runs", file=sys.stderr, flush=True)
        for server in args.servers.split(","):
            work = tempfile.mkdtemp(prefix=f"ui-bench-{server}-")
            port = free_port()
            origin = f"http://127.0.0.1:{port}"
            log = open(os.path.join(work, "server.log"), "w")
            db = os.path.join(work, "store.db")
            try:
                if server == "keel":
                    cmd = [args.keel_bin, "server", "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", os.path.join(work, "art"), "--port", str(port)]
                    proc = start(cmd, f"{origin}/health", log)
                    experiment_id = requests.post(f"{origin}/api/2.0/mlflow/experiments/create", json={"name": "bench"}, timeout=30).json()["experiment_id"]
                    stop(proc)
                    t = time.time()
                    fill(db, experiment_id, data, "mlflow-artifacts:", mlflow_schema=False)
                    fill_s = time.time() - t
                    proc = start(cmd, f"{origin}/health", log)
                    use_hash = True
                else:
                    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
                    store = SqlAlchemyStore(f"sqlite:///{db}", os.path.join(work, "art"))
                    experiment_id = store.create_experiment("bench")
                    store.engine.dispose()
                    t = time.time()
                    fill(db, experiment_id, data, "mlflow-artifacts:", mlflow_schema=True)
                    fill_s = time.time() - t
                    cmd = [os.path.join(venv_bin, "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", os.path.join(work, "art"), "--host", "127.0.0.1", "--port", str(port)]
                    proc = start(cmd, f"{origin}/health", log)
                    use_hash = True
                try:
                    result = measure(server, origin, experiment_id, data, use_hash)
                    result.update({"runs": n, "fill_seconds": round(fill_s, 2)})
                    if server == "keel":
                        # keel's own URL too (no hash redirect).
                        direct = measure("keel-direct", origin, experiment_id, data, use_hash=False)
                        result["direct_url_warm_median_ms"] = direct["warm_median_ms"]
                        result["direct_url_cold_ms"] = direct["cold_ms"]
                    results.append(result)
                finally:
                    stop(proc)
            finally:
                log.close()
                shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    keel_bin_kind = "release" if "/release/" in args.keel_bin else "debug"
    report = {"bench": "ui", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "keel_bin": keel_bin_kind,
              "loadavg_start": load_start, "loadavg_end": load_end, "repeats": REPEATS, "results": results,
              "machine": {"cpus": os.cpu_count()}, "chromium": subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout.strip()}
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"ui-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"| runs | server | newest run shown, warm median (ms) | cold (ms) | run page transferred |")
    print(f"|---|---|---|---|---|")
    for r in results:
        print(f"| {r['runs']:,} | {r['server']} | {r['warm_median_ms']} | {r['cold_ms']} | {r['run_page_bytes'] / 1024:.0f} KB ({r['run_page_requests']} requests) |")
    by = {(r["runs"], r["server"]): r for r in results}
    for n in sorted({r["runs"] for r in results}):
        k, m = by.get((n, "keel")), by.get((n, "mlflow"))
        if k and m and k["warm_median_ms"] and m["warm_median_ms"]:
            print(f"{n:,} runs: keel {k['warm_median_ms']} ms vs mlflow {m['warm_median_ms']} ms = {m['warm_median_ms'] / k['warm_median_ms']:.1f}x")
    print(f"load average {load_start[0]:.2f} -> {load_end[0]:.2f}; keel build: {keel_bin_kind}; raw: {path}")
    return 0 if all(r["newest_seen"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
