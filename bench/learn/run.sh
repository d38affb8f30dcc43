#!/usr/bin/env bash
# Learner benchmark: keel's GBDT and random forest vs scikit-learn's
# HistGradientBoosting / RandomForest on the same synthetic table, same run.
#
#   bash bench/learn/run.sh [ROWS] [TREES]     # defaults: 1000000 rows, 100 trees
#
# 20 columns; 80 % of the rows train, 20 % test. Writes the figures as JSON
# lines to bench/results/learn-<UTC time>.jsonl (one file per run, so earlier
# runs stay) and prints them.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
rows="${1:-1000000}"
trees="${2:-100}"
train=$((rows * 4 / 5))
venv="$(bash tests/python/ensure_venv.sh)"
work="bench/results/tmp/learn"
mkdir -p "$work" bench/results
"$venv/bin/python" bench/learn/bench.py make "$work" --rows "$rows" --cols 20
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target-release}"
cargo build --release --locked -p keel-learn --example bench_learn >&2
out="bench/results/learn-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
{
    echo "{\"rows\": $rows, \"cols\": 20, \"train_rows\": $train, \"nproc\": $(nproc), \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
    "$CARGO_TARGET_DIR/release/examples/bench_learn" --dir "$work" --cols 20 --train "$train" --trees "$trees"
    "$venv/bin/python" bench/learn/bench.py sklearn "$work" --train "$train" --trees "$trees"
} | tee "$out"
