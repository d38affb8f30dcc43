#!/usr/bin/env bash
# Tracking-server benchmark: keel server vs mlflow server (pinned, in a venv),
# driven one after the other by the same official MLflow Python client.
#
#   bench/tracking/run.sh [--quick] [--keel-bin PATH] [--out DIR] [--servers keel,mlflow]
#
#   --quick         divide every count by 10 (for testing the harness; minutes, not ~25 min)
#   --keel-bin      keel binary (default target/release/keel; build it with cargo build --release)
#   --out           result directory (default bench/results)
#   --servers       which servers to run, in order (default keel,mlflow)
#
# Measures per server: launch -> first 200 on /health (polled every 50 ms);
# 5,000 single log_metric calls; 100,000 metrics via log_batch (1,000 per call);
# 2,000 runs x (5 params + 5 metrics) then search_runs(filter "metrics.m1 > 0.5",
# order_by "metrics.m2 DESC", max_results 1000), median of 3; RSS of the server's
# process tree after the load. mlflow runs with its default settings (4 workers,
# job execution on). Writes <out>/tracking-<UTC timestamp>.json and prints a
# Markdown table: metric | keel | mlflow | ratio (ratio > 1 = keel better).
# Exit code: 0 if every server ran and read back correctly, 1 otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

case "${1:-}" in
    -h|--help) sed -n '2,20p' "$here/run.sh"; exit 0 ;;
esac

venv="$("$repo/tests/python/ensure_venv.sh")"
exec "$venv/bin/python" "$here/run_bench.py" --argv0 "bench/tracking/run.sh" --orig-args "$*" "$@"
