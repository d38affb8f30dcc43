#!/usr/bin/env bash
# Engine cost per call: keel-native vs ONNX Runtime on a keel-trained
# credit-risk model, 1-row calls and 1000-row calls (keel-engine's
# `row_latency` example), for each algorithm given.
#
#   bash bench/row-latency/run.sh [ALGORITHM ...]     # default: gbdt logistic
#
# ONNX Runtime comes from the test venv's onnxruntime wheel (KEEL_PY_VENV,
# prepared by tests/python/ensure_venv.sh). Release build under
# $CARGO_TARGET_DIR (default target-release).
# Results: bench/results/row-latency-<UTC time>.json and the example's lines.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
algorithms=("$@")
[ ${#algorithms[@]} -gt 0 ] || algorithms=(gbdt logistic)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target-release}"
export KEEL_PY_VENV="${KEEL_PY_VENV:-$(bash tests/python/ensure_venv.sh)}"
cargo build --release --locked -p keel-engine --example row_latency >&2
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="bench/results/row-latency-$stamp.json"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for algorithm in "${algorithms[@]}"; do
    echo "load_1m $(cut -d' ' -f1 /proc/loadavg)" >"$work/$algorithm.txt"
    "$CARGO_TARGET_DIR/release/examples/row_latency" "$algorithm" | tee -a "$work/$algorithm.txt"
done
python3 - "$work" "$out" "${algorithms[@]}" <<'PY'
import json, os, re, sys
work, out, algorithms = sys.argv[1], sys.argv[2], sys.argv[3:]
line_re = re.compile(r"^(?P<engine>.+?)\s+1-row batch:\s+(?P<row_cpu>[\d.]+) µs CPU \(\s*(?P<row_wall>[\d.]+) wall\)"
                     r"\s+1000-row batch:\s+(?P<batch_cpu>[\d.]+) ms CPU \(\s*(?P<batch_wall>[\d.]+) wall\)")
result = {"benchmark": "engine cost per call (keel-engine example row_latency)",
          "command": "bench/row-latency/run.sh " + " ".join(algorithms),
          "machine": {"nproc": os.cpu_count(), "uname": " ".join(os.uname())}, "models": {}}
for algorithm in algorithms:
    lines = open(os.path.join(work, f"{algorithm}.txt")).read().splitlines()
    engines = {}
    for line in lines:
        m = line_re.match(line)
        if m:
            engines[m["engine"].strip()] = {
                "one_row_call_us_cpu": float(m["row_cpu"]), "one_row_call_us_wall": float(m["row_wall"]),
                "per_row_in_1000_row_call_us_cpu": float(m["batch_cpu"]),
                "per_row_in_1000_row_call_us_wall": float(m["batch_wall"]),
            }
    if "keel-native" not in engines:
        sys.exit(f"no keel-native line for {algorithm}: {lines}")
    result["models"][algorithm] = {"load_1m": float(lines[0].split()[1]), "engines": engines}
json.dump(result, open(out, "w"), indent=1)
print(f"raw: {out}")
PY
