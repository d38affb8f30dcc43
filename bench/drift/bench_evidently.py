"""Evidently 0.7 DataDriftPreset on the synthetic frames (the reference script's logic).

usage: python bench_evidently.py N OUTDIR    writes OUTDIR/evidently_N.json
Timed from outside with /usr/bin/time -v (wall, peak RSS of the whole process).
"""
import json
import os
import sys
import time

from gen_data import CAT_COLS, NUM_COLS, make_frames, score

n, out = int(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
import evidently  # noqa: E402
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

t_import = time.perf_counter() - t0
t0 = time.perf_counter()
ref, cur = make_frames(n)
t_gen = time.perf_counter() - t0
definition = DataDefinition(numerical_columns=NUM_COLS, categorical_columns=CAT_COLS)
t0 = time.perf_counter()
ref_ds = Dataset.from_pandas(ref, data_definition=definition)
cur_ds = Dataset.from_pandas(cur, data_definition=definition)
t_ds = time.perf_counter() - t0
t0 = time.perf_counter()
snap = Report([DataDriftPreset()], include_tests=True).run(cur_ds, ref_ds)
t_run = time.perf_counter() - t0
d = snap.dict()
flagged = []
for t in d.get("tests", []):
    name = str(t.get("name", ""))
    if name.startswith("Value Drift for column ") and "FAIL" in str(t.get("status")).upper():
        flagged.append(name[len("Value Drift for column "):])
result = {
    "tool": "evidently",
    "version": evidently.__version__,
    "n_rows_each": n,
    "import_s": round(t_import, 2),
    "gen_s": round(t_gen, 2),
    "dataset_wrap_s": round(t_ds, 2),
    "report_run_s": round(t_run, 2),
    "score": score(flagged),
}
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, f"evidently_{n}.json"), "w") as f:
    json.dump(result, f, indent=1)
print(json.dumps(result))
