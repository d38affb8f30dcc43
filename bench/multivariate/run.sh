#!/usr/bin/env bash
# keel's joint (multivariate) drift test vs NannyML's
# DataReconstructionDriftCalculator (PCA) on the same Parquet files, in one
# run: three shifts that change only the joint distribution (a correlation
# that flips, one that appears, mass moving between quadrants; every
# marginal unchanged), a practically irrelevant one (correlation 0.05) and
# two no-shift controls, at 10k, 100k and 1M rows
# per side (gen_data.py). keel profiles the reference once (`keel monitor
# profile`, the model goes into profile.json) and reports each case
# (`keel monitor report --format json`); NannyML fits once and calculates
# each case with its defaults (chunks, mean +/- 3 std thresholds).
#
#   cargo build --release -p keel && bash bench/multivariate/run.sh [N ...]
#
# The claim it checks (exit 1 when false): at every size keel's joint test
# finds all three shifts, names the shifted pair as its first two drivers,
# flags no column's marginal test, and raises no alarm on either control or
# on the irrelevant 0.05 correlation.
# NannyML's outcome is printed beside it, not asserted.
#
# Env: KEEL_BIN (default target/release/keel under CARGO_TARGET_DIR or ./target),
#      KEEL_MULTIVARIATE_VENV (venv path; default ~/.cache/keel/py-<hash of requirements.txt>).
# Results: bench/results/multivariate-<UTC time>.json and markdown tables on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000)
keel="${KEEL_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/keel}"
[ -x "$keel" ] || { echo "no keel binary at $keel (cargo build --release -p keel)" >&2; exit 1; }

# Pinned venv, keyed on the requirements file (bench/lib/venv.sh).
# shellcheck source=../lib/venv.sh
source "$root/bench/lib/venv.sh"
venv="$(bench_venv "$here/requirements.txt" "${KEEL_MULTIVARIATE_VENV:-}")"
py="$venv/bin/python"

work="$(mktemp -d "${TMPDIR:-/tmp}/keel-multivariate-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$root/bench/results"
out="$root/bench/results/multivariate-$stamp.json"
: >"$work/runs.jsonl"

# shellcheck source=../lib/timed.sh
source "$root/bench/lib/timed.sh"

cases=(flip appear quadrants slight none_1 none_2)
for n in "${sizes[@]}"; do
    echo "== $n rows per side" >&2
    (cd "$here" && "$py" gen_data.py "$n" "$work")
    timed "keel_profile_$n" "$keel" --quiet monitor profile "$work/ref_$n.parquet" --output "$work/ref_$n.json"
    for case in "${cases[@]}"; do
        timed "keel_${case}_$n" "$keel" --quiet monitor report --reference "$work/ref_$n.json" \
            --current "$work/cur_${case}_$n.parquet" --format json --output "$work/keel_${case}_$n.json"
    done
    (cd "$here" && timed "nannyml_$n" "$py" bench_nannyml.py "$n" "$work")
done

"$py" - "$work" "$out" "${sizes[@]}" <<'PY'
import json, os, sys
work, out, sizes = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3:]]
runs = {}
for line in open(os.path.join(work, "runs.jsonl")):
    r = json.loads(line)
    runs[r["name"]] = r
