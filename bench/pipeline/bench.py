"""keel run vs dvc repro benchmark driver (called by run.sh).

The pipeline is the one in shared/reference/dvc-anchor.md section 2f:
prepare -> featurize -> train -> evaluate, tiny stdlib-Python stages on a
5,000-row CSV, params.yaml (each stage declares its own keys), a metrics
JSON. The same scripts run under an equivalent keel.yaml and dvc.yaml, each
in a fresh git repo. Every command is timed under /usr/bin/time -v (wall,
user+sys CPU, max RSS). Writes JSON under bench/results/ and prints a
Markdown table with the dvc/keel ratios.
"""

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = REPO / "bench" / "results"
WORK = Path(os.environ.get("BENCH_WORK", RESULTS / "tmp" / "pipeline"))
SEED = 20251127
ROWS = int(os.environ.get("ROWS", "5000"))
REPS = int(os.environ.get("REPS", "5"))
# BREAK_NOOP=1 changes raw.csv between two "no-op" runs: the bench must then fail.
BREAK_NOOP = os.environ.get("BREAK_NOOP") == "1"
KEEL = os.environ["KEEL_BIN"]
DVC = os.environ["DVC_BIN"]
ENV = dict(os.environ, DVC_NO_ANALYTICS="1", CI="true", RUST_BACKTRACE="0", GIT_AUTHOR_NAME="bench",
           GIT_AUTHOR_EMAIL="bench@example.invalid", GIT_COMMITTER_NAME="bench",
           GIT_COMMITTER_EMAIL="bench@example.invalid")
ENV.pop("MLFLOW_TRACKING_URI", None)

# Every stage appends its name to ../<project>.runs when it runs, so the
# bench checks which stages each tool really ran (not what it printed).
RECORD = '''import os
with open(os.path.join("..", os.path.basename(os.getcwd()) + ".runs"), "a") as _runs:
    _runs.write(STAGE + "\\n")
'''

PREPARE = '''import csv, os, sys
split = float(sys.argv[1])
rows = list(csv.reader(open("raw.csv")))
header, body = rows[0], rows[1:]
cut = int(len(body) * split)
os.makedirs("data/prepared", exist_ok=True)
for name, part in (("train.csv", body[:cut]), ("test.csv", body[cut:])):
    with open(os.path.join("data/prepared", name), "w", newline="") as f:
        w = csv.writer(f); w.writerow(header); w.writerows(part)
'''
FEATURIZE = '''import csv, os, sys
scale = float(sys.argv[1])
os.makedirs("data/features", exist_ok=True)
for name in ("train.csv", "test.csv"):
    rows = list(csv.reader(open(os.path.join("data/prepared", name))))
    with open(os.path.join("data/features", name), "w", newline="") as f:
        w = csv.writer(f); w.writerow(rows[0] + ["x2"])
        for r in rows[1:]:
            w.writerow(r + [str(float(r[0]) ** 2 * scale)])
'''
TRAIN = '''import csv, json, sys
lr, epochs = float(sys.argv[1]), int(sys.argv[2])
rows = [list(map(float, r)) for r in list(csv.reader(open("data/features/train.csv")))[1:]]
w = [0.0, 0.0, 0.0]
for _ in range(epochs):
    for x, y, x2 in rows:
        err = w[0] + w[1] * x + w[2] * x2 - y
        w = [w[0] - lr * err * 1e-3, w[1] - lr * err * x * 1e-3, w[2] - lr * err * x2 * 1e-5]
json.dump({"weights": w}, open("model.json", "w"))
'''
EVALUATE = '''import csv, json, os
w = json.load(open("model.json"))["weights"]
rows = [list(map(float, r)) for r in list(csv.reader(open("data/features/test.csv")))[1:]]
res = [(w[0] + w[1] * x + w[2] * x2 - y) for x, y, x2 in rows]
mse = sum(r * r for r in res) / len(res)
json.dump({"mse": mse, "rows": len(res)}, open("metrics.json", "w"))
os.makedirs("eval", exist_ok=True)
with open("eval/residuals.csv", "w") as f:
    f.write("i,residual\\n" + "".join(f"{i},{r}\\n" for i, r in enumerate(res)))
'''

PARAMS = "prepare:\n  split: 0.8\nfeaturize:\n  scale: 0.5\ntrain:\n  lr: {lr}\n  epochs: 3\n"

