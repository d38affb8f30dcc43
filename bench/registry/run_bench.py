#!/usr/bin/env python3
"""Model-registry benchmark: keel server vs mlflow server, same machine, same run.

Called by bench/registry/run.sh (which ensures the pinned venv and picks the keel
binary). For each server, one after the other (never both at once):

keel
  1. start it in a fresh temp dir (SQLite, local artifacts, 127.0.0.1, free port);
  2. populate the data set through the REST API (registry_client.py populate,
     8 concurrent connections, one model per task) -> population time;
mlflow (default settings: 4 uvicorn workers, job execution on)
  1. start it once so it creates its schema, stop it;
  2. insert the data set straight into its SQLite tables (registered_models,
     model_versions, registered_model_tags, model_version_tags,
     registered_model_aliases), filling every column the way
     SqlAlchemyStore.create_* does -> insert time;
  3. start it again;
then, for both:
  3. registry_client.py query: check the answers against the data set, keep a
     normalised sample, time the queries (MlflowClient and raw HTTP);
  4. RSS/PSS of the server's process tree after the load;
  5. registry_client.py rest-sample: a few extra models through REST, to give
     each server's REST population rate (for MLflow: extrapolated to the full set);
  6. stop it.
Finally compares the two samples (every query must give identical normalised
answers), writes <out>/registry-<UTC timestamp>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # the imports below must not leave __pycache__ in the repo
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# Reuse the tracking benchmark's process/memory/machine helpers.
_spec = importlib.util.spec_from_file_location("tracking_run_bench", REPO / "bench" / "tracking" / "run_bench.py")
tb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tb)
sys.path.insert(0, str(HERE))
import registry_client as rc  # noqa: E402

Server, tree_memory, free_port, loadavg = tb.Server, tb.tree_memory, tb.free_port, tb.loadavg


def log(msg: str) -> None:
    print(f"bench-registry: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ direct MLflow population

MLFLOW_TABLES = ["registered_models", "model_versions", "registered_model_tags", "model_version_tags",
                 "registered_model_aliases"]


def mlflow_insert(db: Path, n_models: int, n_versions: int) -> dict:
    """Insert the data set into MLflow's own SQLite schema (server stopped)."""
    con = sqlite3.connect(db)
    schema = {}
    for t in MLFLOW_TABLES:
        cols = con.execute(f"PRAGMA table_info({t})").fetchall()
        if not cols:
            raise RuntimeError(f"mlflow schema has no table {t}")
        # (cid, name, type, notnull, dflt_value, pk)
        schema[t] = {c[1]: {"notnull": bool(c[3]), "default": c[4], "pk": bool(c[5])} for c in cols}
    rows = {
        "registered_models": ["name", "creation_time", "last_updated_time", "description", "workspace"],
        "model_versions": ["name", "version", "creation_time", "last_updated_time", "description", "user_id",
                           "current_stage", "source", "run_id", "status", "status_message", "run_link",
                           "storage_location", "workspace"],
        "registered_model_tags": ["key", "value", "name", "workspace"],
        "model_version_tags": ["key", "value", "name", "version", "workspace"],
        "registered_model_aliases": ["alias", "version", "name", "workspace"],
    }
    # Fail loudly if this MLflow version added a NOT NULL column without default that we do not fill.
    for t, cols in schema.items():
        for c, meta in cols.items():
            if meta["notnull"] and meta["default"] is None and c not in rows[t]:
                raise RuntimeError(f"mlflow table {t} has NOT NULL column {c} that the insert does not fill")
        for c in rows[t]:
            if c not in cols:
                raise RuntimeError(f"mlflow table {t} has no column {c} (schema changed?)")
    existing = con.execute("SELECT COUNT(*) FROM registered_models").fetchone()[0]
    if existing:
        raise RuntimeError(f"mlflow registry is not empty ({existing} models)")

    base = int(time.time() * 1000) - (n_models * n_versions + 10) * 10
    rm, mv, rmt, mvt, al = [], [], [], [], []
    for i in range(n_models):
        name = rc.model_name(i)
        t_model = base + i * n_versions * 10
        t_last = t_model + n_versions * 10  # create_model_version bumps the model's last_updated_time
        rm.append((name, t_model, t_last, rc.model_description(i), "default"))
        rmt.append((rc.MODEL_TAG[0], rc.MODEL_TAG[1], name, "default"))
        for v in range(1, n_versions + 1):
            t = t_model + v * 10
            src = rc.version_source(name, v)
            # as SqlAlchemyStore.create_model_version with no run/run_link/description/user:
            # current_stage "None", status READY, storage_location = source
            mv.append((name, v, t, t, None, None, "None", src, None, "READY", None, None, src, "default"))
            k, val = rc.version_tag(name, v)
            mvt.append((k, val, name, v, "default"))
        for alias, v in rc.aliases_for(n_versions).items():
            al.append((alias, v, name, "default"))
    t0 = time.perf_counter()
    with con:
        for t, data in (("registered_models", rm), ("model_versions", mv), ("registered_model_tags", rmt),
                        ("model_version_tags", mvt), ("registered_model_aliases", al)):
            cols = rows[t]
            con.executemany(f"INSERT INTO {t} ({', '.join(chr(34) + c + chr(34) for c in cols)}) "
                            f"VALUES ({', '.join('?' for _ in cols)})", data)
    wall = time.perf_counter() - t0
    counts = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in MLFLOW_TABLES}
    con.close()
    return {"method": "direct SQLite insert into MLflow's schema (server stopped)", "wall_s": round(wall, 3),
            "row_counts": counts, "schema_columns": {t: list(c) for t, c in schema.items()}}