cases = ["flip", "appear", "quadrants", "slight", "none_1", "none_2"]
shifted = {"flip": ["a", "b"], "appear": ["c", "d"], "quadrants": ["e", "f"]}
result = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "sizes": {}}
failures = []
print("| rows/side | case | keel joint | error change | p | drivers | marginal flags | keel s (report) | NannyML PCA | chunks alerted | NannyML values (threshold) |")
print("|---:|---|---|---:|---:|---|---|---:|---|---:|---|")
for n in sizes:
    nml_path = os.path.join(work, f"nannyml_{n}.json")
    nml = json.load(open(nml_path)) if os.path.exists(nml_path) else None
    entry = {"keel_profile": runs.get(f"keel_profile_{n}"), "nannyml_run": runs.get(f"nannyml_{n}"),
             "nannyml": nml, "cases": {}}
    for case in cases:
        path = os.path.join(work, f"keel_{case}_{n}.json")
        if not os.path.exists(path):
            failures.append(f"{n} {case}: keel wrote no report (rc {runs.get(f'keel_{case}_{n}', {}).get('rc')})")
            continue
        rep = json.load(open(path))
        joint = rep.get("multivariate")
        marginal = [c["column"] for c in rep["columns"] if c["drifted"]]
        k = {"joint_drifted": bool(joint and joint["drifted"]), "dataset_drifted": rep["dataset"]["drifted"],
             "error_change": joint and joint["error_change"], "p_value": joint and joint["p_value"],
             "drivers": joint["drivers"] if joint else None,
             "drifted_pairs": [[p["a"], p["b"]] for p in (joint or {}).get("pairs", []) if p["drifted"]],
             "marginal_flags": marginal, "run": runs.get(f"keel_{case}_{n}")}
        if joint is None:
            failures.append(f"{n} {case}: no joint verdict")
        elif case in shifted:
            if not k["joint_drifted"]:
                failures.append(f"{n} {case}: keel missed the shift")
            elif sorted(k["drivers"][:2]) != shifted[case]:
                failures.append(f"{n} {case}: drivers {k['drivers']}, expected {shifted[case]} first")
        elif k["joint_drifted"] or k["dataset_drifted"]:
            failures.append(f"{n} {case}: false alarm")
        if marginal:
            failures.append(f"{n} {case}: marginal tests flagged {marginal}")
        c = (nml or {}).get("cases", {}).get(case, {})
        entry["cases"][case] = {"keel": k, "nannyml": c}
        ec = "-" if k["error_change"] is None else f"{k['error_change'] * 100:+.1f}%"
        p = "-" if k["p_value"] is None else f"{k['p_value']:.2g}"
        nv = ", ".join(f"{v:.3f}" for v in c.get("values", [])[:10])
        print(f"| {n:,} | {case} | {'DRIFT' if k['joint_drifted'] else 'no drift'} | {ec} | {p} | "
              f"{', '.join(k['drivers'] or []) or '-'} | {', '.join(marginal) or '-'} | {k['run']['wall_s']} | "
              f"{'alert' if c.get('detected') else 'no alert'} | {c.get('chunks_alerted', '-')} | "
              f"{nv} ({c.get('lower_threshold', 0) or 0:.3f}..{c.get('upper_threshold', 0):.3f}) |")
    result["sizes"][n] = entry
print()
print("| rows/side | keel shifts found | keel alarms: slight / controls | NannyML shifts found | NannyML alarms: slight / controls | keel profile s / report s (each) | NannyML fit s / calculate s (each) | load |")
print("|---:|---|---|---|---|---|---|---:|")
for n in sizes:
    e = result["sizes"][n]
    kc = e["cases"]
    found = sum(1 for c in shifted if kc.get(c, {}).get("keel", {}).get("joint_drifted"))
    controls = [c for c in cases if c.startswith("none")]
    fa = sum(1 for c in controls if kc.get(c, {}).get("keel", {}).get("dataset_drifted"))
    slight = bool(kc.get("slight", {}).get("keel", {}).get("dataset_drifted"))
    nfound = sum(1 for c in shifted if kc.get(c, {}).get("nannyml", {}).get("detected"))
    nfa = sum(1 for c in controls if kc.get(c, {}).get("nannyml", {}).get("detected"))
    nslight = bool(kc.get("slight", {}).get("nannyml", {}).get("detected"))
    reports = [kc[c]["keel"]["run"]["wall_s"] for c in cases if c in kc]
    nml = e["nannyml"] or {}
    calcs = [v["calculate_s"] for v in nml.get("cases", {}).values()]
    e["summary"] = {"keel_found": found, "keel_false_alarms": fa, "keel_slight_flagged": slight,
                    "nannyml_found": nfound, "nannyml_false_alarms": nfa, "nannyml_slight_flagged": nslight}
    load = (e["keel_profile"] or {}).get("load_before")
    yn = lambda b: "yes" if b else "no"
    print(f"| {n:,} | {found}/3 | {yn(slight)} / {fa}/2 | {nfound}/3 | {yn(nslight)} / {nfa}/2 | {e['keel_profile']['wall_s']} / {max(reports) if reports else '-'} | "
          f"{nml.get('fit_s', '-')} / {max(calcs) if calcs else '-'} | {load} |")
result["claim"] = "keel's joint test finds every correlation-only shift (shifted pair named first), no marginal test fires, no alarm on the controls or the irrelevant 0.05 correlation"
result["claim_holds"] = not failures
result["failures"] = failures
json.dump(result, open(out, "w"), indent=1)
print(f"\nraw results: {out}")
if failures:
    print("CLAIM FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("claim holds: " + result["claim"])
PY
