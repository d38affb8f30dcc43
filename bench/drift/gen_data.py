"""Synthetic drift benchmark data (the design of shared/reference/drift-bench/gen_data.py).

make_frames(n) -> (reference, current) pandas frames, n rows each:
  num_00..num_04 shifted by 0.2, 0.3, 0.5, 0.75, 1.0 reference sd; num_05, num_06 by 0.02 sd
  (negligible); num_07 5 % NaN in current only; num_08..num_19 and cat_0..cat_4 unchanged
  (categorical cardinalities 3, 8, 20, 100, 1000, Zipf 1.1).

usage: python gen_data.py N OUTDIR   writes OUTDIR/ref_N.parquet and OUTDIR/cur_N.parquet
       python gen_data.py --big N OUTDIR   writes OUTDIR/big_N.parquet in 1M-row row groups
"""
import os
import sys

import numpy as np
import pandas as pd

SHIFTS = {"num_00": 0.2, "num_01": 0.3, "num_02": 0.5, "num_03": 0.75, "num_04": 1.0}
NEGLIGIBLE = {"num_05": 0.02, "num_06": 0.02}
MISSINGNESS = {"num_07": 0.05}
NUM_COLS = [f"num_{i:02d}" for i in range(20)]
CAT_CARD = {"cat_0": 3, "cat_1": 8, "cat_2": 20, "cat_3": 100, "cat_4": 1000}
CAT_COLS = list(CAT_CARD)
TRUTH = {
    "shifted": sorted(SHIFTS),
    "negligible_shift": sorted(NEGLIGIBLE),
    "missingness_change": sorted(MISSINGNESS),
    "unchanged": [c for c in NUM_COLS if c not in SHIFTS and c not in NEGLIGIBLE and c not in MISSINGNESS]
    + CAT_COLS,
}
KINDS = ["normal", "lognormal", "uniform", "exponential", "gamma"]


def draw(kind, rng, n, i):
    if kind == "normal":
        return rng.normal(10.0 * i, 1.0 + i, n), 1.0 + i
    if kind == "lognormal":
        return rng.lognormal(0.0, 0.5, n), float(np.sqrt((np.exp(0.25) - 1) * np.exp(0.25)))
    if kind == "uniform":
        return rng.uniform(0.0, 1.0, n), float(np.sqrt(1 / 12))
    if kind == "exponential":
        return rng.exponential(2.0, n), 2.0
    return rng.gamma(2.0, 3.0, n), float(np.sqrt(2.0) * 3.0)


def frame(n, rng, current):
    data = {}
    for i, col in enumerate(NUM_COLS):
        x, sd = draw(KINDS[i % len(KINDS)], rng, n, i)
        if current:
            x = x + SHIFTS.get(col, 0.0) * sd + NEGLIGIBLE.get(col, 0.0) * sd
            if col in MISSINGNESS:
                mask = rng.random(n) < MISSINGNESS[col]
                x = x.copy()
                x[mask] = np.nan
        data[col] = x
    for col, k in CAT_CARD.items():
        labels = np.array([f"{col}_v{j}" for j in range(k)], dtype=object)
        p = 1.0 / np.arange(1, k + 1) ** 1.1
        p /= p.sum()
        data[col] = labels[rng.choice(k, size=n, p=p)]
    return pd.DataFrame(data)


def make_frames(n, seed=42):
    return (
        frame(n, np.random.default_rng([seed, n, 0]), current=False),
        frame(n, np.random.default_rng([seed, n, 1]), current=True),
    )


def score(flagged):
    flagged = set(flagged)
    return {
        "flagged": sorted(flagged),
        "shifted_caught": f"{len(flagged & set(TRUTH['shifted']))}/5",
        "negligible_flagged": sorted(flagged & set(TRUTH["negligible_shift"])),
        "missingness_flagged": sorted(flagged & set(TRUTH["missingness_change"])),
        "false_alarms_unchanged": sorted(flagged & set(TRUTH["unchanged"])),
    }


if __name__ == "__main__":
    import pyarrow as pa
    import pyarrow.parquet as pq

    if sys.argv[1] == "--big":
        n, out = int(sys.argv[2]), sys.argv[3]
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, f"big_{n}.parquet")
        writer = None
        for k in range(0, n, 1_000_000):
            ref, _ = make_frames(1_000_000, seed=1000 + k // 1_000_000)
            table = pa.Table.from_pandas(ref.iloc[: min(1_000_000, n - k)], preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema, compression="snappy")
            writer.write_table(table, row_group_size=1_000_000)
        writer.close()
        print(path)
    else:
        n, out = int(sys.argv[1]), sys.argv[2]
        os.makedirs(out, exist_ok=True)
        ref, cur = make_frames(n)
        for name, df in (("ref", ref), ("cur", cur)):
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), os.path.join(out, f"{name}_{n}.parquet"), compression="snappy")
