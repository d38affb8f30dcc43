"""keel's label-free accuracy estimate vs NannyML's CBPE, same data, same run.

One model (`keel train --algo gbdt`, held-out rows = the reference) serves
through `keel serve --log-dir`; the labelled reference and 10 analysis
chunks (gen_data.py: covariate shift of x3 only) are sent as scoring
requests, one chunk per log window; keel's estimate per chunk comes from
`keel monitor report --model … --log-dir … --window …` (the windows'
`estimated_accuracy`), twice: with the training profile as `keel train`
wrote it (the isotonic calibration fitted on the held-out rows) and with the
calibration removed (scores taken as calibrated, what keel did before).
NannyML's CBPE gets the same reference (keel's probabilities and the labels)
and the same chunks. Both are compared with the realized accuracy of each
chunk (keel's predictions against the labels).

  python cbpe_bench.py KEEL_BIN WORK OUT_JSON
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd

KEEL, WORK, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
HERE = os.path.dirname(os.path.abspath(__file__))
WINDOW_S = 4
BATCH = 500


def log(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def keel(*args, check=True):
    return subprocess.run([KEEL, "--quiet", *args], check=check, capture_output=True, text=True)


def post(url, body):
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def score(url, frame, features):
    """keel's predicted labels and P(class "1") for every row of `frame`."""
    labels, positive = [], []
    for k in range(0, len(frame), BATCH):
        part = frame.iloc[k:k + BATCH]
        reply = post(url, {"dataframe_split": {"columns": features, "data": part[features].values.tolist()}})
        classes = [str(c) for c in reply["classes"]]
        at = classes.index("1")
        labels.extend(int(float(p)) for p in reply["predictions"])
        positive.extend(p[at] for p in reply["probabilities"])
    return np.array(labels), np.array(positive)


