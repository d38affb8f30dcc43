#!/usr/bin/env bash
# keel vs DVC on data versioning, measured in one run on this machine.
#
#   bench/data/run.sh            # full run: 20,000 files of 1-4 KiB + one 1 GiB file
#   SMALL_FILES=2000 BIG_MIB=64 bench/data/run.sh   # a quick smoke run
#
# Needs: a release keel binary (KEEL_BIN, default target/release/keel; built
# with `cargo build --release -p keel` if missing), python3, git, /usr/bin/time.
# DVC 3.67.1 is installed into $HOME/.cache/keel/venv-dvc-3.67.1 on first use.
# Results: bench/results/data-<UTC timestamp>.json and a Markdown table on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
export KEEL_BIN="${KEEL_BIN:-$target_dir/release/keel}"
export B3_BIN="${B3_BIN:-$target_dir/release/examples/b3}"
dvc_version=3.67.1
venv="${DVC_VENV:-$HOME/.cache/keel/venv-dvc-$dvc_version}"

if [[ ! -x "$KEEL_BIN" ]]; then
  (cd "$repo" && cargo build --release -p keel)
fi
if [[ ! -x "$B3_BIN" ]]; then
  (cd "$repo" && cargo build --release -p keel -p keel-data --example b3)
fi
if [[ ! -x "$venv/bin/dvc" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "dvc==$dvc_version"
fi
export DVC_BIN="$venv/bin/dvc"
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

exec python3 "$here/bench.py" "$@"
