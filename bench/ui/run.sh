#!/usr/bin/env bash
# UI benchmark: time from navigation to the newest run in the runs table, keel's
# web UI vs `mlflow server`'s UI (mlflow 3.17.2 from the test venv), in the same
# headless Chromium, for an experiment with 2,000 and with 100,000 runs; and the
# run page's transferred weight. See run_bench.py for the method.
#
#   bench/ui/run.sh [--keel-bin PATH] [--runs 2000,100000] [--servers keel,mlflow] [--out DIR]
#
#   --keel-bin   keel binary (default target/release/keel, else target/debug/keel)
#
# Needs chromium and chromium-driver (Debian packages; tests/run.sh installs them).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

case "${1:-}" in
    -h|--help) sed -n '2,11p' "$here/run.sh"; exit 0 ;;
esac

keel_bin="$repo/target/release/keel"
[ -x "$keel_bin" ] || keel_bin="$repo/target/debug/keel"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --keel-bin) keel_bin="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
command -v chromedriver >/dev/null || { echo "bench/ui: chromedriver missing (apt-get install chromium chromium-driver)" >&2; exit 1; }

venv="$("$repo/tests/python/ensure_venv.sh")"
exec "$venv/bin/python" "$here/run_bench.py" --keel-bin "$keel_bin" "${args[@]}"
