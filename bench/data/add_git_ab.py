"""What the `git ls-files` check costs a large `keel data add` (issue 19,
round three): the same add of one large file as user `nobody`, in fresh
git + keel projects, alternating between the normal PATH and a PATH without
git (keel then skips the check: no git, nothing tracked), timed from fork to
exit with CPU from wait4 (children included, so git's own CPU counts).

    python3 bench/data/add_git_ab.py --file big.bin --keel target/release/keel [--rounds 8]

Must run as root (switches to nobody). Prints medians; writes
bench/results/add-git-ab-<UTC>.json.
"""

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from add_vs_read import fresh_project, run, timed

RESULTS = Path(__file__).resolve().parent.parent / "results"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--keel", required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--work", default=os.environ.get("TMPDIR", "/tmp"))
    parser.add_argument("--out")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the adds run as nobody)")
    keel = os.path.abspath(args.keel)
    nobody = pwd.getpwnam("nobody")
    work = Path(args.work).resolve() / f"keel-add-git-ab-{os.getpid()}"
    work.mkdir(parents=True)
    os.chown(work, nobody.pw_uid, nobody.pw_gid)
    env = dict(os.environ, HOME=str(work), GIT_CONFIG_NOSYSTEM="1", CI="true")
    without_git = dict(env, PATH="/nonexistent")

    def timed_as_nobody(cmd, cwd, cmd_env):
        # add_vs_read's clock (fork to exit, CPU from wait4), user and system CPU summed.
        times = timed(cmd, cwd, nobody, cmd_env)
        return {"wall_s": times["wall_s"], "cpu_s": round(times["user_s"] + times["sys_s"], 4)}

    runs = {"cat": [], "add with git": [], "add without git": []}
    loads = []
    try:
        big = work / "big.bin"
        shutil.copyfile(args.file, big)
        os.chown(big, nobody.pw_uid, nobody.pw_gid)
        os.sync()
        for number in range(args.rounds):
            loads.append(round(os.getloadavg()[0], 2))
            labels = ["add with git", "add without git"]
            for label in labels if number % 2 == 0 else reversed(labels):
                project = fresh_project(work, f"{label.replace(' ', '-')}-{number}", keel, nobody, env)
                os.rename(big, project / "big.bin")
                big = project / "big.bin"
                os.chmod(big, 0o644)
                run(["cat", "big.bin"], project, nobody, env)
                runs["cat"].append(timed_as_nobody(["cat", "big.bin"], project, env))
                runs[label].append(timed_as_nobody([keel, "--quiet", "data", "add", "big.bin"], project,
                                                   env if label == "add with git" else without_git))
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    summary = {label: {field: round(statistics.median(r[field] for r in values), 4) for field in ("wall_s", "cpu_s")}
               for label, values in runs.items()}
    out = Path(args.out) if args.out else RESULTS / f"add-git-ab-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "keel data add of one large file with and without the git check",
                               "file_bytes": os.path.getsize(args.file), "keel": keel, "load_1m_per_round": loads,
                               "runs": runs, "median": summary}, indent=2) + "\n")
    print(f"load per round: {loads}")
    for label, entry in summary.items():
        print(f"  {label:16s} wall {entry['wall_s']:.4f} s  CPU {entry['cpu_s']:.4f} s")
    print(f"raw results: {out}")


if __name__ == "__main__":
    main()
