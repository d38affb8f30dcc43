"""The watch service under steady prediction load with a shift injected midway.

Real processes only: `keel quickstart --market-shift 0 --keep-running` makes
the project (risk@production registered on a keel server, `keel serve
--log-dir logs` serving it); this driver sends one-row scoring requests at a
fixed rate (ordinary applicants from `keel generate portfolio`, shifted ones
from `--covariate-shift` between SHIFT_ON and SHIFT_OFF), posts every
request's true label to /feedback after LABEL_LAG seconds, runs `keel
monitor watch` with a webhook pointing at a receiver in this process, and
scrapes the watcher's /metrics every SCRAPE seconds.

The on_drift action is keel's real one (keel.yaml `monitor.on_drift:
retrain`): `keel data add` of the recent labelled traffic and `keel run`
(validate, train, evaluate, gates, register). The project's `promote:` is set
to `approval`, so a retrained version is registered without taking
@production: the reference and the served model stay those of version 1 for
the whole run, and the alerts count only the injected shift.

Stdlib only. Usage: watch_bench.py KEEL_BIN WORK OUT_JSON [DURATION_S]
"""

import http.client
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

KEEL, WORK, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
DURATION = float(sys.argv[4]) if len(sys.argv) > 4 else 600.0
RATE = float(os.environ.get("WATCH_RPS", "100"))
WORKERS = int(os.environ.get("WATCH_WORKERS", "4"))
WINDOW = os.environ.get("WATCH_WINDOW", "30s")
INTERVAL = os.environ.get("WATCH_INTERVAL", "10s")
HISTORY = os.environ.get("WATCH_HISTORY", "6")
SHIFT = float(os.environ.get("WATCH_SHIFT", "1.0"))
LABEL_LAG = float(os.environ.get("WATCH_LABEL_LAG", "5"))
SCRAPE = float(os.environ.get("WATCH_SCRAPE", "5"))
CONFIRM = os.environ.get("WATCH_CONFIRM", "2")
SHIFT_ON, SHIFT_OFF = 0.5 * DURATION, 0.75 * DURATION
TARGET = "default"