def main():
    os.makedirs(WORK, exist_ok=True)
    subprocess.run([sys.executable, os.path.join(HERE, "gen_data.py"), WORK], check=True)
    train = os.path.join(WORK, "train.csv")
    reference = pd.read_csv(os.path.join(WORK, "reference.csv"))
    analysis = pd.read_csv(os.path.join(WORK, "analysis.csv"))
    features = ["x1", "x2", "x3", "x4"]
    model = os.path.join(WORK, "model")
    keel("train", "--algo", "gbdt", "--task", "classification", "--data", train, "--target", "y", "--test",
         os.path.join(WORK, "reference.csv"), "--out", model, "--seed", "1")
    profile = json.load(open(os.path.join(model, "profile.json")))
    calibrated = "calibration" in profile
    raw_model = os.path.join(WORK, "model-uncalibrated")
    shutil.copytree(model, raw_model)
    profile.pop("calibration", None)
    json.dump(profile, open(os.path.join(raw_model, "profile.json"), "w"))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logs = os.path.join(WORK, "logs")
    serve = subprocess.Popen([KEEL, "--quiet", "serve", model, "--name", "cbpe", "--port", str(port),
                              "--log-dir", logs], stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(WORK, "serve.log"), "w"), start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/ping", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        url = base + "/invocations"
        ref_pred, ref_proba = score(url, reference, features)
        # One chunk per window: each starts just after a window boundary.
        starts, predictions, probas = [], [], []
        for k in range(int(analysis["chunk"].max()) + 1):
            now = time.time()
            boundary = (int(now // WINDOW_S) + 1) * WINDOW_S
            time.sleep(boundary - now + 0.2)
            chunk = analysis[analysis["chunk"] == k]
            pred, proba = score(url, chunk, features)
            if time.time() >= boundary + WINDOW_S - 0.2:
                raise SystemExit(f"chunk {k} did not fit in one {WINDOW_S} s window")
            starts.append(boundary * 1000)
            predictions.append(pred)
            probas.append(proba)
        total = len(reference) + len(analysis)
        for _ in range(300):
            text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
            written = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                          if l.startswith("keel_serve_prediction_log_rows_written_total"))
            if written >= total:
                break
            time.sleep(0.1)
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        serve.wait(timeout=30)

    def keel_estimates(model_dir, name):
        out = os.path.join(WORK, f"report-{name}.json")
        keel("monitor", "report", "--model", "cbpe", "--model-dir", model_dir, "--log-dir", logs,
             "--window", f"{WINDOW_S}s", "--format", "json", "--output", out, check=False)
        windows = {w["start_ms"]: w for w in json.load(open(out))["windows"]["windows"]}
        return [windows[s]["estimated_accuracy"] if s in windows else None for s in starts]

    keel_cal = keel_estimates(model, "calibrated")
    keel_raw = keel_estimates(raw_model, "uncalibrated")

    # NannyML's CBPE on the same reference and chunks (keel's probabilities).
    # No usage telemetry from NannyML (it would try to reach the internet).
    os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
    import nannyml as nml
    t = time.time()
    ref = pd.DataFrame({"y_pred_proba": ref_proba, "y_pred": ref_pred, "y_true": reference["y"].values})
    ana = pd.DataFrame({"y_pred_proba": np.concatenate(probas), "y_pred": np.concatenate(predictions)})
    chunk_size = len(analysis) // len(starts)
    estimator = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                         metrics=["accuracy"], chunk_size=chunk_size, problem_type="classification_binary")
    estimator.fit(ref)
    result = estimator.estimate(ana).to_df()
    nml_s = time.time() - t
    result = result[result[("chunk", "period")] == "analysis"]
    nml_est = [float(v) for v in result[("accuracy", "value")].values]
    if len(nml_est) != len(starts):
        raise SystemExit(f"NannyML made {len(nml_est)} analysis chunks, expected {len(starts)}")

    rows = []
    for k, start in enumerate(starts):
        chunk = analysis[analysis["chunk"] == k]
        realized = float((predictions[k] == chunk["y"].values).mean())
        rows.append({"chunk": k, "x3_shift": float(chunk["x3_shift"].iloc[0]), "start_ms": start,
                     "realized": realized, "nannyml": nml_est[k], "keel": keel_cal[k], "keel_uncalibrated": keel_raw[k]})

    def errors(tool):
        e = [abs(r[tool] - r["realized"]) for r in rows if r[tool] is not None]
        return {"mae": float(np.mean(e)), "max": float(np.max(e)), "chunks": len(e)} if e else None

    ref_acc = float((ref_pred == reference["y"].values).mean())
    result = {"machine": os.uname().nodename, "cpus": os.cpu_count(),
              "keel": subprocess.run([KEEL, "--version"], capture_output=True, text=True).stdout.strip(),
              "nannyml": nml.__version__, "model": "keel gbdt (100 rounds, 31 leaves), 3,000 training rows",
              "reference_rows": len(reference), "reference_accuracy": ref_acc, "chunk_rows": chunk_size,
              "window_s": WINDOW_S, "keel_profile_has_calibration": calibrated,
              "calibration_steps": len(json.load(open(os.path.join(model, "profile.json"))).get("calibration", {}).get("steps", [])),
              "nannyml_fit_estimate_s": round(nml_s, 2), "chunks": rows,
              "errors": {"nannyml": errors("nannyml"), "keel": errors("keel"),
                         "keel_uncalibrated": errors("keel_uncalibrated")}}
    json.dump(result, open(OUT, "w"), indent=1)
    print(f"reference: {len(reference)} labelled rows, accuracy {ref_acc:.4f}; chunks of {chunk_size} rows, x3 shifted")
    print("| chunk | x3 shift | realized accuracy | NannyML CBPE | keel (calibrated) | keel (uncalibrated) |")
    print("|---:|---:|---:|---:|---:|---:|")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    for r in rows:
        print(f"| {r['chunk']} | {r['x3_shift']:+.1f} | {r['realized']:.4f} | {fmt(r['nannyml'])} | "
              f"{fmt(r['keel'])} | {fmt(r['keel_uncalibrated'])} |")
    print()
    print("| estimate | mean abs error | max abs error |")
    print("|---|---:|---:|")
    for tool, name in (("nannyml", f"NannyML {nml.__version__} CBPE"), ("keel", "keel, calibrated on the reference"),
                       ("keel_uncalibrated", "keel, scores taken as calibrated (before)")):
        e = result["errors"][tool]
        print(f"| {name} | {e['mae']:.4f} | {e['max']:.4f} |" if e else f"| {name} | - | - |")
    print(f"\nraw results: {OUT}")


if __name__ == "__main__":
    main()
