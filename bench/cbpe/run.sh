#!/usr/bin/env bash
# keel's label-free accuracy estimate vs NannyML's CBPE, on the same data in
# the same run (cbpe_bench.py says how): per chunk of a covariate-shifted
# stream, each tool's estimate against the realized accuracy, and each
# tool's mean and largest absolute error; keel's estimate with the isotonic
# calibration `keel train` fits on its held-out rows and without it.
#
#   cargo build --release -p keel && bash bench/cbpe/run.sh
#
# Env: KEEL_BIN (default target/release/keel under CARGO_TARGET_DIR or ./target),
#      KEEL_CBPE_VENV (venv path; default: the pinned venv of
#      bench/multivariate, whose pins requirements.txt links to).
# Results: bench/results/cbpe-<UTC time>.json and markdown tables on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
keel="${KEEL_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/keel}"
[ -x "$keel" ] || { echo "no keel binary at $keel (cargo build --release -p keel)" >&2; exit 1; }
# shellcheck source=../lib/venv.sh
source "$root/bench/lib/venv.sh"
venv="$(bench_venv "$here/requirements.txt" "${KEEL_CBPE_VENV:-}")"
work="$(mktemp -d "${TMPDIR:-/tmp}/keel-cbpe-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$root/bench/results"
echo "load before: $(cut -d' ' -f1 /proc/loadavg)" >&2
"$venv/bin/python" "$here/cbpe_bench.py" "$keel" "$work" "$root/bench/results/cbpe-$stamp.json"
