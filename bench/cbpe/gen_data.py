"""Seeded binary classification data for bench/cbpe: covariate shift only.

x1..x4 ~ N(0, 1); P(y = 1 | x) = sigmoid((2 x1 - 1.5 x2) * exp(-0.6 x3) + 0.3 x4)
is the same in every chunk (no concept drift), so a label-free estimate can
follow the accuracy; what moves is where the rows are: x3's mean shifts in
later chunks (up: flatter relation, lower accuracy; down: sharper, higher).

  python gen_data.py WORK [SEED]
Writes WORK/train.csv (3,000 rows), WORK/reference.csv (5,000 labelled rows,
the reference both tools calibrate on) and WORK/analysis.csv (10 chunks of
2,000 rows with a `chunk` column and the x3 shift of each chunk).
"""
import sys

import numpy as np
import pandas as pd

SHIFTS = [0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0, -0.5, -1.0, -1.5]
CHUNK = 2000


def draw(rng, n, shift):
    x = rng.standard_normal((n, 4))
    x[:, 2] += shift
    logit = (2 * x[:, 0] - 1.5 * x[:, 1]) * np.exp(-0.6 * x[:, 2]) + 0.3 * x[:, 3]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "x4": x[:, 3], "y": y})


def main():
    work = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rng = np.random.default_rng(seed)
    draw(rng, 3000, 0.0).to_csv(f"{work}/train.csv", index=False, float_format="%.6g")
    draw(rng, 5000, 0.0).to_csv(f"{work}/reference.csv", index=False, float_format="%.6g")
    chunks = []
    for k, shift in enumerate(SHIFTS):
        d = draw(rng, CHUNK, shift)
        d["chunk"] = k
        d["x3_shift"] = shift
        chunks.append(d)
    pd.concat(chunks).to_csv(f"{work}/analysis.csv", index=False, float_format="%.6g")


if __name__ == "__main__":
    main()