KEEL_YAML = """stages:
  prepare:
    cmd: python3 src/prepare.py ${prepare.split}
    deps: [raw.csv, src/prepare.py]
    outs: [data/prepared]
  featurize:
    cmd: python3 src/featurize.py ${featurize.scale}
    deps: [data/prepared, src/featurize.py]
    outs: [data/features]
  train:
    cmd: python3 src/train.py ${train.lr} ${train.epochs}
    deps: [data/features, src/train.py]
    outs: [model.json]
  evaluate:
    cmd: python3 src/evaluate.py
    deps: [model.json, data/features, src/evaluate.py]
    outs: [eval/residuals.csv]
    metrics: [metrics.json]
gates:
  - mse >= 0
"""

DVC_YAML = """stages:
  prepare:
    cmd: python3 src/prepare.py ${prepare.split}
    deps: [raw.csv, src/prepare.py]
    params: [prepare.split]
    outs: [data/prepared]
  featurize:
    cmd: python3 src/featurize.py ${featurize.scale}
    deps: [data/prepared, src/featurize.py]
    params: [featurize.scale]
    outs: [data/features]
  train:
    cmd: python3 src/train.py ${train.lr} ${train.epochs}
    deps: [data/features, src/train.py]
    params: [train.lr, train.epochs]
    outs: [model.json]
  evaluate:
    cmd: python3 src/evaluate.py
    deps: [model.json, data/features, src/evaluate.py]
    outs:
      - eval/residuals.csv:
          cache: false
    metrics:
      - metrics.json:
          cache: false
"""


def run(cmd, cwd, check=True):
    return subprocess.run(cmd, cwd=cwd, env=ENV, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def timed(label, cmd, cwd, expect=None):
    out = WORK / "time.txt"
    started = time.time()
    proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(out)] + cmd, cwd=cwd, env=ENV,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.stderr.write(f"{label}: {' '.join(cmd)} failed ({proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n")
        raise SystemExit(1)
    stages_ran = expect(proc.stdout + proc.stderr) if expect is not None else None
    fields = {}
    for line in out.read_text().splitlines():
        key, _, value = line.strip().rpartition(": ")
        fields[key] = value
    wall = fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"]
    parts = [float(p) for p in wall.split(":")]
    wall_s = parts[-1] + 60 * parts[-2] + (3600 * parts[-3] if len(parts) == 3 else 0)
    cpu = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
    rss = int(fields["Maximum resident set size (kbytes)"]) / 1024
    load = os.getloadavg()[0]
    print(f"  {label:<34} wall {wall_s:6.3f} s  cpu {cpu:6.3f} s  rss {rss:5.0f} MiB  load {load:.1f}", flush=True)
    return {"wall_s": wall_s, "cpu_s": round(cpu, 3), "max_rss_mib": round(rss, 1), "load_1m": round(load, 2),
            "command": " ".join(cmd), "started": started, "stages_ran": stages_ran}


def project(tool: str) -> Path:
    repo = WORK / tool
    if repo.exists():
        subprocess.run(["chmod", "-R", "u+w", str(repo)], check=False)
        shutil.rmtree(repo)
    (repo / "src").mkdir(parents=True)
    run(["git", "init", "-q"], repo)
    rng = random.Random(SEED)
    with open(repo / "raw.csv", "w") as f:
        f.write("x,y\n")
        for _ in range(ROWS):
            x = rng.uniform(0, 10)
            f.write(f"{x:.6f},{3 * x + 2 + rng.gauss(0, 1):.6f}\n")
    for name, text in (("prepare.py", PREPARE), ("featurize.py", FEATURIZE), ("train.py", TRAIN), ("evaluate.py", EVALUATE)):
        stage = name.removesuffix(".py")
        (repo / "src" / name).write_text(f"STAGE = {stage!r}\n" + RECORD + text)
    runs_file(repo).unlink(missing_ok=True)
    (repo / "params.yaml").write_text(PARAMS.format(lr=0.01))
    return repo


STAGES = ("prepare", "featurize", "train", "evaluate")


def runs_file(repo: Path) -> Path:
    return repo.parent / f"{repo.name}.runs"


def ran(repo: Path, expected):
    """A check that exactly the `expected` stages ran since the last check
    (read from the stages' own records); the bench fails when they did not."""
    def check(output):
        record = runs_file(repo)
        stages = record.read_text().split() if record.exists() else []
        record.unlink(missing_ok=True)
        if sorted(stages) != sorted(expected):
            sys.stderr.write(f"CLAIM FAILED in {repo.name}: expected stages {sorted(expected)} to run, "
                             f"these ran: {sorted(stages)}\n{output[-2000:]}\n")
            raise SystemExit(1)
        return sorted(stages)
    return check


