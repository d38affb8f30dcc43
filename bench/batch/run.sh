#!/usr/bin/env bash
# Batch benchmark: keel predict vs mlflow models predict and a pandas pyfunc
# loop (rows/s, same model and CSV), and keel monitor profile of a Parquet
# file as 1, 2 and 4 shard processes plus keel monitor merge.
#
#   bench/batch/run.sh [--keel-bin PATH] [--score-rows N] [--profile-rows N]
#                      [--only scoring|profiling] [--out DIR]
#
# Uses the pinned venv of bench/serving/requirements.txt (mlflow,
# scikit-learn, skl2onnx, onnxruntime, pandas, pyarrow). Writes
# <out>/batch-<UTC timestamp>.json and prints Markdown tables.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

case "${1:-}" in
    -h|--help) sed -n '2,11p' "$here/run.sh"; exit 0 ;;
esac

venv="$(bash "$repo/tests/python/ensure_venv.sh" "$repo/bench/serving/requirements.txt")"
exec "$venv/bin/python" "$here/batch_bench.py" --argv0 "bench/batch/run.sh" --orig-args "$*" "$@"
