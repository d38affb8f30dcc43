#!/usr/bin/env bash
# Where a runs/search spends its time in keel server (issue 19): a release
# `keel server` on SQLite, 200 runs x (5 params + 5 metrics), then runs/search
# (filter metrics.m1 > 0.5, order by metrics.m2 DESC, ~100 runs answered) in a
# loop over raw HTTP for --seconds while `perf record -g` samples the server.
# Prints the mean time per search and the share of samples (children
# included) in the parts that matter: sqlx-sqlite's per-row hand-over
# (futex, flume; gone since the native SQLite reads), SQLite itself, row
# copies (sqlx's or the native executor's), the Any driver's conversion,
# JSON, malloc.
#
#   cargo build --release -p keel && bash bench/tracking/profile_search.sh [--seconds 10]
#
# Needs perf (Debian: linux-perf) and the MLflow test venv's python (requests).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds=10
[ "${1:-}" = --seconds ] && seconds="$2"
keel="${KEEL_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/keel}"
[ -x "$keel" ] || { echo "no keel binary at $keel (cargo build --release -p keel)" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
python="$(bash "$root/tests/python/ensure_venv.sh")/bin/python"
work="$(mktemp -d)"
port="$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$keel" server --port "$port" --backend-store-uri "sqlite:///$work/keel.db" \
    --artifacts-destination "$work/artifacts" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
"$python" - "$port" "$work" "$seconds" <<'PY' &
import random, sys, time, requests
port, work, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
u = f"http://127.0.0.1:{port}/api/2.0/mlflow"
s = requests.Session()
for _ in range(200):
    try:
        s.get(f"http://127.0.0.1:{port}/health", timeout=1); break
    except requests.RequestException:
        time.sleep(0.05)
exp = s.post(u + "/experiments/create", json={"name": "profile"}).json()["experiment_id"]
rng = random.Random(1)
for _ in range(200):
    run = s.post(u + "/runs/create", json={"experiment_id": exp}).json()["run"]["info"]["run_id"]
    s.post(u + "/runs/log-batch", json={"run_id": run,
        "params": [{"key": f"p{j}", "value": str(j)} for j in range(5)],
        "metrics": [{"key": f"m{j}", "value": rng.random(), "timestamp": 1, "step": 0} for j in range(5)]})
body = {"experiment_ids": [exp], "filter": "metrics.m1 > 0.5", "order_by": ["metrics.m2 DESC"], "max_results": 1000}
open(f"{work}/ready", "w").close()
time.sleep(1)  # perf attaches
n, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    r = s.post(u + "/runs/search", json=body); n += 1
elapsed = time.perf_counter() - start
print(f"runs/search: {n} calls, {elapsed / n * 1000:.2f} ms each through requests, "
      f"{len(r.json()['runs'])} runs and {len(r.content)} bytes answered")
PY
client=$!
while [ ! -f "$work/ready" ]; do sleep 0.1; done
perf record -F 2000 -g -p "$server" -o "$work/perf.data" -- sleep "$((${seconds%.*} + 1))" >/dev/null 2>&1
wait "$client"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
perf report -i "$work/perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
    grep -E '__x64_sys_futex|flume::|sqlite3_step|SqliteRow::current|drop_in_place<sqlx_sqlite::row::SqliteRow>|AnyRow>::try_from|keel_store::native::Conn::fetch_now|keel_store::exec::Row::get|serde_json::ser|serde_json::value::ser|keel_server::dto|_int_malloc|_int_free|malloc_consolidate|unlink_chunk' |
    awk '{printf "%8s %8s  %s\n", $1, $2, $4}' | head -24
