#!/usr/bin/env bash
# keel run vs dvc repro on the same 4-stage pipeline, measured in one run.
#
#   bench/pipeline/run.sh            # 5,000-row CSV, 5 no-op and 3 param-change repetitions
#   REPS=2 bench/pipeline/run.sh     # quicker
#
# Needs: a release keel binary (KEEL_BIN, default $CARGO_TARGET_DIR/release/keel;
# built with `cargo build --release -p keel` if missing), python3, git, /usr/bin/time.
# DVC 3.67.1 is installed into $HOME/.cache/keel/venv-dvc-3.67.1 on first use.
# Results: bench/results/pipeline-<UTC timestamp>.json and a Markdown table on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
export KEEL_BIN="${KEEL_BIN:-$target_dir/release/keel}"
dvc_version=3.67.1
venv="${DVC_VENV:-$HOME/.cache/keel/venv-dvc-$dvc_version}"

if [[ ! -x "$KEEL_BIN" ]]; then
  (cd "$repo" && cargo build --release -p keel)
fi
if [[ ! -x "$venv/bin/dvc" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "dvc==$dvc_version"
fi
export DVC_BIN="$venv/bin/dvc"
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

exec python3 "$here/bench.py" "$@"
