#!/usr/bin/env bash
# The tracking server's own cost over raw HTTP, keel server vs mlflow server in
# the same run (issue 19): runs/log-batch of 1,000 metrics and runs/search over
# 200 runs (~100 answered), one keep-alive connection, bodies encoded before the
# clock starts, plus the GET /health floor. See raw_http.py for the details.
#
#   cargo build --release -p keel
#   bash bench/tracking/raw_http.sh [--keel-bin PATH] [--servers keel,mlflow]
#        [--keel-backend postgresql://postgres@127.0.0.1:5432/DB] [--search N] [--batches N]
#
# Writes bench/results/tracking-raw-<UTC>.json and prints a Markdown table.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
case "${1:-}" in
    -h|--help) sed -n '2,11p' "$here/raw_http.sh"; exit 0 ;;
esac
keel="${KEEL_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/keel}"
venv="$("$repo/tests/python/ensure_venv.sh")"
exec "$venv/bin/python" "$here/raw_http.py" --keel-bin "$keel" --orig-args "$*" "$@"