# ------------------------------------------------------------------ one server


def client(py: str, args_list: list[str], timeout: float, env: dict) -> tuple[dict | None, str]:
    cmd = [py, str(HERE / "registry_client.py")] + args_list
    log("running " + " ".join(cmd[1:]))
    cp = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout, env=env)
    try:
        return json.loads(cp.stdout), ""
    except json.JSONDecodeError:
        return None, f"registry_client {args_list[0]} exited {cp.returncode} with no JSON: {cp.stdout[-500:]}"


def run_one(name: str, cmd: list[str], env: dict, cenv: dict, workdir: Path, port: int, args, py: str) -> dict:
    res: dict = {"command": " ".join(cmd), "workdir": str(workdir), "nproc": os.cpu_count()}
    srv = Server(name, cmd, env, workdir, port)
    sizes = ["--models", str(args.models), "--versions", str(args.versions)]
    try:
        res["loadavg_before"] = loadavg()
        log(f"{name}: starting ({res['command']}); load average {res['loadavg_before']}")
        res["startup_s"] = round(srv.start_and_wait(args.startup_timeout), 3)
        log(f"{name}: healthy after {res['startup_s']} s")
        if name == "mlflow":
            srv.stop()
            log("mlflow: stopped; inserting the data set into its SQLite tables")
            res["population"] = mlflow_insert(workdir / "mlflow.db", args.models, args.versions)
            log(f"mlflow: inserted in {res['population']['wall_s']} s: {res['population']['row_counts']}")
            res["loadavg_before_restart"] = loadavg()
            res["restart_s"] = round(srv.start_and_wait(args.startup_timeout), 3)
            log(f"mlflow: healthy again after {res['restart_s']} s")
        else:
            pop, err = client(py, ["populate", srv.url, *sizes, "--threads", str(args.threads)],
                              args.client_timeout, cenv)
            res["population"] = pop
            if pop is None or not pop.get("ok"):
                raise RuntimeError(err or f"REST population failed: {pop and pop.get('errors')}")
            res["population"]["method"] = f"REST API, {args.threads} concurrent connections"
            log(f"keel: populated {pop['requests']} requests in {pop['wall_s']} s ({pop['requests_per_s']} req/s)")
        res["loadavg_before_queries"] = loadavg()
        q, err = client(py, ["query", srv.url, *sizes, "--calls", args.calls,
                             "--max-seconds-per-query", str(args.max_seconds_per_query)], args.client_timeout, cenv)
        if q is None:
            raise RuntimeError(err + f"; server log tail: {srv.log_tail()}")
        res["query"] = q
        res["memory_after_load"] = tree_memory(srv.proc.pid)
        res["loadavg_after_queries"] = loadavg()
        log(f"{name}: RSS after load {res['memory_after_load']['rss_mib']} MiB "
            f"in {res['memory_after_load']['processes']} processes")
        rs, err = client(py, ["rest-sample", srv.url, "--versions", str(args.versions),
                              "--sample-models", str(args.rest_sample_models), "--threads", str(args.threads)],
                         args.client_timeout, cenv)
        res["rest_sample"] = rs if rs is not None else {"error": err}
        if rs and rs.get("requests_per_s"):
            per_model = 1 + args.versions + 2
            rs["extrapolated_full_population_s"] = round(args.models * per_model / rs["requests_per_s"], 1)
    except Exception as e:  # noqa: BLE001 - recorded in the results
        res["error"] = str(e)
        log(f"{name}: ERROR: {e}")
    finally:
        srv.stop()
    return res


