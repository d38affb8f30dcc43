#!/usr/bin/env bash
# keel monitor vs Evidently's DataDriftPreset on the synthetic drift benchmark,
# in one run: wall time and peak RSS (/usr/bin/time -v, whole process) and the
# columns each tool flagged, at 10k, 100k and 1M rows per side; both read the
# same Parquet files, and Evidently's in-process phases (imports, read, wrap,
# report) are timed so the two tools are compared on the same work; what
# Evidently says about the NaN column is read from its result; then keel
# profiling 10M rows from Parquet (constant memory: compare its peak RSS with
# the 1M-row profile's).
#
#   cargo build --release -p keel && bash bench/drift/run.sh [N ...]
#
# Env: KEEL_BIN (default target/release/keel under CARGO_TARGET_DIR or ./target),
#      EVIDENTLY_TIMEOUT seconds per Evidently run (default 1500; a run cut off
#      is reported as such), BIG_ROWS (default 10000000; 0 skips it),
#      KEEL_DRIFT_VENV (venv path; default ~/.cache/keel/py-<hash of requirements.txt>).
# Results: bench/results/drift-<UTC time>.json and a markdown table on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000)
keel="${KEEL_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/keel}"
[ -x "$keel" ] || { echo "no keel binary at $keel (cargo build --release -p keel)" >&2; exit 1; }
timeout_s="${EVIDENTLY_TIMEOUT:-1500}"
big="${BIG_ROWS:-10000000}"

# Pinned venv, keyed on the requirements file (bench/lib/venv.sh).
# shellcheck source=../lib/venv.sh
source "$root/bench/lib/venv.sh"
venv="$(bench_venv "$here/requirements.txt" "${KEEL_DRIFT_VENV:-}")"
py="$venv/bin/python"

work="$(mktemp -d "${TMPDIR:-/tmp}/keel-drift-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$root/bench/results"
out="$root/bench/results/drift-$stamp.json"
: >"$work/runs.jsonl"

# shellcheck source=../lib/timed.sh
source "$root/bench/lib/timed.sh"

for n in "${sizes[@]}"; do
    echo "== $n rows per side" >&2
    "$py" "$here/gen_data.py" "$n" "$work"
    timed "keel_$n" "$keel" --quiet monitor report --reference "$work/ref_$n.parquet" \
        --current "$work/cur_$n.parquet" --format json --output "$work/keel_$n.json"
    (cd "$here" && timed "evidently_$n" timeout "$timeout_s" "$py" bench_evidently.py "$n" "$work")
done
if [ "$big" -gt 0 ]; then
    echo "== profile $big rows from Parquet" >&2
    "$py" "$here/gen_data.py" --big "$big" "$work" >/dev/null
    "$py" - "$work/big_$big.parquet" "$work/big_1000000.parquet" <<'PY'
import sys, pyarrow.parquet as pq
t = pq.ParquetFile(sys.argv[1]).read_row_group(0)
pq.write_table(t, sys.argv[2], compression="snappy")
PY
    timed "keel_profile_1000000" "$keel" --quiet monitor profile "$work/big_1000000.parquet" --output "$work/p1.json"
    timed "keel_profile_$big" "$keel" --quiet monitor profile "$work/big_$big.parquet" --output "$work/p10.json"
fi

"$py" - "$work" "$out" "$keel" "${sizes[@]}" <<'PY'
import json, os, sys
work, out, keel, sizes = sys.argv[1], sys.argv[2], sys.argv[3], [int(s) for s in sys.argv[4:]]
runs = {}
for line in open(os.path.join(work, "runs.jsonl")):
    r = json.loads(line)
    runs[r["name"]] = r
shifted = {"num_00", "num_01", "num_02", "num_03", "num_04"}
negligible = {"num_05", "num_06"}
def summary(flagged):
    flagged = set(flagged)
    return {"flagged": sorted(flagged), "shifted_caught": len(flagged & shifted),
            "negligible_flagged": sorted(flagged & negligible),
            "false_alarms": sorted(flagged - shifted - negligible)}
result = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "sizes": {}}
print("| rows/side | tool | wall s | CPU s | peak RSS MB | load | shifted caught | negligible flagged | false alarms | NaN change reported |")
print("|---:|---|---:|---:|---:|---:|---|---|---|---|")
for n in sizes:
    entry = {}
    k = runs.get(f"keel_{n}")
    if k and os.path.exists(os.path.join(work, f"keel_{n}.json")):
        rep = json.load(open(os.path.join(work, f"keel_{n}.json")))
        s = summary(c["column"] for c in rep["columns"] if c["drifted"])
        s["nan_change_reported"] = any(q["kind"] == "missing_rate_change" and q["column"] == "num_07" for q in rep["quality"])
        s["dataset_drift"] = rep["dataset"]["drifted"]
        entry["keel"] = {**k, **s}
    e = runs.get(f"evidently_{n}")
    path = os.path.join(work, f"evidently_{n}.json")
    if e:
        if os.path.exists(path):
            ev = json.load(open(path))
            s = summary(ev["score"]["flagged"])
            for key in ("import_s", "read_parquet_s", "dataset_wrap_s", "report_run_s", "on_disk_report_s",
                        "nan_column", "nan_change_reported"):
                s[key] = ev[key]
        else:
            s = {"note": f"no result (rc {e['rc']}: timed out or failed)"}
        entry["evidently"] = {**e, **s}
    result["sizes"][n] = entry
    for tool in ("keel", "evidently"):
        r = entry.get(tool)
        if not r:
            continue
        if "shifted_caught" in r:
            print(f"| {n:,} | {tool} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | {r['load_before']} | {r['shifted_caught']}/5 | {', '.join(r['negligible_flagged']) or '-'} | {', '.join(r['false_alarms']) or '-'} | {'yes' if r['nan_change_reported'] else 'no'} |")
        else:
            print(f"| {n:,} | {tool} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | {r['load_before']} | {r['note']} | | | |")
print()
print("Same work (report computation on Parquet already on disk): keel's whole process vs Evidently's")
print("read_parquet + Dataset wrap + report run (its imports and process start excluded).")
print()
print("| rows/side | keel s | Evidently read + wrap + run s (run alone) | ratio | Evidently on num_07 (NaN 0 -> 5 %) |")
print("|---:|---:|---:|---:|---|")
for n in sizes:
    k, e = result["sizes"][n].get("keel"), result["sizes"][n].get("evidently")
    if k and e and "on_disk_report_s" in e:
        ratio = e["on_disk_report_s"] / k["wall_s"]
        result["sizes"][n]["same_work_ratio"] = round(ratio, 1)
        test = (e["nan_column"].get("drift_test") or {}).get("status", "no test")
        print(f"| {n:,} | {k['wall_s']} | {e['on_disk_report_s']} ({e['report_run_s']}) | {ratio:.0f}x | "
              f"drift test {test}; missing-value findings: {len(e['nan_column']['missing_value_findings'])} |")
profiles = {k: v for k, v in runs.items() if k.startswith("keel_profile_")}
if profiles:
    result["profile"] = profiles
    print()
    print("| profile from Parquet | wall s | CPU s | peak RSS MB | load |")
    print("|---:|---:|---:|---:|---:|")
    for k, v in sorted(profiles.items(), key=lambda kv: int(kv[0].split("_")[-1])):
        print(f"| {int(k.split('_')[-1]):,} rows | {v['wall_s']} | {v['cpu_s']} | {v['peak_rss_mb']} | {v['load_before']} |")
json.dump(result, open(out, "w"), indent=1)
print(f"\nraw results: {out}")
PY
