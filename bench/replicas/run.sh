#!/usr/bin/env bash
# Replica switch time after an alias move: N `keel serve models:/risk@champion`
# replicas under steady traffic while the alias moves K times, beside the
# restart time of `mlflow models serve` (which does not follow aliases).
#
#   cargo build --release -p keel && bash bench/replicas/run.sh [--replicas 3] [--clients 2]
#       [--moves 10] [--gap 3] [--restarts 3] [--backend-store-uri postgresql://...]
#
# Uses the MLflow test venv (tests/python/ensure_venv.sh). Exit 1 when a
# request failed or a replica never reached a version. Raw results:
# bench/results/replicas-<UTC>.json. See replica_switch.py for the method.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
keel="${KEEL_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/keel}"
[ -x "$keel" ] || { echo "no keel binary at $keel (cargo build --release -p keel)" >&2; exit 1; }
venv="$(bash "$root/tests/python/ensure_venv.sh")"
cd "$root"
exec "$venv/bin/python" "$here/replica_switch.py" --keel-bin "$keel" --venv "$venv" "$@"
