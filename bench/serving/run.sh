#!/usr/bin/env bash
# Serving benchmark: keel serve vs mlflow models serve, same scikit-learn model,
# same machine, same run, loaded by keel loadtest and by wrk on 127.0.0.1.
#
#   bench/serving/run.sh [--quick] [--keel-bin PATH] [--servers keel,mlflow]
#                        [--models rf,lr] [--duration S] [--connections C] [--out DIR]
#
#   --quick         3 s per load instead of 12 (for testing the harness)
#   --keel-bin      keel binary (default target/release/keel; cargo build --release)
#   --servers       which servers to run, in order (default keel,mlflow)
#   --models        rf = RandomForestClassifier(50), lr = LogisticRegression (default rf,lr)
#
# Trains on sklearn's bundled breast_cancer data, saves an MLflow model and an
# ONNX export (skl2onnx, zipmap=False, plus a signature.json with the training
# ranges), serves each with `mlflow models serve --env-manager local -w 1` and
# with `keel serve` (prediction logging on), checks both answer like sklearn,
# then loads each at 1 and at 100 rows per request. Writes
# <out>/serving-<UTC timestamp>.json and prints a Markdown table with ratios.
# Needs wrk (Debian: apt-get install wrk); without it the wrk rows are skipped.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

case "${1:-}" in
    -h|--help) sed -n '2,21p' "$here/run.sh"; exit 0 ;;
esac

venv="$(bash "$repo/tests/python/ensure_venv.sh" "$here/requirements.txt")"
exec "$venv/bin/python" "$here/serving_bench.py" --argv0 "bench/serving/run.sh" --orig-args "$*" "$@"
