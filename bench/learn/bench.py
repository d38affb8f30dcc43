"""Make the synthetic table for the learner benchmark and time scikit-learn.

    python bench/learn/bench.py make DIR --rows N --cols 20
    python bench/learn/bench.py sklearn DIR --train N --trees T [--only gbdt|forest]

`make` writes DIR/x.f32 (row-major little-endian float32) and DIR/y.u8 from
a fixed seed: y = 1 when x0*x1 + sin(2*x2) + x3^2 - 1 + 0.5*x4 + noise > 0,
the other 15 columns are noise. `sklearn` fits HistGradientBoostingClassifier
(100 iterations, 31 leaves, no early stopping) and RandomForestClassifier
(T trees, n_jobs=-1) on the first N rows and scores the rest; one JSON line each.
"""

import argparse
import json
import os
import time

import numpy as np


def make(args):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols), dtype=np.float32)
    signal = x[:, 0] * x[:, 1] + np.sin(2 * x[:, 2]) + x[:, 3] ** 2 - 1 + 0.5 * x[:, 4]
    y = (signal + 0.5 * rng.standard_normal(args.rows) > 0).astype(np.uint8)
    os.makedirs(args.dir, exist_ok=True)
    x.astype("<f4").tofile(os.path.join(args.dir, "x.f32"))
    y.tofile(os.path.join(args.dir, "y.u8"))


# `--only` names, as in bench_learn's `--only`.
ONLY = {
    "gbdt": "sklearn HistGradientBoostingClassifier",
    "forest": "sklearn RandomForestClassifier",
}


def sklearn(args):
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    y = np.fromfile(os.path.join(args.dir, "y.u8"), dtype=np.uint8)
    x = np.fromfile(os.path.join(args.dir, "x.f32"), dtype="<f4").reshape(len(y), -1)
    train_x, test_x = x[: args.train], x[args.train :]
    train_y, test_y = y[: args.train], y[args.train :]
    for name, model in [
        (
            "sklearn HistGradientBoostingClassifier (100 iter, 31 leaves)",
            HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0),
        ),
        (
            f"sklearn RandomForestClassifier ({args.trees} trees, n_jobs=-1)",
            RandomForestClassifier(n_estimators=args.trees, n_jobs=-1, random_state=0),
        ),
    ]:
        if args.only and not name.startswith(ONLY[args.only]):
            continue
        started = time.perf_counter()
        model.fit(train_x, train_y)
        seconds = time.perf_counter() - started
        accuracy = float((model.predict(test_x) == test_y).mean())
        print(json.dumps({"learner": name, "fit_seconds": round(seconds, 3), "accuracy": round(accuracy, 4)}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["make", "sklearn"])
    parser.add_argument("dir")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--train", type=int, default=800_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--only", choices=sorted(ONLY), help="time one learner (both by default)")
    args = parser.parse_args()
    make(args) if args.command == "make" else sklearn(args)


if __name__ == "__main__":
    main()
