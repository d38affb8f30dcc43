#!/usr/bin/env bash
# Model-registry benchmark: keel server vs mlflow server (pinned, in a venv),
# one after the other in the same run, driven by the official MLflow client.
#
#   bench/registry/run.sh [--quick] [--keel-bin PATH] [--out DIR] [--servers keel,mlflow] [--keep]
#
#   --quick      100 models x 20 versions and fewer calls (tests the harness; ~5 min, most of it MLflow startup)
#   --keel-bin   keel binary (default target/release/keel if it exists, else target/debug/keel)
#   --out        result directory (default bench/results)
#   --servers    which servers to run, in order (default keel,mlflow)
#   --keep       keep the servers' temp dirs (SQLite files, logs)
#
# Data set: 1,000 registered models x 20 versions (each version: source + tag;
# each model: description, tag, aliases production -> 20 and staging -> 19).
# keel is populated through its REST API, mlflow by inserting into its own SQLite
# schema (REST would take most of an hour); see README.md.
# Timed per server, MlflowClient and raw HTTP: search_model_versions by name
# (20 rows, N=200), by LIKE prefix (200 rows, N=50; 2,000 rows, N=20),
# get_model_version_by_alias (N=500), search_registered_models(max_results=100) (N=50).
# Writes <out>/registry-<UTC timestamp>.json and prints a Markdown table.
# Exit code: 0 if both servers ran, every answer matched the data set and the
# two servers gave identical answers to the timed queries; 1 otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

case "${1:-}" in
    -h|--help) sed -n '2,22p' "$here/run.sh"; exit 0 ;;
esac

keel_bin=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --keel-bin) keel_bin="$2"; shift 2 ;;
        --keel-bin=*) keel_bin="${1#--keel-bin=}"; shift ;;
        *) args+=("$1"); shift ;;
    esac
done

note="given with --keel-bin"
if [ -z "$keel_bin" ]; then
    if [ -x target/release/keel ]; then
        keel_bin=target/release/keel; note="release build (default)"
    else
        keel_bin=target/debug/keel; note="DEBUG build: target/release/keel does not exist (cargo build --release for real figures)"
    fi
fi
[ -x "$keel_bin" ] || { echo "run.sh: keel binary $keel_bin not found (cargo build [--release])" >&2; exit 2; }
echo "run.sh: keel binary: $keel_bin ($note)" >&2

venv="$("$repo/tests/python/ensure_venv.sh")"
exec "$venv/bin/python" "$here/run_bench.py" --argv0 "bench/registry/run.sh" --orig-args "$*" \
    --keel-bin "$keel_bin" --keel-bin-note "$note" ${args[@]+"${args[@]}"}
