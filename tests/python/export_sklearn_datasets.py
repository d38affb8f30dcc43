"""Export scikit-learn's bundled data sets to CSV with a fixed split, plus
scikit-learn's own held-out scores, for keel-learn's accuracy test.

    python tests/python/export_sklearn_datasets.py --out DIR

Writes DIR/{breast_cancer,digits,diabetes}_{train,test}.csv (target column
"target") and DIR/sklearn_scores.json. Nothing is downloaded: these data sets
ship inside scikit-learn.
"""

import argparse
import json
import os
import time

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEED = 42


def write_csv(path, names, x, y):
    with open(path, "w") as out:
        out.write(",".join(names + ["target"]) + "\n")
        for row, target in zip(x, y):
            out.write(",".join(repr(float(v)) for v in row) + "," + repr(target.item()) + "\n")


def classifiers():
    return {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=10000)),
        "random-forest": RandomForestClassifier(n_estimators=100, random_state=SEED),
        "gbdt": HistGradientBoostingClassifier(random_state=SEED, early_stopping=False),
    }


def regressors():
    return {
        "linear": LinearRegression(),
        "ridge": make_pipeline(StandardScaler(), Ridge(alpha=1.0)),
        "random-forest": RandomForestRegressor(n_estimators=100, random_state=SEED),
        "gbdt": HistGradientBoostingRegressor(random_state=SEED, early_stopping=False),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    scores = {}
    for name, loader, task in [
        ("breast_cancer", load_breast_cancer, "classification"),
        ("digits", load_digits, "classification"),
        ("diabetes", load_diabetes, "regression"),
    ]:
        data = loader()
        names = [str(n).replace(" ", "_") for n in data.feature_names]
        x, y = data.data, data.target
        stratify = y if task == "classification" else None
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=0.25, random_state=SEED, stratify=stratify
        )
        write_csv(os.path.join(args.out, f"{name}_train.csv"), names, x_train, y_train)
        write_csv(os.path.join(args.out, f"{name}_test.csv"), names, x_test, y_test)
        scores[name] = {}
        models = classifiers() if task == "classification" else regressors()
        for algo, model in models.items():
            start = time.perf_counter()
            model.fit(x_train, y_train)
            fit_seconds = time.perf_counter() - start
            predicted = model.predict(x_test)
            if task == "classification":
                entry = {"accuracy": accuracy_score(y_test, predicted)}
            else:
                entry = {
                    "rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
                    "r2": r2_score(y_test, predicted),
                }
            entry["fit_seconds"] = fit_seconds
            scores[name][algo] = entry
    with open(os.path.join(args.out, "sklearn_scores.json"), "w") as out:
        json.dump(scores, out, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