# ------------------------------------------------------------------ report


def dig(d, path):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def fmt_ms(x):
    if x is None:
        return "n/a"
    return f"{x:,.2f}" if x < 100 else f"{x:,.0f}"


def ratio_s(m, k):
    if m is None or not k:
        return ""
    r = m / k
    return f"**{r:,.1f}x**" if r >= 10 else f"{r:,.2f}x"


def build_table(servers: dict) -> tuple[str, list]:
    keel, mlf = servers.get("keel", {}), servers.get("mlflow", {})
    lines = ["| query | rows | keel p50 (ms) | keel p99 (ms) | mlflow p50 (ms) | mlflow p99 (ms) | ratio (p50) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    rows = []
    tk = dig(keel, "query.timings") or {}
    tm = dig(mlf, "query.timings") or {}
    for key in ("a", "c", "b", "b2", "d"):
        base = tk.get(key) or tm.get(key)
        if not base:
            continue
        for mode in ("client", "raw_http", "raw_http_new_conn"):
            k50, k99 = dig(tk, f"{key}.{mode}.p50_ms"), dig(tk, f"{key}.{mode}.p99_ms")
            m50, m99 = dig(tm, f"{key}.{mode}.p50_ms"), dig(tm, f"{key}.{mode}.p99_ms")
            n = dig(tk, f"{key}.{mode}.n") or dig(tm, f"{key}.{mode}.n")
            how = {"client": "MlflowClient", "raw_http": "raw HTTP keep-alive",
                   "raw_http_new_conn": "raw HTTP new conn/call"}[mode]
            label = f"({key}) {base['label']}, {how}, N={n}"
            lines.append(f"| {label} | {base.get('expected_rows')} | {fmt_ms(k50)} | {fmt_ms(k99)} | {fmt_ms(m50)} | "
                         f"{fmt_ms(m99)} | {ratio_s(m50, k50)} |")
            rows.append({"query": key, "mode": mode, "label": base["label"], "n": n,
                         "keel_p50_ms": k50, "keel_p99_ms": k99, "mlflow_p50_ms": m50, "mlflow_p99_ms": m99,
                         "ratio_p50": round(m50 / k50, 2) if (m50 and k50) else None})
    return "\n".join(lines), rows


def extra_table(servers: dict) -> str:
    keel, mlf = servers.get("keel", {}), servers.get("mlflow", {})
    lines = ["| figure | keel | mlflow |", "|---|---:|---:|"]

    def v(d, p, f="{}"):
        x = dig(d, p)
        return f.format(x) if x is not None else "n/a"

    lines.append(f"| startup to /health (s) | {v(keel, 'startup_s', '{:.2f}')} | {v(mlf, 'startup_s', '{:.1f}')} "
                 f"(restart after insert: {v(mlf, 'restart_s', '{:.1f}')}) |")
    lines.append(f"| population of the data set | {v(keel, 'population.wall_s', '{:.1f}')} s via REST "
                 f"({v(keel, 'population.requests', '{:,}')} requests, {v(keel, 'population.requests_per_s', '{:,.0f}')} req/s) "
                 f"| {v(mlf, 'population.wall_s', '{:.2f}')} s direct SQLite insert (not comparable) |")
    lines.append(f"| REST population rate, extra sample models (req/s) | {v(keel, 'rest_sample.requests_per_s', '{:,.1f}')} "
                 f"| {v(mlf, 'rest_sample.requests_per_s', '{:,.1f}')} |")
    lines.append(f"| full population via REST at that rate (s, extrapolated) | "
                 f"{v(keel, 'rest_sample.extrapolated_full_population_s', '{:,.0f}')} | "
                 f"{v(mlf, 'rest_sample.extrapolated_full_population_s', '{:,.0f}')} |")
    lines.append(f"| server RSS after the queries (MiB, process tree) | {v(keel, 'memory_after_load.rss_mib', '{:,.1f}')} "
                 f"| {v(mlf, 'memory_after_load.rss_mib', '{:,.1f}')} ({v(mlf, 'memory_after_load.processes')} processes) |")
    lines.append(f"| server PSS after the queries (MiB) | {v(keel, 'memory_after_load.pss_mib', '{:,.1f}')} "
                 f"| {v(mlf, 'memory_after_load.pss_mib', '{:,.1f}')} |")
    lines.append(f"| load average before the phase (1/5/15 min) | {v(keel, 'loadavg_before')} | {v(mlf, 'loadavg_before')} |")
    lines.append(f"| load average before the timed queries | {v(keel, 'loadavg_before_queries')} "
                 f"| {v(mlf, 'loadavg_before_queries')} |")
    return "\n".join(lines)


def compare_samples(servers: dict) -> dict:
    a, b = dig(servers, "keel.query.sample"), dig(servers, "mlflow.query.sample")
    if a is None or b is None:
        return {"compared": False}
    diffs = {}
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            diffs[k] = {"keel": a.get(k), "mlflow": b.get(k)}
    # the answers of the timed queries (a, b, b2, c, d) must be identical; other differences
    # (error codes, ...) are compatibility notes
    timed = sorted(k for k in diffs if k.split(":")[0] in ("a", "b", "b2", "c", "d"))
    return {"compared": True, "queries": len(set(a) | set(b)), "identical": not diffs,
            "timed_queries_identical": not timed, "timed_differences": timed,
            "other_differences": sorted(k for k in diffs if k not in timed), "differences": diffs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 models x 20 versions, fewer calls")
    ap.add_argument("--keel-bin", required=True)
    ap.add_argument("--keel-bin-note", default="")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--servers", default="keel,mlflow", help="which servers to run, in order")
    ap.add_argument("--threads", type=int, default=8, help="concurrent connections for REST population")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--client-timeout", type=float, default=3 * 3600.0)
    ap.add_argument("--max-seconds-per-query", type=float, default=300.0)
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    ap.add_argument("--argv0", default="bench/registry/run.sh", help=argparse.SUPPRESS)
    ap.add_argument("--orig-args", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.models, args.versions, args.calls, args.rest_sample_models = 100, 20, "a=50,b=20,b2=10,c=100,d=20", 2
    else:
        args.models, args.versions, args.calls, args.rest_sample_models = 1000, 20, "a=200,b=50,b2=20,c=500,d=50", 5

    py = sys.executable
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    keel_bin = str(Path(args.keel_bin).resolve())

    out = {
        "benchmark": "registry",
        "timestamp_utc": stamp,
        "command": f"{args.argv0} {args.orig_args}".strip(),
        "quick": args.quick,
        "data_set": {"registered_models": args.models, "versions_per_model": args.versions,
                     "model_versions": args.models * args.versions,
                     "per_version": "source s3://keel-bench/<name>/<v>, tag git_commit",
                     "per_model": "description, tag team=bench, aliases production->20, staging->19"},
        "calls": rc.parse_calls(args.calls),
        "machine": tb.machine_info(),
        "git_dirty_paths": len(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                                              capture_output=True, text=True).stdout.splitlines()),
        "versions": {"keel": tb.cmd_version([keel_bin, "--version"]), "keel_bin": keel_bin,
                     "keel_bin_note": args.keel_bin_note,
                     "mlflow": tb.cmd_version([py, "-c", "import mlflow; print(mlflow.__version__)"]),
                     "venv": str(Path(sys.prefix))},
        "notes": [
            "servers run one after the other, never concurrently; both use SQLite and a local artifact dir",
            "mlflow server runs with its defaults (4 uvicorn workers, job execution on)",
            "keel is populated through its REST API; mlflow by inserting rows into its own SQLite schema with "
            "the server stopped (REST would take most of an hour); rest_sample gives both REST rates",
            "timed: 3 untimed warm-up calls, then N sequential calls; 'client' = MlflowClient, 'raw_http' = "
            "keep-alive requests.Session replaying the exact request the client sent (body read, JSON not "
            "parsed), 'raw_http_new_conn' = the same request on a new TCP connection per call; each mode "
            "runs its N calls back-to-back in its own block (interleaving keep-alive connections changes "
            "which one hits mlflow's keep-alive stall)",
            "mlflow's uvicorn shows a ~40 ms stall per request on keep-alive connections (likely Nagle / "
            "delayed ACK) that a new connection per call avoids; the official client uses keep-alive",
            "MLFLOW_DISABLE_TELEMETRY=true for the client processes only",
            "ratio = mlflow p50 / keel p50 (>1 means keel is faster)",
            "memory = sum of VmRSS (and Pss) over the server's process tree after the timed queries",
        ],
        "servers": {},
    }

    base_env = dict(os.environ)
    base_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base_env.get('PATH', '')}"
    cenv = dict(base_env, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        cenv.pop(k, None)
    rc_exit = 0
    for name in [s for s in args.servers.split(",") if s]:
        workdir = Path(tempfile.mkdtemp(prefix=f"keel-bench-registry-{name}-"))
        port = free_port()
        env = dict(base_env)
        if name == "keel":
            cmd = [keel_bin, "server", "--backend-store-uri", f"sqlite:///{workdir}/keel.db",
                   "--artifacts-destination", str(workdir / "art"), "--host", "127.0.0.1", "--port", str(port)]
        elif name == "mlflow":
            for k in ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "MLFLOW_WORKERS", "MLFLOW_TRACKING_URI"):
                env.pop(k, None)
            cmd = [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
                   "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
                   "--artifacts-destination", str(workdir / "art")]
        else:
            log(f"unknown server {name!r}")
            return 2
        res = run_one(name, cmd, env, cenv, workdir, port, args, py)
        out["servers"][name] = res
        if "error" in res or not dig(res, "query.ok"):
            rc_exit = 1
        if not args.keep and "error" not in res:
            shutil.rmtree(workdir, ignore_errors=True)
            res["workdir"] = None

    out["cross_check"] = compare_samples(out["servers"])
    if out["cross_check"].get("compared") and not out["cross_check"]["timed_queries_identical"]:
        rc_exit = 1
    md, rows = build_table(out["servers"])
    out["table"] = rows
    out["machine"]["loadavg_end"] = loadavg()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"registry-{stamp}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")

    m = out["machine"]
    print(f"## Model registry benchmark ({'quick: ' if args.quick else ''}{args.models:,} models x "
          f"{args.versions} versions = {args.models * args.versions:,} versions)\n")
    print(f"`{out['command']}` at {stamp}; nproc {m['nproc']}, load average {m['loadavg']} -> {m['loadavg_end']}; "
          f"keel {out['versions']['keel']} ({keel_bin}{', ' + args.keel_bin_note if args.keel_bin_note else ''}), "
          f"mlflow {out['versions']['mlflow']} (default server settings); CPU {m.get('cpu')}\n")
    print(md)
    print()
    print(extra_table(out["servers"]))
    print()
    for name, res in out["servers"].items():
        if "error" in res:
            print(f"- **{name} error**: {res['error'].splitlines()[0][:300]}")
        for f in dig(res, "query.failures") or []:
            print(f"- **{name} check failed**: {f['query']}: {json.dumps(f['detail'])[:600]}")
        order = dig(res, "query.checks.search_model_versions default order (last_updated DESC, name ASC, version DESC)")
        if order and not all(v is True for v in order.values()):
            bad = {k: v["first_violation"] for k, v in order.items() if v is not True}
            print(f"- {name}: search_model_versions not in MLflow's default order (last_updated_timestamp DESC, "
                  f"name ASC, version DESC); first out-of-order pair [name, version, last_updated]: {json.dumps(bad)}")
        al = dig(res, "query.checks.search_model_versions rows carrying aliases (MLflow 3-17-2 gives 0)")
        if al:
            print(f"- {name}: search_model_versions rows carrying aliases: {json.dumps(al)}")
    cc = out["cross_check"]
    if cc.get("compared"):
        print(f"- identical normalised answers on both servers for the timed queries: {cc['timed_queries_identical']}"
              + ("" if cc["timed_queries_identical"] else f" (differ: {cc['timed_differences']})")
              + f"; {cc['queries']} sample queries in all" + (
                  "" if not cc["other_differences"] else
                  "; other differences: " + "; ".join(
                      f"{k}: keel {json.dumps(cc['differences'][k]['keel'])[:200]} vs mlflow "
                      f"{json.dumps(cc['differences'][k]['mlflow'])[:200]}" for k in cc["other_differences"])))
    print(f"- ratio = mlflow p50 / keel p50 (>1 means keel is faster); results: {path}")
    return rc_exit


if __name__ == "__main__":
    sys.exit(main())
