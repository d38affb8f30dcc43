#!/usr/bin/env bash
# The main job's wall time: `keel quickstart` (release build) under
# /usr/bin/time -v, with the story's own outcome (quickstart.json).
#
#   bash bench/quickstart/run.sh [RUNS]      # default 3 runs
#
# Env: KEEL_BIN (default $CARGO_TARGET_DIR/release/keel, else
# target-release/release/keel; built with `cargo build --release -p keel` if missing).
# Results: bench/results/quickstart-<UTC time>.json and a line per run.
# Fails when a run's story did not succeed (its summary said so and it exited non-zero).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
runs="${1:-3}"
target_dir="${CARGO_TARGET_DIR:-$repo/target-release}"
keel="${KEEL_BIN:-$target_dir/release/keel}"
if [ ! -x "$keel" ]; then
    (cd "$repo" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked -p keel)
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/keel-quickstart-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="$repo/bench/results/quickstart-$stamp.json"
mkdir -p "$repo/bench/results"
: >"$work/runs.jsonl"
for i in $(seq 1 "$runs"); do
    load="$(cut -d' ' -f1 /proc/loadavg)"
    set +e
    /usr/bin/time -v -o "$work/time-$i.txt" "$keel" --quiet quickstart "$work/run-$i" >"$work/out-$i.txt" 2>"$work/err-$i.txt"
    rc=$?
    set -e
    python3 - "$work" "$i" "$rc" "$load" >>"$work/runs.jsonl" <<'PY'
import json, os, sys
work, i, rc, load = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fields = {}
for line in open(os.path.join(work, f"time-{i}.txt")):
    key, _, value = line.strip().rpartition(": ")
    fields[key] = value
parts = [float(p) for p in fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")]
wall = sum(p * 60 ** k for k, p in enumerate(reversed(parts)))
summary_path = os.path.join(work, f"run-{i}", "quickstart.json")
story = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
print(json.dumps({
    "run": int(i), "exit_code": rc, "load_1m_before": load, "wall_s": round(wall, 3),
    "cpu_s_orchestrator": round(float(fields["User time (seconds)"]) + float(fields["System time (seconds)"]), 3),
    "peak_rss_mib_orchestrator": round(int(fields["Maximum resident set size (kbytes)"]) / 1024, 1),
    "story_seconds": story.get("seconds"), "succeeded": story.get("succeeded"),
    "swap": story.get("swap"), "drifted": story.get("drifted"),
}))
PY
    tail -n 1 "$work/runs.jsonl"
done
python3 - "$work/runs.jsonl" "$out" "$keel" <<'PY'
import json, os, statistics, subprocess, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
failed = [r for r in runs if r["exit_code"] != 0 or not r["succeeded"]]
result = {
    "benchmark": "keel quickstart (the main job), release build",
    "command": "bench/quickstart/run.sh",
    "machine": {"nproc": os.cpu_count(), "uname": " ".join(os.uname())},
    "keel_version": subprocess.run([sys.argv[3], "--version"], capture_output=True, text=True).stdout.strip(),
    "runs": runs,
    "median_wall_s": statistics.median(r["wall_s"] for r in runs),
    "all_succeeded": not failed,
}
json.dump(result, open(sys.argv[2], "w"), indent=1)
print(f"median wall {result['median_wall_s']:.2f} s over {len(runs)} runs; raw: {sys.argv[2]}")
if failed:
    print(f"FAILED: {len(failed)} run(s) did not complete the story: {[r['run'] for r in failed]}", file=sys.stderr)
    sys.exit(1)
PY