def summary(samples):
    walls = [s["wall_s"] for s in samples]
    cpus = [s["cpu_s"] for s in samples]
    loads = [s["load_1m"] for s in samples]
    return {"n": len(samples), "median_wall_s": round(statistics.median(walls), 4), "min_wall_s": min(walls),
            "max_wall_s": max(walls), "median_cpu_s": round(statistics.median(cpus), 4),
            "max_rss_mib": max(s["max_rss_mib"] for s in samples), "load_1m": [min(loads), max(loads)],
            "command": samples[0]["command"], "samples": samples}


def bench(tool, cmd, repo):
    r = {}
    r["first"] = summary([timed(f"{tool} first run", cmd, repo, ran(repo, STAGES))])
    noops = []
    for i in range(REPS):
        if BREAK_NOOP and i == 1:
            # Demonstrates that the claim is checked: a changed dependency
            # makes the next "no-op" run stages, and the bench fails.
            with open(repo / "raw.csv", "a") as f:
                f.write("1.0,5.0\n")
        noops.append(timed(f"{tool} no-op #{i + 1}", cmd, repo, ran(repo, [])))
    r["noop"] = summary(noops)
    changes = []
    for i in range(max(1, REPS - 2)):
        (repo / "params.yaml").write_text(PARAMS.format(lr=0.02 + 0.01 * i))
        changes.append(timed(f"{tool} after train.lr change #{i + 1}", cmd, repo, ran(repo, ["train", "evaluate"])))
    r["param_change"] = summary(changes)
    return r


def keel_bench():
    repo = project("keel")
    (repo / "keel.yaml").write_text(KEEL_YAML)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "pipeline"], repo)
    r = bench("keel", [KEEL, "--quiet", "run"], repo)
    # The same without recording the run in the metadata store.
    repo2 = project("keel-notrack")
    (repo2 / "keel.yaml").write_text(KEEL_YAML)
    r["untracked"] = bench("keel --no-track", [KEEL, "--quiet", "run", "--no-track"], repo2)
    lock = (repo / "keel.lock").read_text()
    assert '"train.lr": "0.0' in lock, lock
    return r


def dvc_bench():
    repo = project("dvc")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    run([DVC, "init", "-q"], repo)
    run([DVC, "config", "core.analytics", "false"], repo)
    site = WORK / "dvc-site-cache"
    shutil.rmtree(site, ignore_errors=True)
    run([DVC, "config", "core.site_cache_dir", str(site)], repo)
    run([DVC, "add", "-q", "raw.csv"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "pipeline"], repo)
    return bench("dvc", [DVC, "repro", "-q"], repo)


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"4-stage pipeline on a {ROWS}-row CSV (seed {SEED}), {REPS} no-op repetitions", flush=True)
    print("keel:", flush=True)
    keel = keel_bench()
    print("dvc:", flush=True)
    dvc = dvc_bench()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result = {
        "benchmark": "pipeline: keel run vs dvc repro",
        "date_utc": stamp,
        "machine": {"nproc": os.cpu_count(), "uname": " ".join(os.uname())},
        "data": {"seed": SEED, "rows": ROWS, "stages": 4},
        "versions": {"keel": run([KEEL, "--version"], WORK).stdout.strip(),
                     "dvc": run([DVC, "--version"], WORK).stdout.strip()},
        "command": "bench/pipeline/run.sh",
        "keel": keel,
        "dvc": dvc,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"pipeline-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(REPO)}\n")
    print("| operation | keel wall (s) | keel CPU (s) | keel --no-track wall (s) | dvc wall (s) | dvc CPU (s) | dvc / keel (wall) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    # Each label's claim was checked on every sample by ran() above.
    for label, key in (("first run (4 stages run)", "first"), ("no-op (all 4 skipped), median", "noop"),
                       ("after one param change (train + evaluate rerun), median", "param_change")):
        k, u, d = keel[key], keel["untracked"][key], dvc[key]
        print(f"| {label} | {k['median_wall_s']:.3f} | {k['median_cpu_s']:.3f} | {u['median_wall_s']:.3f} | "
              f"{d['median_wall_s']:.2f} | {d['median_cpu_s']:.2f} | {d['median_wall_s'] / k['median_wall_s']:.0f}x |")
    loads = [s["load_1m"] for tool in (keel, dvc) for key in ("first", "noop", "param_change") for s in tool[key]["samples"]]
    print(f"\n1-minute load average during the run: {min(loads):.1f}-{max(loads):.1f}")


if __name__ == "__main__":
    main()
