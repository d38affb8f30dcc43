"""Evidently 0.7 DataDriftPreset on the same Parquet files keel reads.

usage: python bench_evidently.py N OUTDIR    reads OUTDIR/ref_N.parquet and
OUTDIR/cur_N.parquet (written by gen_data.py), writes OUTDIR/evidently_N.json

Timed in-process, phase by phase: imports, reading both Parquet files into
pandas, wrapping them as Evidently datasets, and the report run. "Report
computation on data already on disk" (what keel's whole process does: read
Parquet, profile, test, write JSON) is read + wrap + run; imports are
reported separately. run.sh also times the whole process (/usr/bin/time -v:
wall, peak RSS).

What Evidently says about num_07 (whose NaN share goes from 0 to 5 %) is
read from its result: the value-drift test's status and every metric whose
name or parameters mention the column and missing values.
"""
import json
import os
import sys
import time

from gen_data import CAT_COLS, NUM_COLS, score

n, out = int(sys.argv[1]), sys.argv[2]
NAN_COLUMN = "num_07"

t0 = time.perf_counter()
import evidently  # noqa: E402
import pandas as pd  # noqa: E402
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

t_import = time.perf_counter() - t0

t0 = time.perf_counter()
ref = pd.read_parquet(os.path.join(out, f"ref_{n}.parquet"))
cur = pd.read_parquet(os.path.join(out, f"cur_{n}.parquet"))
t_read = time.perf_counter() - t0

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
nan_column = {"drift_test": None, "missing_value_findings": []}
for t in d.get("tests", []):
    name = str(t.get("name", ""))
    status = str(t.get("status"))
    if name.startswith("Value Drift for column "):
        column = name[len("Value Drift for column "):]
        if "FAIL" in status.upper():
            flagged.append(column)
        if column == NAN_COLUMN:
            nan_column["drift_test"] = {"status": status, "description": t.get("description")}
    elif NAN_COLUMN in json.dumps(t, default=str) and "missing" in json.dumps(t, default=str).lower():
        nan_column["missing_value_findings"].append({"test": name, "status": status})
for m in d.get("metrics", []):
    text = json.dumps(m, default=str)
    if NAN_COLUMN in text and "missing" in text.lower():
        nan_column["missing_value_findings"].append({"metric": m.get("metric_name"), "value": m.get("value")})

# Evidently "reports the NaN change" when any result about num_07 says it
# changed: its drift test failed, or a missing-values test/metric names it.
drift_failed = bool(nan_column["drift_test"]) and "FAIL" in nan_column["drift_test"]["status"].upper()
missing_failed = any("FAIL" in str(f.get("status", "")).upper() for f in nan_column["missing_value_findings"])
result = {
    "tool": "evidently",
    "version": evidently.__version__,
    "n_rows_each": n,
    "import_s": round(t_import, 3),
    "read_parquet_s": round(t_read, 3),
    "dataset_wrap_s": round(t_ds, 3),
    "report_run_s": round(t_run, 3),
    "on_disk_report_s": round(t_read + t_ds + t_run, 3),
    "score": score(flagged),
    "nan_column": nan_column,
    "nan_change_reported": drift_failed or missing_failed,
}
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, f"evidently_{n}.json"), "w") as f:
    json.dump(result, f, indent=1, default=str)
print(json.dumps(result, default=str))
