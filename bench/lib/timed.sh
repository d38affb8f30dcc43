#!/usr/bin/env bash
# One timed command of a benchmark, shared by bench/drift and
# bench/multivariate. Source it after setting `work` (a scratch folder) and
# `py` (a Python 3), then:
#
#   timed NAME CMD...
#
# runs CMD under /usr/bin/time -v (stdout to $work/NAME.out) and appends one
# JSON line to $work/runs.jsonl: {name, rc, load_before, wall_s, cpu_s,
# peak_rss_mb}. A failing CMD does not stop the script: its exit code is
# recorded (a drift verdict makes `keel monitor report` exit 1).
timed() {
    local name=$1; shift
    local load; load=$(cut -d' ' -f1 /proc/loadavg)
    set +e
    /usr/bin/time -v "$@" >"$work/$name.out" 2>"$work/$name.time"
    local rc=$?
    set -e
    "$py" - "$name" "$rc" "$load" "$work/$name.time" >>"$work/runs.jsonl" <<'PY'
import json, sys
name, rc, load, path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
text = open(path).read()
def field(label):
    # The value is the last token of the line that starts with the label.
    for line in text.splitlines():
        if line.strip().startswith(label):
            return line.split()[-1]
    return None
wall = field("Elapsed (wall clock) time")
parts = [float(p) for p in wall.split(":")] if wall else [0]
seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
print(json.dumps({"name": name, "rc": rc, "load_before": load, "wall_s": round(seconds, 2),
                  "cpu_s": round(float(field("User time") or 0) + float(field("System time") or 0), 2),
                  "peak_rss_mb": round(int(field("Maximum resident set size") or 0) / 1024, 1)}))
PY
}
