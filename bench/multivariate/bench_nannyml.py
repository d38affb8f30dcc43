"""NannyML's DataReconstructionDriftCalculator (PCA, defaults) on the cases
of gen_data.py, as shared/reference/drift-bench/bench_nannyml.py ran it:
fit on the reference, calculate on each current frame; a case counts as
detected when any analysis chunk raised an alert (NannyML's default
chunking and its threshold, mean +/- 3 std over the reference chunks).

usage: python bench_nannyml.py N WORK_DIR   (writes WORK_DIR/nannyml_N.json)
"""
import json
import os
import sys
import time

from gen_data import CASES, COLUMNS

n, work = int(sys.argv[1]), sys.argv[2]
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

t0 = time.perf_counter()
import nannyml as nml  # noqa: E402
import pandas as pd  # noqa: E402

t_import = time.perf_counter() - t0
ref = pd.read_parquet(f"{work}/ref_{n}.parquet")
t0 = time.perf_counter()
calc = nml.DataReconstructionDriftCalculator(column_names=COLUMNS)
calc.fit(ref)
t_fit = time.perf_counter() - t0
out = {"tool": "nannyml", "version": nml.__version__, "n_rows_each": n,
       "import_s": round(t_import, 2), "fit_s": round(t_fit, 2), "cases": {}}
for case in CASES:
    cur = pd.read_parquet(f"{work}/cur_{case}_{n}.parquet")
    t0 = time.perf_counter()
    df = calc.calculate(cur).filter(period="analysis").to_df()
    t_calc = time.perf_counter() - t0
    key = [c for c in df.columns.get_level_values(0).unique() if c != "chunk"][0]
    values = [float(v) for v in df[key]["value"]]
    alerts = int(df[key]["alert"].sum())
    lower = df[key]["lower_threshold"].iloc[0]
    out["cases"][case] = {
        "calculate_s": round(t_calc, 2),
        "values": [round(v, 4) for v in values],
        "upper_threshold": float(df[key]["upper_threshold"].iloc[0]),
        "lower_threshold": None if lower is None else float(lower),
        "chunks_alerted": f"{alerts}/{len(df)}",
        "detected": alerts > 0,
    }
with open(f"{work}/nannyml_{n}.json", "w") as f:
    json.dump(out, f, indent=1)
print(json.dumps(out, indent=1))
