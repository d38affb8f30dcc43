#!/usr/bin/env bash
# `keel monitor watch` as a service under steady prediction load, with a
# covariate shift injected midway (watch_bench.py says how): counts the
# webhook's alerts and recovery notices, the on_drift retrains (keel's real
# retrain: `keel data add` + `keel run`), and scrapes the watcher's /metrics
# over time (per-feature drift effect, verdict, live and estimated
# accuracy, label lag).
#
#   cargo build --release -p keel && bash bench/watch/run.sh [DURATION_S]   # default 600
#
# The shift is on from 50 % to 75 % of the duration. The claim it checks
# (exit 1 when false): one dataset-drift alert after the shift starts, one
# recovery after it ends, one retrain (the cooldown holds while the drift
# persists over several windows), no alert key firing twice.
# Env: KEEL_BIN (default target/release/keel under CARGO_TARGET_DIR or ./target);
#      WATCH_RPS (100), WATCH_WORKERS (4), WATCH_WINDOW (30s), WATCH_INTERVAL (10s),
#      WATCH_HISTORY (6 windows), WATCH_SHIFT (1.0, the generator's units),
#      WATCH_LABEL_LAG (5 s), WATCH_SCRAPE (5 s), WATCH_CONFIRM (2: evaluations
#      in a row before an alert fires or resolves, `keel monitor watch --confirm`).
# Results: bench/results/watch-<UTC time>.json and tables on stdout.
# Only 127.0.0.1; stdlib Python; every process it starts is stopped by its id.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
duration="${1:-600}"
keel="${KEEL_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/keel}"
[ -x "$keel" ] || { echo "no keel binary at $keel (cargo build --release -p keel)" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/keel-watch-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$root/bench/results"
out="$root/bench/results/watch-$stamp.json"
load="$(cut -d' ' -f1 /proc/loadavg)"
echo "load before: $load" >&2
python3 "$here/watch_bench.py" "$keel" "$work" "$out" "$duration"
