"""Seeded data for bench/multivariate: shifts of the joint distribution that
every column's own distribution hides.

usage: python gen_data.py N OUT_DIR
Writes OUT_DIR/ref_N.parquet and OUT_DIR/cur_<case>_N.parquet, N rows each:
8 numeric columns a..h and a categorical column city.

  a, b   normal, correlation 0.7            (flip: -0.7 in the current data)
  c, d   independent normals                (appear: correlation 0.6)
  e, f   independent uniforms on [-1, 1]    (quadrants: half of the rows made
         concordant, f = |u| * sign(e): mass moves into quadrants I and III,
         each marginal still uniform on [-1, 1])
  g      exponential, h lognormal, city (3 values): never change
  slight: c, d correlation 0.05, practically irrelevant (flagging it is a
         false alarm of the large-n kind, as the 0.02-sd shifts of bench/drift)
  none_1, none_2: the reference's distribution, independent draws (controls)

Every current frame has the reference's marginals exactly: only the joint
distribution changes. The same generator as the Rust test
crates/keel-monitor/tests/it/joint.rs (different random streams).
"""
import sys

import numpy as np
import pandas as pd

CASES = ["flip", "appear", "quadrants", "slight", "none_1", "none_2"]
SHIFTED = {"flip": ["a", "b"], "appear": ["c", "d"], "quadrants": ["e", "f"]}
NUMERIC = list("abcdefgh")
COLUMNS = NUMERIC + ["city"]


def frame(n, seed, case):
    rng = np.random.default_rng(seed)
    rho_ab = -0.7 if case == "flip" else 0.7
    rho_cd = {"appear": 0.6, "slight": 0.05}.get(case, 0.0)
    z0, z1, z2, z3 = (rng.standard_normal(n) for _ in range(4))
    a = 10.0 + 2.0 * z0
    b = -3.0 + 0.5 * (rho_ab * z0 + np.sqrt(1 - rho_ab**2) * z1)
    c = z2
    d = 100.0 + 15.0 * (rho_cd * z2 + np.sqrt(1 - rho_cd**2) * z3)
    e = rng.uniform(-1.0, 1.0, n)
    u = rng.uniform(-1.0, 1.0, n)
    if case == "quadrants":
        concordant = rng.random(n) < 0.5
        f = np.where(concordant, np.abs(u) * np.sign(e), u)
    else:
        f = u
    g = rng.exponential(3.0, n)
    h = np.exp(0.5 * rng.standard_normal(n))
    city = np.array(["rome", "oslo", "lima"], dtype=object)[rng.integers(0, 3, n)]
    return pd.DataFrame(dict(a=a, b=b, c=c, d=d, e=e, f=f, g=g, h=h, city=city))


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    frame(n, [7, n, 0], "none").to_parquet(f"{out}/ref_{n}.parquet", index=False)
    for k, case in enumerate(CASES):
        frame(n, [7, n, 1 + k], case).to_parquet(f"{out}/cur_{case}_{n}.parquet", index=False)


if __name__ == "__main__":
    main()