def log(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_rows(path):
    import csv
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    at = header.index(TARGET)
    columns = [c for c in header if c != TARGET]

    def cell(text):
        if text == "":
            return None
        try:
            return float(text)
        except ValueError:
            return text

    bodies = []
    for row in rows:
        data = [cell(v) for i, v in enumerate(row) if i != at]
        body = json.dumps({"dataframe_split": {"columns": columns, "data": [data]}}).encode()
        bodies.append((body, row[at]))
    return bodies


# ---- the webhook receiver ----------------------------------------------------
events = []
events_lock = threading.Lock()
T0 = None


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = min(int(self.headers.get("Content-Length", "0")), 1 << 20)
        body = self.rfile.read(length)
        try:
            event = json.loads(body)
        except ValueError:
            event = {"unparsed": body.decode(errors="replace")}
        with events_lock:
            events.append({"t_s": round(time.time() - T0, 1), **event})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


# ---- load and labels ---------------------------------------------------------
class Load:
    def __init__(self, host, port, normal, shifted):
        self.host, self.port = host, port
        self.normal, self.shifted = normal, shifted
        self.next = 0
        self.lock = threading.Lock()
        self.stop = False
        self.ok = self.failed = self.shifted_sent = 0
        self.pending = []  # (sent_at, request_id, label)
        self.labels_posted = self.label_failures = 0
        self.latencies = []

    def slot(self):
        with self.lock:
            i = self.next
            self.next += 1
            return i

    def worker(self, start):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        while not self.stop:
            i = self.slot()
            due = start + i / RATE
            now = time.time()
            if due > now:
                time.sleep(due - now)
            elapsed = time.time() - start
            if elapsed >= DURATION:
                break
            shifted = SHIFT_ON <= elapsed < SHIFT_OFF
            pool = self.shifted if shifted else self.normal
            body, label = pool[i % len(pool)]
            t = time.time()
            try:
                conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                good = response.status == 200
                request_id = response.getheader("x-request-id")
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                good, request_id = False, None
            with self.lock:
                if good:
                    self.ok += 1
                    self.shifted_sent += int(shifted)
                    self.latencies.append(time.time() - t)
                    if request_id and label:
                        self.pending.append((t, request_id, label))
                else:
                    self.failed += 1

    def feedback(self):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        while True:
            time.sleep(1.0)
            now = time.time()
            with self.lock:
                due = [p for p in self.pending if now - p[0] >= LABEL_LAG]
                self.pending = [p for p in self.pending if now - p[0] < LABEL_LAG]
                done = self.stop and not self.pending
            for k in range(0, len(due), 500):
                chunk = due[k:k + 500]
                body = json.dumps({"feedback": [{"request_id": r, "row": 0, "label": l} for _, r, l in chunk]})
                try:
                    conn.request("POST", "/feedback", body.encode(), {"Content-Type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    if response.status // 100 == 2:
                        self.labels_posted += len(chunk)
                    else:
                        self.label_failures += len(chunk)
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                    self.label_failures += len(chunk)
            if done:
                return


# ---- /metrics scraping -------------------------------------------------------
SAMPLE = re.compile(r'^(keel_monitor_[a-z_]+)(\{[^}]*\})?\s+(\S+)$')


def scrape(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = re.sub(r'model="[^"]*",?', "", m.group(2) or "").strip("{},")
        key = m.group(1) + (f"{{{labels}}}" if labels else "")
        try:
            out[key] = float(m.group(3))
        except ValueError:
            pass
    return out


def main():
    global T0
    os.makedirs(WORK, exist_ok=True)
    proj = os.path.join(WORK, "proj")
    # 1. The project, its tracking server and its model server.
    log("keel quickstart --market-shift 0 --keep-running (project, server, registered model, keel serve)")
    qs_log = open(os.path.join(WORK, "quickstart.log"), "w")
    quickstart = subprocess.Popen([KEEL, "quickstart", proj, "--market-shift", "0", "--keep-running"],
                                  stdout=qs_log, stderr=subprocess.STDOUT, start_new_session=True)
    summary_path = os.path.join(proj, "quickstart.json")
    deadline = time.time() + 600
    while not os.path.exists(summary_path):
        if quickstart.poll() is not None or time.time() > deadline:
            raise SystemExit(f"quickstart ended early (rc {quickstart.returncode}); see {qs_log.name}")
        time.sleep(1)
    time.sleep(1)
    summary = json.load(open(summary_path))
    server_url, serve_url = summary["tracking_server"], summary["model_server"]
    log(f"tracking {server_url}, model server {serve_url}")
    procs = [quickstart]
    watcher = None
    try:
        # 2. The bench's policy: retrained versions wait for approval (the
        #    reference stays version 1); window and sinks come from the flags.
        yaml_path = os.path.join(proj, "keel.yaml")
        text = open(yaml_path).read()
        policy = text.replace("promote: auto", "promote: approval")
        if policy == text:
            raise SystemExit("keel.yaml has no 'promote: auto' to change")
        open(yaml_path, "w").write(policy)
        cooldown = re.search(r"cooldown:\s*(\S+)", policy).group(1)
        # 3. Traffic pools from keel's own generator.
        for name, seed, shift in (("normal", 11, 0.0), ("shifted", 12, SHIFT)):
            subprocess.run([KEEL, "--quiet", "generate", "portfolio", "--rows", "20000", "--seed", str(seed),
                            "--covariate-shift", str(shift), "--out", os.path.join(WORK, f"{name}.csv")],
                           check=True)
        normal = read_rows(os.path.join(WORK, "normal.csv"))
        shifted = read_rows(os.path.join(WORK, "shifted.csv"))
        # 4. The webhook receiver and the watcher.
        hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        hook_url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
        metrics_port = free_port()
        env = dict(os.environ, MLFLOW_TRACKING_URI=server_url,
                   KEEL_ARTIFACTS_DESTINATION=os.path.join(proj, ".keel", "artifacts"))
        watch_cmd = [KEEL, "monitor", "watch", "--model", "risk@production", "--log-dir", "logs",
                     "--window", WINDOW, "--interval", INTERVAL, "--history", HISTORY,
                     "--confirm", CONFIRM, "--port", str(metrics_port), "--webhook", hook_url]
        watch_err = open(os.path.join(WORK, "watch.stderr"), "w")
        T0 = time.time()
        load = Load("127.0.0.1", int(serve_url.rsplit(":", 1)[1]), normal, shifted)
        start = time.time()
        threads = [threading.Thread(target=load.worker, args=(start,)) for _ in range(WORKERS)]
        for t in threads:
            t.start()
        labels = threading.Thread(target=load.feedback)
        labels.start()
        watcher = subprocess.Popen(watch_cmd, cwd=proj, env=env, stdout=watch_err, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        procs.append(watcher)
        log(f"watcher: {' '.join(watch_cmd[1:])}")
        log(f"load {RATE:g} req/s for {DURATION:g} s; shift {SHIFT:g} on at {SHIFT_ON:g} s, off at {SHIFT_OFF:g} s")
        scrapes = []
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        next_scrape = start
        while time.time() - start < DURATION:
            next_scrape += SCRAPE
            time.sleep(max(0.0, next_scrape - time.time()))
            sample = scrape(metrics_url)
            if sample is not None:
                scrapes.append({"t_s": round(time.time() - start, 1), "gauges": sample})
            if len(scrapes) % 12 == 0 and sample:
                log(f"t={time.time() - start:.0f}s drift={sample.get('keel_monitor_dataset_drift')} "
                    f"rows={sample.get('keel_monitor_window_rows')} sent={load.ok} labels={load.labels_posted} "
                    f"events={len(events)}")
        load.stop = True
        for t in threads:
            t.join()
        labels.join()
        time.sleep(2)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    watch_text = open(os.path.join(WORK, "watch.stderr")).read()
    retrains = [line for line in watch_text.splitlines() if line.startswith("on_drift: retrain ")]
    pipeline = [line for line in watch_text.splitlines() if line.startswith("on_drift: pipeline")
                or line.startswith("on_drift: retraining skipped")]
    # 5. What happened.
    by_key = {}
    for e in events:
        k = by_key.setdefault(e.get("key", "?"), {"firing": [], "resolved": []})
        k.setdefault(e.get("status", "?"), []).append(e["t_s"])
    dataset = by_key.get("drift:dataset", {"firing": [], "resolved": []})
    lat = sorted(load.latencies)
    result = {
        "machine": os.uname().nodename, "cpus": os.cpu_count(),
        "keel": subprocess.run([KEEL, "--version"], capture_output=True, text=True).stdout.strip(),
        "duration_s": DURATION, "rate_rps": RATE, "window": WINDOW, "interval": INTERVAL,
        "history_windows": int(HISTORY), "shift": SHIFT, "shift_on_s": SHIFT_ON, "shift_off_s": SHIFT_OFF,
        "label_lag_s": LABEL_LAG, "cooldown": cooldown, "confirm": int(CONFIRM),
        "requests_ok": load.ok, "requests_failed": load.failed, "shifted_requests": load.shifted_sent,
        "latency_p50_ms": round(1000 * lat[len(lat) // 2], 2) if lat else None,
        "latency_p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 2) if lat else None,
        "labels_posted": load.labels_posted, "label_failures": load.label_failures,
        "alerts": {"dataset_firing": len(dataset["firing"]), "dataset_resolved": len(dataset["resolved"]),
                   "dataset_firing_at_s": dataset["firing"], "dataset_resolved_at_s": dataset["resolved"],
                   "events_total": len(events), "by_key": by_key},
        "retrains": len(retrains), "retrain_lines": retrains, "pipeline_lines": pipeline,
        "events": events, "scrapes": scrapes,
        "watch_stderr_tail": watch_text.splitlines()[-40:],
    }
    checks = {
        "one_alert": len(dataset["firing"]) == 1,
        "one_recovery": len(dataset["resolved"]) == 1,
        "one_retrain": len(retrains) == 1,
        "alert_after_shift_on": bool(dataset["firing"]) and dataset["firing"][0] >= SHIFT_ON,
        "recovery_after_shift_off": bool(dataset["resolved"]) and dataset["resolved"][0] >= SHIFT_OFF,
        "no_other_key_flapped": all(len(v["firing"]) <= 1 for v in by_key.values()),
        "gauges_scraped": bool(scrapes) and any("keel_monitor_column_effect" in k for k in scrapes[-1]["gauges"]),
    }
    result["checks"] = checks
    json.dump(result, open(OUT, "w"), indent=1)
    # 6. Figures.
    print(f"watch bench: {DURATION:g} s at {RATE:g} req/s ({load.ok} ok, {load.failed} failed; "
          f"p50 {result['latency_p50_ms']} ms, p99 {result['latency_p99_ms']} ms), window {WINDOW}, "
          f"interval {INTERVAL}, confirm {CONFIRM}, shift {SHIFT:g} from {SHIFT_ON:g} s to {SHIFT_OFF:g} s, labels after {LABEL_LAG:g} s")
    print(f"dataset drift alerts: {len(dataset['firing'])} firing at {dataset['firing']} s, "
          f"{len(dataset['resolved'])} resolved at {dataset['resolved']} s")
    print("alert events by key (firing / resolved):")
    for key, v in sorted(by_key.items()):
        print(f"  {key}: {len(v['firing'])} at {v['firing']} / {len(v['resolved'])} at {v['resolved']}")
    print(f"on_drift retrains: {len(retrains)} (cooldown {cooldown}); " + "; ".join(pipeline))
    print("gauges over time (every 30 s):")
    print("| t s | dataset_drift | window rows | effect credit_score | effect debt_to_income | live accuracy | estimated accuracy | label lag mean s | label lag max s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    shown = -1e9
    for s in scrapes:
        if s["t_s"] - shown < 29.5:
            continue
        shown = s["t_s"]
        g = s["gauges"]
        keys = ["keel_monitor_dataset_drift", "keel_monitor_window_rows",
                'keel_monitor_column_effect{column="credit_score"}', 'keel_monitor_column_effect{column="debt_to_income"}',
                'keel_monitor_live_metric{metric="accuracy"}', "keel_monitor_estimated_accuracy",
                'keel_monitor_label_lag_seconds{stat="mean"}', 'keel_monitor_label_lag_seconds{stat="max"}']
        cells = ["-" if g.get(k) is None else f"{g[k]:.3g}" for k in keys]
        print(f"| {s['t_s']:.0f} | " + " | ".join(cells) + " |")
    print(f"checks: {json.dumps(checks)}")
    print(f"raw results: {OUT}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
