#!/usr/bin/env python3
"""keel serve throughput with the prediction log off, and on under each
`--log-fsync` policy (issue 7: logging costs < 10 %; issue 16: the crash-safe
log costs < 5 %), or with the HTTP bounds off (variant `nolimits`: issue 16,
the bounds cost < 5 %: `--variants nolimits,off --base nolimits`), optionally against an older keel binary (the log before the
spool: rows queued in memory, a kill -9 lost up to a second of them).

1-row MLflow `dataframe_records` requests to a keel GBDT credit-risk model
(signature checks on), loaded on 127.0.0.1 by `keel loadtest` (closed loop;
the default) or by wrk (`--generator wrk`, as the figures before the spool
were measured: `wrk -t2 -cC --latency`).
Rounds cycle through the variants so background load hits them alike; the
figure per variant is the median over rounds, its cost is relative to the
log-off median of the same run. After each load, with the log on, the bench
checks on /metrics that every answered request reached Parquet (rows written
= requests answered, once the queue is empty) and that no row was refused or
failed; the run fails when a check does not hold.

    python3 bench/serve-logging/serve_logging.py [--keel-bin target/release/keel]
        [--baseline-bin OLD_KEEL] [--seconds 10] [--rounds 3] [--connections 32]
        [--variants off,never,interval,always] [--base off] [--generator keel|wrk] [--out bench/results]

Writes <out>/serve-logging-<UTC timestamp>.json (machine, load averages,
commands, every round) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BODY = {"dataframe_records": [{"age": 41, "income": 52.0, "employment_years": 6, "credit_score": 690,
                               "loan_amount": 12.5, "debt_to_income": 0.31, "home_ownership": "rent",
                               "purpose": "car"}]}


def log(message: str) -> None:
    print(f"[serve-logging] {message}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = out.get(name, 0.0) + float(value)
    return out


def metric(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k == prefix or k.startswith(prefix + "{"))


def variant_args(variant: str, work: Path) -> list[str]:
    if variant == "off":
        return ["--no-log"]
    if variant == "nolimits":
        # The HTTP bounds off too (issue 16: what they cost), the log off.
        return ["--no-log", "--no-http-limits"]
    logs = ["--log-dir", str(work / f"logs-{variant}")]
    if variant == "baseline":
        return logs
    return logs + ["--log-fsync", variant]


def run_round(variant: str, server_bin: str, keel_bin: str, model: Path, work: Path, args) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [server_bin, "serve", str(model), "--port", str(port)] + variant_args(variant, work)
    env = dict(os.environ, RUST_BACKTRACE="0", RUST_LOG="warn")
    dumps = work / f"callgrind-{variant}"
    if args.instructions:
        # Counted, not timed: every server thread's instructions over the
        # load (zeroed once started, dumped after), per answered request.
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dumps}.%p", "--dump-line=no"] + cmd
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                              start_new_session=True)
    try:
        deadline = time.time() + (300 if args.instructions else 60)
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{' '.join(cmd)} did not start: "
                                       f"{server.stderr.read().decode()[-500:] if server.stderr else ''}")
                time.sleep(0.1)
        before = loadavg()
        if args.instructions:
            subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, capture_output=True)
        load_cmd, result = generate_load(args, keel_bin, url, work, env)
        instructions = None
        if args.instructions:
            old = set(work.glob(f"{dumps.name}.*"))
            subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, capture_output=True)
            totals = [int(line.split()[1]) for dump in set(work.glob(f"{dumps.name}.*")) - old
                      for line in dump.read_text().splitlines() if line.startswith(("totals:", "summary:"))]
            answered = metric(metrics(url), "keel_serve_requests_total")
            instructions = max(totals) / answered if totals and answered else None
        after = metrics(url)
        if variant not in ("off", "nolimits"):
            # Every answered row reaches Parquet within --log-flush-interval (1s) plus compaction.
            settle = time.time() + 15
            while metric(after, "keel_serve_prediction_log_queue_rows") > 0 and time.time() < settle:
                time.sleep(0.2)
                after = metrics(url)
        row = {
            "variant": variant,
            "server": " ".join(cmd),
            "loadtest": " ".join(load_cmd),
            "loadavg_before": before,
            "loadavg_after": loadavg(),
            "rps": result["rps"],
            "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"],
            "requests": result["requests"],
            "errors": result["errors"],
            "instructions_per_request": instructions,
        }
        if variant not in ("off", "nolimits"):
            answered = metric(after, "keel_serve_requests_total")
            written = metric(after, "keel_serve_prediction_log_rows_written_total")
            queued = metric(after, "keel_serve_prediction_log_queue_rows")
            writes = metric(after, "keel_serve_prediction_log_spool_writes_total")
            row.update({
                "answered": answered,
                "rows_in_parquet": written,
                "rows_in_spool": queued,
                "refused": metric(after, "keel_serve_prediction_log_rows_refused_total"),
                "failed": metric(after, "keel_serve_prediction_log_rows_failed_total"),
                # The old writer has no spool: its queue is in memory.
                "requests_per_spool_write": (answered / writes) if writes else None,
            })
        return row
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def generate_load(args, keel_bin: str, url: str, work: Path, env: dict) -> tuple[list[str], dict]:
    """Runs the load; returns the command and {rps, p50_ms, p99_ms, requests, errors}."""
    if args.generator == "wrk":
        cmd = ["wrk", "-t2", f"-c{args.connections}", f"-d{int(round(args.seconds))}s", "--timeout", "30s",
               "--latency", "-s", str(work / "post.lua"), f"{url}/invocations"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.seconds + 120)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed: {done.stderr[-500:]}")
        out = done.stdout

        def ms(label: str) -> float:
            for line in out.splitlines():
                parts = line.split()
                if parts and parts[0] == label:
                    value = parts[1]
                    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
                        if value.endswith(unit):
                            return float(value[: -len(unit)]) * factor
            raise RuntimeError(f"wrk output without {label}: {out[-500:]}")

        rps = next(float(line.split()[1]) for line in out.splitlines() if line.startswith("Requests/sec"))
        total = next(int(line.split()[0]) for line in out.splitlines() if "requests in" in line)
        non_2xx = sum(int(line.split()[-1]) for line in out.splitlines() if "Non-2xx" in line)
        socket = sum(int(x.strip(",")) for line in out.splitlines() if line.strip().startswith("Socket errors")
                     for x in line.split()[3::2])
        return cmd, {"rps": rps, "p50_ms": ms("50%"), "p99_ms": ms("99%"), "requests": total,
                     "errors": non_2xx + socket}
    cmd = [keel_bin, "loadtest", f"{url}/invocations", "--body", str(work / "body.json"),
           "-c", str(args.connections), "--duration", f"{args.seconds}s", "--warmup", "2s",
           "--timeout", "30s", "--json", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"loadtest failed: {done.stderr[-500:]}")
    return cmd, json.loads(done.stdout)


def check(row: dict) -> list[str]:
    """The claims the bench prints about a round, checked."""
    problems = []
    if row["errors"]:
        problems.append(f"{row['variant']}: {row['errors']} failed requests")
    if row["variant"] not in ("off", "nolimits"):
        if row["refused"] or row["failed"]:
            problems.append(f"{row['variant']}: {row['refused']} refused, {row['failed']} failed log rows")
        if row["rows_in_parquet"] != row["answered"]:
            problems.append(f"{row['variant']}: {row['answered']} answered but "
                            f"{row['rows_in_parquet']} in Parquet ({row['rows_in_spool']} still queued)")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keel-bin", default=str(REPO / "target" / "release" / "keel"))
    ap.add_argument("--baseline-bin", help="an older keel to run as the 'baseline' variant (log on)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--variants", default="off,never,interval,always")
    ap.add_argument("--base", default="off", help="the variant costs are relative to")
    ap.add_argument("--instructions", action="store_true",
                    help="run keel serve under callgrind: instructions per answered request "
                         "(exact whatever the machine's load) instead of throughput")
    ap.add_argument("--generator", choices=["keel", "wrk"], default="keel")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args()
    keel = args.keel_bin
    if not Path(keel).is_file():
        log(f"no keel binary at {keel} (cargo build --release -p keel, or --keel-bin)")
        return 2
    variants = [v for v in args.variants.split(",") if v]
    if args.baseline_bin:
        variants.append("baseline")
    work = Path(tempfile.mkdtemp(prefix="keel-serve-logging-"))
    try:
        env = dict(os.environ, RUST_BACKTRACE="0", RUST_LOG="warn")
        subprocess.run([keel, "generate", "portfolio", "--rows", "20000", "--seed", "7",
                        "--out", str(work / "train.csv"), "--quiet"], check=True, env=env)
        subprocess.run([keel, "train", "--algo", "gbdt", "--data", str(work / "train.csv"),
                        "--target", "default", "--out", str(work / "risk"), "--quiet"], check=True, env=env)
        (work / "body.json").write_text(json.dumps(BODY))
        (work / "post.lua").write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                                       f"wrk.body = '{json.dumps(BODY)}'\n")
        if args.generator == "wrk" and not shutil.which("wrk"):
            log("wrk is not installed (apt-get install wrk), or use --generator keel")
            return 2
        rounds = []
        for r in range(args.rounds):
            for variant in variants:
                server = args.baseline_bin if variant == "baseline" else keel
                row = run_round(variant, server, keel, work / "risk", work, args)
                row["round"] = r + 1
                rounds.append(row)
                log(f"round {r + 1} {variant:9s} {row['rps']:>10,.0f} req/s  p50 {row['p50_ms']:.2f} ms  "
                    f"p99 {row['p99_ms']:.2f} ms  load {row['loadavg_before'][0]:.1f}")
        figure = "instructions_per_request" if args.instructions else "rps"
        medians = {v: statistics.median(x[figure] for x in rounds if x["variant"] == v) for v in variants}
        base = medians.get(args.base)
        # Throughput: fewer requests per second is a cost; instructions: more per request is.
        summary = {v: {f"median_{figure}": m, f"cost_vs_{args.base}": (
            None if not base else (m / base - 1) if args.instructions else (1 - m / base))}
            for v, m in medians.items()}
        problems = [p for row in rounds for p in check(row)]
        out = {
            "bench": "serve-logging",
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                        "loadavg_start": rounds[0]["loadavg_before"], "loadavg_end": loadavg()},
            "keel_bin": keel, "baseline_bin": args.baseline_bin, "generator": args.generator,
            "seconds": args.seconds, "connections": args.connections, "rounds": rounds,
            "summary": summary, "checks_failed": problems,
        }
        Path(args.out).mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = Path(args.out) / f"serve-logging-{stamp}.json"
        path.write_text(json.dumps(out, indent=2) + "\n")
        generator = "wrk -t2" if args.generator == "wrk" else "keel loadtest"
        print(f"keel serve, 1-row requests, {generator} -c {args.connections} {args.seconds:g} s, "
              f"{args.rounds} rounds, {os.cpu_count()} cores; load average "
              f"{rounds[0]['loadavg_before'][0]:.1f} at start, {out['machine']['loadavg_end'][0]:.1f} at end")
        print()
        unit = "instructions/request (under callgrind)" if args.instructions else "req/s"
        print(f"| variant | median {unit} | cost vs {args.base} | rounds |")
        print("|---|---|---|---|")
        for v in variants:
            cost = summary[v][f"cost_vs_{args.base}"]
            each = ", ".join(f"{x[figure]:,.0f}" for x in rounds if x["variant"] == v)
            print(f"| {v} | {medians[v]:,.0f} | {'' if cost is None else f'{cost * 100:+.1f} %'} | {each} |")
        spool = [x["requests_per_spool_write"] for x in rounds
                 if x["variant"] in ("never", "interval", "always") and x.get("requests_per_spool_write")]
        if spool:
            print(f"\nrequests per spool write (group commit): {min(spool):.2f}-{max(spool):.2f}")
        print(f"\nraw: {path}")
        if problems:
            for p in problems:
                log(f"CHECK FAILED: {p}")
            return 1
        if any(v not in ("off", "nolimits") for v in variants):
            print("every answered request reached Parquet (rows written = requests answered), none refused or failed")
        print("no request failed")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
