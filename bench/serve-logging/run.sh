#!/usr/bin/env bash
# keel serve throughput with the prediction log on and off (issue 7: logging
# must not cut throughput by more than 10 %). 1-row MLflow requests against a
# keel GBDT credit-risk model, signature checks on, loaded by wrk on 127.0.0.1.
# Rounds alternate on/off so background load hits both alike.
#
#   bash bench/serve-logging/run.sh [KEEL_BINARY] [SECONDS] [ROUNDS]
#
# Needs wrk (Debian: apt-get install wrk). Prints one line per round and the
# medians; raw figures in bench/results/serve-logging-<UTC time>.json. Fails
# when any response was not a 2xx.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
keel="${1:-$repo/target/release/keel}"
seconds="${2:-10}"
rounds="${3:-3}"
port="${KEEL_BENCH_PORT:-18777}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ -x "$keel" ] || { echo "no keel binary at $keel (cargo build --release)" >&2; exit 1; }

work="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
export RUST_BACKTRACE=0 RUST_LOG=warn

"$keel" generate portfolio --rows 20000 --seed 7 --out "$work/train.csv" --quiet
"$keel" train --algo gbdt --data "$work/train.csv" --target default --out "$work/risk" --quiet
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"dataframe_records": [{"age": 41, "income": 52.0, "employment_years": 6, "credit_score": 690, "loan_amount": 12.5, "debt_to_income": 0.31, "home_ownership": "rent", "purpose": "car"}]}'
LUA

run() { # $1 = on|off
    local flags=(--log-dir "$work/logs")
    [ "$1" = off ] && flags=(--no-log)
    "$keel" serve "$work/risk" --port "$port" "${flags[@]}" 2>"$work/serve.err" &
    pid=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/ping" >/dev/null 2>&1 && break
        sleep 0.1
    done
    local out
    out="$(wrk -t2 -c32 -d"${seconds}s" --latency -s "$work/post.lua" "http://127.0.0.1:$port/invocations")"
    kill -TERM "$pid"; wait "$pid" || true; pid=""
    local rps p50 p99 errors
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    errors="$(awk '/Non-2xx/ {print $5} /Socket errors/ {print "socket:" $0}' <<<"$out")"
    printf '%-4s %10s req/s   p50 %8s   p99 %8s   load %s %s\n' "$1" "$rps" "$p50" "$p99" \
        "$(cut -d' ' -f1 /proc/loadavg)" "${errors:+errors: $errors}"
    echo "$1 $rps" >>"$work/results"
    printf '{"mode": "%s", "requests_per_s": %s, "p50": "%s", "p99": "%s", "load_1m": %s, "errors": "%s"}\n' \
        "$1" "$rps" "$p50" "$p99" "$(cut -d' ' -f1 /proc/loadavg)" "$errors" >>"$work/rounds.jsonl"
}

echo "keel serve, 1-row requests, wrk -t2 -c32 -d${seconds}s, $(nproc) cores"
for _ in $(seq 1 "$rounds"); do
    run on
    run off
done
if [ -d "$work/logs" ]; then
    echo "prediction-log files written over the 'on' rounds: $(find "$work/logs" -name 'part-*.parquet' | wc -l)"
fi
for mode in on off; do
    median="$(awk -v m="$mode" '$1 == m {print $2}' "$work/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
    echo "median req/s, log $mode: $median"
done
python3 - "$work/rounds.jsonl" "$repo/bench/results/serve-logging-$(date -u +%Y%m%dT%H%M%SZ).json" \
    "$seconds" "$rounds" <<'PY'
import json, os, statistics, sys
rounds = [json.loads(line) for line in open(sys.argv[1])]
medians = {mode: statistics.median(r["requests_per_s"] for r in rounds if r["mode"] == mode) for mode in ("on", "off")}
result = {"benchmark": "keel serve 1-row throughput, prediction log on vs --no-log (wrk -t2 -c32)",
          "command": f"bench/serve-logging/run.sh KEEL {sys.argv[3]} {sys.argv[4]}",
          "machine": {"nproc": os.cpu_count(), "uname": " ".join(os.uname())},
          "rounds": rounds, "median_requests_per_s": medians,
          "logging_cost": round(1 - medians["on"] / medians["off"], 4)}
json.dump(result, open(sys.argv[2], "w"), indent=1)
print(f"logging cost {result['logging_cost']:.1%}; raw: {sys.argv[2]}")
bad = [r for r in rounds if r["errors"]]
if bad:
    sys.exit(f"FAILED: rounds with non-2xx or socket errors: {bad}")
PY
