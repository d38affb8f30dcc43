#!/usr/bin/env python3
"""Model-registry benchmark client: populate, verify and time an MLflow-compatible server.

    python registry_client.py populate    URL --models N [--versions 20] [--threads 8]
    python registry_client.py query       URL --models N [--versions 20] [--quick]
    python registry_client.py rest-sample URL --sample-models K [--threads 8]

The data set (shared with run_bench.py, which writes the same rows straight into
MLflow's SQLite tables) is a pure function of --models/--versions:

  registered model  model-0000 .. model-{N-1:04d}, description "bench model i",
                    tag team=bench
  versions 1..20    source s3://keel-bench/<name>/<v>, tag git_commit=<12 hex of
                    sha1(name/v)>, status READY, stage None
  aliases           production -> 20, staging -> 19 (on every model)

populate     creates it through the REST API (the same calls the client makes:
             registered-models/create, model-versions/create with tags,
             registered-models/alias), one model per task on a thread pool so the
             version numbers of a model are assigned in order. Prints
             {requests, wall_s, requests_per_s, errors}.
query        1. checks the server's answers against the data set and records a
                normalised copy of a sample of answers (for the cross-server check);
             2. times each query three ways: MlflowClient; raw HTTP on a keep-alive
                requests.Session replaying the exact request the client sent; the same
                raw request on a new TCP connection per call. Each mode: 3 untimed
                warm-up calls, then N calls back-to-back: p50/p99/mean/min/max (ms).
             Queries (T = model-{N/2}):
               a  search_model_versions("name = 'T'")                     20 rows
               b  search_model_versions("name LIKE '<T minus last digit>%'") 200 rows
               b2 search_model_versions("name LIKE '<T minus 2 digits>%'")   2,000 rows
               c  get_model_version_by_alias(name, "production"), name cycling
                  over all models (i*37 mod N)
               d  search_registered_models(max_results=100)
rest-sample  creates K extra models (rest-sample-XXXX, 20 versions + 2 aliases each)
             through REST like populate; gives MLflow's REST population rate,
             which run_bench.py extrapolates to the full data set.

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

API = "/api/2.0/mlflow"


def log(msg):
    print(f"registry_client: {msg}", file=sys.stderr, flush=True)


def pct(xs, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


# ------------------------------------------------------------------ the data set


def model_name(i: int, prefix: str = "model-") -> str:
    return f"{prefix}{i:04d}"


def version_source(name: str, v: int) -> str:
    return f"s3://keel-bench/{name}/{v}"


def version_tag(name: str, v: int) -> tuple[str, str]:
    return "git_commit", hashlib.sha1(f"{name}/{v}".encode()).hexdigest()[:12]


def model_description(i: int) -> str:
    return f"bench model {i}"


MODEL_TAG = ("team", "bench")

def aliases_for(n_versions: int) -> dict[str, int]:
    return {"production": n_versions, "staging": n_versions - 1}


# ------------------------------------------------------------------ REST population


def populate_rest(url: str, names_idx: list[tuple[str, int]], n_versions: int, threads: int) -> dict:
    import requests

    local = threading.local()
    counts = {"requests": 0}
    errors: list[str] = []
    lock = threading.Lock()

    def sess():
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return local.s

    def call(method, path, body):
        r = sess().request(method, url + API + path, json=body, timeout=120)
        with lock:
            counts["requests"] += 1
        if r.status_code != 200:
            msg = f"{method} {API}{path} {json.dumps(body)} -> {r.status_code} {r.text[:500]}"
            with lock:
                errors.append(msg)
            raise RuntimeError(msg)
        return r.json()

    def one_model(item):
        name, i = item
        call("POST", "/registered-models/create",
             {"name": name, "description": model_description(i),
              "tags": [{"key": MODEL_TAG[0], "value": MODEL_TAG[1]}]})
        for v in range(1, n_versions + 1):
            k, val = version_tag(name, v)
            out = call("POST", "/model-versions/create",
                       {"name": name, "source": version_source(name, v),
                        "tags": [{"key": k, "value": val}]})
            got = str(out.get("model_version", {}).get("version"))
            if got != str(v):
                msg = f"model-versions/create for {name} returned version {got!r}, expected {v}"
                with lock:
                    errors.append(msg)
                raise RuntimeError(msg)
        for alias, v in aliases_for(n_versions).items():
            call("POST", "/registered-models/alias", {"name": name, "alias": alias, "version": str(v)})

    t0 = time.perf_counter()
    done = 0
    with ThreadPoolExecutor(max_workers=threads) as ex:
        for fut in [ex.submit(one_model, it) for it in names_idx]:
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - collected in errors
                pass
            done += 1
            if done % 100 == 0:
                log(f"populated {done}/{len(names_idx)} models ({counts['requests']} requests, "
                    f"{time.perf_counter() - t0:.1f} s)")
            if len(errors) > 20:
                ex.shutdown(wait=False, cancel_futures=True)
                break
    wall = time.perf_counter() - t0
    return {"models": len(names_idx), "versions_per_model": n_versions, "requests": counts["requests"],
            "wall_s": round(wall, 3), "requests_per_s": round(counts["requests"] / wall, 1) if wall else None,
            "threads": threads, "errors": errors[:20], "ok": not errors}


# ------------------------------------------------------------------ normalisation


def norm_mv(mv) -> dict:
    return {"name": mv.name, "version": str(mv.version), "source": mv.source or "",
            "status": str(mv.status), "current_stage": mv.current_stage or "",
            "description": mv.description or "", "run_id": mv.run_id or "",
            "tags": dict(sorted((mv.tags or {}).items())), "aliases": sorted(mv.aliases or [])}


def norm_rm(rm) -> dict:
    return {"name": rm.name, "description": rm.description or "",
            "tags": dict(sorted((rm.tags or {}).items())),
            "aliases": dict(sorted((k, str(v)) for k, v in (rm.aliases or {}).items())),
            "latest_versions": sorted((str(v.version), v.current_stage or "") for v in (rm.latest_versions or []))}


def expected_mv(i: int, v: int, n_versions: int) -> dict:
    name = model_name(i)
    k, val = version_tag(name, v)
    return {"name": name, "version": str(v), "source": version_source(name, v), "status": "READY",
            "current_stage": "None", "description": "", "run_id": "", "tags": {k: val},
            "aliases": sorted(a for a, av in aliases_for(n_versions).items() if av == v)}


def expected_rm(i: int, n_versions: int) -> dict:
    return {"name": model_name(i), "description": model_description(i), "tags": {MODEL_TAG[0]: MODEL_TAG[1]},
            "aliases": {a: str(v) for a, v in sorted(aliases_for(n_versions).items())},
            "latest_versions": [(str(n_versions), "None")]}


def order_ok_mv(mvs):
    """MLflow's default order: last_updated_timestamp DESC, name ASC, version DESC.

    True, or the first out-of-order pair (as (name, version, last_updated_timestamp))."""
    keys = [(-(mv.last_updated_timestamp or 0), mv.name, -int(mv.version)) for mv in mvs]
    for j in range(1, len(keys)):
        if keys[j] < keys[j - 1]:
            a, b = mvs[j - 1], mvs[j]
            return {"first_violation": [[a.name, str(a.version), a.last_updated_timestamp],
                                        [b.name, str(b.version), b.last_updated_timestamp]],
                    "first_5": [[m.name, str(m.version), m.last_updated_timestamp] for m in mvs[:5]]}
    return True


# ------------------------------------------------------------------ capture the client's request


class Capture:
    """Record the requests.Session.request calls made by the MLflow client."""

    def __init__(self):
        import requests

        self.requests = requests
        self.orig = requests.Session.request
        self.calls: list[dict] = []

    def __enter__(self):
        orig = self.orig
        calls = self.calls

        def rec(sess, method, url, *a, **kw):
            calls.append({"method": method, "url": url, "params": kw.get("params"),
                          "json": kw.get("json"), "data": kw.get("data")})
            return orig(sess, method, url, *a, **kw)

        self.requests.Session.request = rec
        return self

    def __exit__(self, *exc):
        self.requests.Session.request = self.orig


def describe_request(c: dict) -> str:
    from urllib.parse import urlencode

    s = f"{c['method']} {c['url']}"
    if c.get("params"):
        s += "?" + urlencode(c["params"], doseq=True)
    if c.get("json") is not None:
        s += " body=" + json.dumps(c["json"])
    return s


# ------------------------------------------------------------------ query


def cmd_query(args) -> dict:
    import requests
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    n, nv = args.models, args.versions
    url = args.url
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    ti = n // 2
    target = model_name(ti)
    q_b = f"name LIKE '{target[:-1]}%'"
    q_b2 = f"name LIKE '{target[:-2]}%'"
    idx_b = [i for i in range(n) if model_name(i).startswith(target[:-1])]
    idx_b2 = [i for i in range(n) if model_name(i).startswith(target[:-2])]
    alias_idx = [(i * 37) % n for i in range(n)]

    out: dict = {"target": target, "checks": {}, "sample": {}, "failures": [], "timings": {}}

    def fail(what, detail):
        out["failures"].append({"query": what, "detail": detail})
        log(f"CHECK FAILED {what}: {str(detail)[:400]}")

    # -- 1. correctness against the data set, and a normalised sample for the cross-server check
    def checked(what, fn, expect, order_check=None, capture=True):
        cap = Capture()
        try:
            with cap:
                res = fn()
        except MlflowException as e:
            reqs = [describe_request(c) for c in cap.calls]
            fail(what, {"requests": reqs, "error": str(e)[:1000]})
            out["checks"][what] = False
            out["sample"][what] = {"error": getattr(e, "error_code", str(e))}
            return None
        got = res
        ok = got == expect
        out["checks"][what] = ok
        out["sample"][what] = got
        if not ok:
            fail(what, {"requests": [describe_request(c) for c in cap.calls],
                        "got_first": (got[:3] if isinstance(got, list) else got),
                        "expected_first": (expect[:3] if isinstance(expect, list) else expect),
                        "got_len": len(got) if isinstance(got, list) else None,
                        "expected_len": len(expect) if isinstance(expect, list) else None})
        return res

    raw_order: dict = {}
    aliases_seen: dict = {}

    def smv(flt, **kw):
        # MLflow 3.17.2's SQL store returns search_model_versions results WITHOUT aliases
        # (SqlModelVersion.to_mlflow_entity passes []), while get/get-by-alias fill them in.
        # So aliases are not part of the search answer we compare; whether a server
        # includes them is recorded separately.
        res = client.search_model_versions(filter_string=flt, **kw)
        raw_order[flt] = order_ok_mv(res)
        aliases_seen[flt] = sum(1 for m in res if m.aliases)
        rows = []
        for m in res:
            d = norm_mv(m)
            d.pop("aliases")
            rows.append(d)
        return sorted(rows, key=lambda d: (d["name"], int(d["version"])))

    def no_alias(rows):
        for d in rows:
            d.pop("aliases")
        return rows

    checked("a: search_model_versions name =", lambda: smv(f"name = '{target}'"),
            no_alias([expected_mv(ti, v, nv) for v in range(1, nv + 1)]))
    checked("b: search_model_versions LIKE (x10 models)", lambda: smv(q_b),
            no_alias([expected_mv(i, v, nv) for i in idx_b for v in range(1, nv + 1)]))
    checked("b2: search_model_versions LIKE (x100 models)", lambda: smv(q_b2),
            no_alias([expected_mv(i, v, nv) for i in idx_b2 for v in range(1, nv + 1)]))
    for i in alias_idx[:5]:
        checked(f"c: get_model_version_by_alias {model_name(i)}@production",
                lambda i=i: norm_mv(client.get_model_version_by_alias(model_name(i), "production")),
                expected_mv(i, nv, nv))
    checked(f"get_model_version_by_alias {target}@staging",
            lambda: norm_mv(client.get_model_version_by_alias(target, "staging")), expected_mv(ti, nv - 1, nv))

    def srm(**kw):
        res = client.search_registered_models(**kw)
        return {"models": [norm_rm(r) for r in res], "has_next_page_token": bool(res.token)}

    checked("d: search_registered_models(max_results=100)", lambda: srm(max_results=100),
            {"models": [expected_rm(i, nv) for i in range(min(100, n))], "has_next_page_token": n > 100})
    checked(f"search_registered_models(filter {q_b})", lambda: srm(filter_string=q_b),
            {"models": [expected_rm(i, nv) for i in idx_b], "has_next_page_token": False})
    checked(f"get_registered_model {target}", lambda: norm_rm(client.get_registered_model(target)),
            expected_rm(ti, nv))
    checked(f"get_model_version {target} 7", lambda: norm_mv(client.get_model_version(target, "7")),
            expected_mv(ti, 7, nv))
    k, val = version_tag(target, 3)
    checked(f"search_model_versions tags.{k} = (one version)", lambda: smv(f"tags.{k} = '{val}'"),
            no_alias([expected_mv(ti, 3, nv)]))

    out["checks"]["search_model_versions default order (last_updated DESC, name ASC, version DESC)"] = raw_order
    out["checks"]["search_model_versions rows carrying aliases (MLflow 3-17-2 gives 0)"] = aliases_seen

    # error shapes: compared across servers, not against the data set
    def err(fn):
        try:
            fn()
            return {"error": None}
        except MlflowException as e:
            return {"error": e.error_code}

    out["sample"]["error: unknown alias"] = err(lambda: client.get_model_version_by_alias(target, "nosuchalias"))
    out["sample"]["error: unknown model"] = err(lambda: client.get_model_version_by_alias("no-such-model", "production"))
    out["sample"]["error: unknown version"] = err(lambda: client.get_model_version(target, "999"))

    # -- 2. timing
    q = args.calls
    queries = [
        ("a", f"search_model_versions(\"name = '{target}'\")", q["a"],
         lambda j: client.search_model_versions(filter_string=f"name = '{target}'"), nv),
        ("b", f"search_model_versions(\"{q_b}\")", q["b"],
         lambda j: client.search_model_versions(filter_string=q_b), nv * len(idx_b)),
        ("b2", f"search_model_versions(\"{q_b2}\")", q["b2"],
         lambda j: client.search_model_versions(filter_string=q_b2), nv * len(idx_b2)),
        ("c", "get_model_version_by_alias(name, \"production\")", q["c"],
         lambda j: client.get_model_version_by_alias(model_name(alias_idx[j % n]), "production"), 1),
        ("d", "search_registered_models(max_results=100)", q["d"],
         lambda j: client.search_registered_models(max_results=100), min(100, n)),
    ]
    sess = requests.Session()
    for key, label, calls, fn, rows in queries:
        rec: dict = {"label": label, "calls": calls, "expected_rows": rows}
        # the exact wire request of the client, per call index (c cycles over names)
        cap = Capture()
        with cap:
            r0 = fn(0)
        rec["rows_client"] = len(r0) if isinstance(r0, list) else 1
        if len(cap.calls) != 1:
            rec["note"] = f"the client sent {len(cap.calls)} requests for one call"
        wire = cap.calls[-1]
        rec["wire_request"] = describe_request(wire)

        def raw(j, wire=wire, key=key, new_conn=False):
            params = wire["params"]
            if key == "c" and params is not None:
                params = dict(params, name=model_name(alias_idx[j % n]))
            if new_conn:
                # a fresh TCP connection per call (requests.request opens and closes its own
                # session); sidesteps the ~40 ms keep-alive stall seen with mlflow's uvicorn
                r = requests.request(wire["method"], wire["url"], params=params, json=wire["json"],
                                     data=wire["data"], timeout=300, headers={"Connection": "close"})
            else:
                r = sess.request(wire["method"], wire["url"], params=params, json=wire["json"],
                                 data=wire["data"], timeout=300)
            body = r.content
            if r.status_code != 200:
                raise RuntimeError(f"raw {describe_request(dict(wire, params=params))} -> "
                                   f"{r.status_code} {body[:500]!r}")
            return body

        # Each mode runs its N calls back-to-back in its own block. They are not interleaved:
        # on mlflow's uvicorn, interleaving two keep-alive connections changes which of them
        # hits the ~40 ms keep-alive stall (likely Nagle / delayed ACK), so an interleaved
        # figure would describe the interleaving, not the mode.
        def raw_new(j, raw=raw):
            return raw(j, new_conn=True)

        lat = {"client": [], "raw_http": [], "raw_http_new_conn": []}
        modes = (("client", fn), ("raw_http", raw), ("raw_http_new_conn", raw_new))
        try:
            for mode, f in modes:
                for j in range(3):  # warm-up, untimed
                    f(j)
                t_all = time.perf_counter()
                for j in range(calls):
                    t0 = time.perf_counter()
                    f(j)
                    lat[mode].append((time.perf_counter() - t0) * 1000.0)
                    if time.perf_counter() - t_all > args.max_seconds_per_query:
                        rec.setdefault("truncated", {})[mode] = (
                            f"stopped after {j + 1} calls ({args.max_seconds_per_query} s bound)")
                        break
            rec["response_bytes"] = len(raw(0))
        except Exception as e:  # noqa: BLE001 - recorded
            rec["error"] = str(e)[:1000]
            fail(f"timing {key}", {"request": rec["wire_request"], "error": str(e)[:1000]})
        for mode, xs in lat.items():
            if not xs:
                continue
            rec[mode] = {"n": len(xs), "p50_ms": round(pct(xs, 50), 3), "p99_ms": round(pct(xs, 99), 3),
                         "mean_ms": round(statistics.fmean(xs), 3), "min_ms": round(min(xs), 3),
                         "max_ms": round(max(xs), 3)}
            log(f"{key} {mode}: n={len(xs)} p50={rec[mode]['p50_ms']:.2f} ms p99={rec[mode]['p99_ms']:.2f} ms")
        out["timings"][key] = rec
    out["ok"] = not out["failures"]
    return out


def parse_calls(s: str) -> dict:
    d = {}
    for part in s.split(","):
        k, v = part.split("=")
        d[k.strip()] = int(v)
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["populate", "query", "rest-sample"])
    ap.add_argument("url")
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--versions", type=int, default=20)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--sample-models", type=int, default=5)
    ap.add_argument("--calls", type=parse_calls, default=parse_calls("a=200,b=50,b2=20,c=500,d=50"))
    ap.add_argument("--max-seconds-per-query", type=float, default=300.0,
                    help="bound on the timed loop of one query in one mode")
    args = ap.parse_args()

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    url = args.url.rstrip("/")
    args.url = url

    if args.command == "populate":
        res = populate_rest(url, [(model_name(i), i) for i in range(args.models)], args.versions, args.threads)
    elif args.command == "rest-sample":
        res = populate_rest(url, [(model_name(i, "rest-sample-"), i) for i in range(args.sample_models)],
                            args.versions, args.threads)
    else:
        res = cmd_query(args)
    print(json.dumps(res))
    return 0 if res.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
