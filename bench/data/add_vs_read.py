"""`keel data add` of one large file against a warm read of it (issue 19's
goal: the add within 1.5x of `cat FILE > /dev/null` with the page cache warm),
measured in one run, in alternating rounds.

Each round, as user `nobody` (the default link is then a read-only hardlink,
so the add is hash + link) in a fresh git + keel project that nobody owns,
the same file (moved from project to project: one inode, its pages stay in
the page cache) is read once to warm it, then timed: `cat FILE > /dev/null`,
`b3 multi FILE` (keel's `hash_file` alone, in its own process), `b3 mmap FILE`
(the blake3 crate's memory-mapped hashing, `hash_file` before issue 19), and `keel
--quiet data add FILE` with each binary given (A/B, the order alternating
from round to round). With --root, the same round also times, as root, `cp`
of the file and `keel data add` of it (root copies into the cache; the copy
is deleted before writeback starts).

Every command is timed from fork to exit (wall, user and system CPU from
wait4), so the start-up of each process counts, as under /usr/bin/time.

    python3 bench/data/add_vs_read.py --file big.bin --keel main=/work/rel-target/release/keel \
        --keel new=target/release/keel --b3 target/release/examples/b3 [--rounds 5] [--root]

Must run as root (it switches to nobody for the user part). Writes
bench/results/add-vs-read-<UTC>.json and prints a table of medians.
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

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"


def timed(cmd, cwd, user=None, env=None, stdout=subprocess.DEVNULL):
    """Runs cmd; returns wall, user and system seconds of the child."""
    kwargs = {}
    if user is not None:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=stdout, stderr=subprocess.PIPE, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {err[-2000:]}")
    return {"wall_s": round(wall, 4), "user_s": round(usage.ru_utime, 4), "sys_s": round(usage.ru_stime, 4)}


def run(cmd, cwd, user=None, env=None):
    kwargs = {}
    if user is not None:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, **kwargs)


def remove(path: Path):
    if path.exists():
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
        shutil.rmtree(path)


def fresh_project(work: Path, name: str, keel: str, user, env) -> Path:
    project = work / name
    remove(project)
    project.mkdir()
    if user is not None:
        os.chown(project, user.pw_uid, user.pw_gid)
    run(["git", "init", "-q"], project, user, env)
    run([keel, "--quiet", "init"], project, user, env)
    return project


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True, help="the large file (copied once into the work folder)")
    parser.add_argument("--keel", action="append", required=True, metavar="NAME=PATH",
                        help="a keel binary to time (repeat for A/B)")
    parser.add_argument("--b3", required=True, help="keel-data's examples/b3 binary")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--root", action="store_true", help="also time cp and the add as root")
    parser.add_argument("--work", default=os.environ.get("TMPDIR", "/tmp"), help="where the work folder goes")
    parser.add_argument("--out", help="raw result file (default bench/results/add-vs-read-<UTC>.json)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the user part switches to `nobody`, the --root part stays root")
    binaries = []
    for spec in args.keel:
        name, _, path = spec.partition("=")
        binaries.append((name, os.path.abspath(path)))
    nobody = pwd.getpwnam("nobody")
    work = Path(args.work).resolve() / f"keel-add-vs-read-{os.getpid()}"
    work.mkdir(parents=True)
    os.chown(work, nobody.pw_uid, nobody.pw_gid)
    env = dict(os.environ, HOME=str(work), GIT_CONFIG_NOSYSTEM="1", CI="true")
    env.pop("KEEL_LOCK_TIMEOUT", None)
    b3 = os.path.abspath(args.b3)
    try:
        # One copy of the file, owned by nobody, written back before timing.
        big = work / "big.bin"
        shutil.copyfile(args.file, big)
        os.chown(big, nobody.pw_uid, nobody.pw_gid)
        os.sync()
        rounds = []
        for number in range(args.rounds):
            order = binaries if number % 2 == 0 else list(reversed(binaries))
            record = {"round": number + 1, "load_1m_before": round(os.getloadavg()[0], 2), "user": {}, "root": {}}
            for name, keel in order:
                # From the last project into a fresh one. Old projects stay
                # until the end: on ext4 without a journal, creating inodes
                # right after deleting many is slow (see BENCHMARKS.md), and
                # a deleted project's cache folders would slow the next add.
                project = fresh_project(work, f"user-{name}-{number + 1}", keel, nobody, env)
                os.rename(big, project / "big.bin")
                big = project / "big.bin"
                os.chmod(big, 0o644)  # the last add left it read-only
                run(["cat", "big.bin"], project, nobody, env)  # warm
                figures = {
                    "cat": timed(["cat", "big.bin"], project, nobody, env),
                    "b3_multi": timed([b3, "multi", "big.bin"], project, nobody, env),
                    "b3_mmap": timed([b3, "mmap", "big.bin"], project, nobody, env),
                    "add": timed([keel, "--quiet", "data", "add", "big.bin"], project, nobody, env),
                }
                figures["metafile"] = (project / "big.bin.keel").read_text()
                record["user"][name] = figures
            if args.root:
                for name, keel in order:
                    project = fresh_project(work, f"root-{name}-{number + 1}", keel, None, env)
                    os.link(big, project / "big.bin")
                    run(["cat", "big.bin"], project, None, env)
                    copied = timed(["cp", "big.bin", "copy.bin"], project, None, env)
                    os.unlink(project / "copy.bin")  # its dirty pages go before the add
                    record["root"][name] = {
                        "cp": copied,
                        "add": timed([keel, "--quiet", "data", "add", "big.bin"], project, None, env),
                    }
                    # The cache's copy goes at once (its dirty pages with it,
                    # before writeback starts); the folders stay, as above.
                    for copy in (project / ".keel" / "cache").rglob("*"):
                        if copy.is_file() and copy.stat().st_size == os.path.getsize(big):
                            copy.unlink()
                    os.chmod(big, 0o644)
            record["load_1m_after"] = round(os.getloadavg()[0], 2)
            rounds.append(record)
            line = [f"round {number + 1} (load {record['load_1m_before']:.2f})"]
            for name, _ in binaries:
                user = record["user"][name]
                line.append(f"{name}: cat {user['cat']['wall_s']:.3f} hash {user['b3_multi']['wall_s']:.3f} "
                            f"mmap-hash {user['b3_mmap']['wall_s']:.3f} "
                            f"add {user['add']['wall_s']:.3f} ({user['add']['wall_s'] / user['cat']['wall_s']:.2f}x)")
                if args.root:
                    root = record["root"][name]
                    line.append(f"root cp {root['cp']['wall_s']:.3f} add {root['add']['wall_s']:.3f}")
            print("  ".join(line), flush=True)
    finally:
        remove(work)

    def median(values):
        return round(statistics.median(values), 4)

    summary = {}
    for name, _ in binaries:
        users = [r["user"][name] for r in rounds]
        entry = {
            f"user_{what}_{field}": median([u[what][field] for u in users])
            for what in ("cat", "b3_multi", "b3_mmap", "add") for field in ("wall_s", "user_s", "sys_s")
        }
        entry["user_add_over_cat"] = median([u["add"]["wall_s"] / u["cat"]["wall_s"] for u in users])
        entry["user_b3_over_cat"] = median([u["b3_multi"]["wall_s"] / u["cat"]["wall_s"] for u in users])
        entry["user_b3_mmap_over_cat"] = median([u["b3_mmap"]["wall_s"] / u["cat"]["wall_s"] for u in users])
        if args.root:
            roots = [r["root"][name] for r in rounds]
            for what in ("cp", "add"):
                for field in ("wall_s", "user_s", "sys_s"):
                    entry[f"root_{what}_{field}"] = median([x[what][field] for x in roots])
            entry["root_add_over_cp"] = median([x["add"]["wall_s"] / x["cp"]["wall_s"] for x in roots])
        summary[name] = entry
    result = {
        "benchmark": "keel data add of one large file vs a warm read (issue 19)",
        "file_bytes": os.path.getsize(args.file),
        "binaries": dict(binaries),
        "b3": b3,
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
        "rounds": rounds,
        "median": summary,
    }
    out = Path(args.out) if args.out else RESULTS / f"add-vs-read-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nmedians over {len(rounds)} rounds (wall s; user+sys CPU s):")
    for name, entry in summary.items():
        print(f"  {name}: cat {entry['user_cat_wall_s']:.3f}  hash_file {entry['user_b3_multi_wall_s']:.3f} "
              f"({entry['user_b3_over_cat']:.2f}x)  blake3 mmap {entry['user_b3_mmap_wall_s']:.3f} "
              f"({entry['user_b3_mmap_over_cat']:.2f}x)  add as nobody {entry['user_add_wall_s']:.3f} "
              f"({entry['user_add_user_s'] + entry['user_add_sys_s']:.3f} CPU) = {entry['user_add_over_cat']:.2f}x the read")
        if args.root:
            print(f"  {name}: as root cp {entry['root_cp_wall_s']:.3f}  add {entry['root_add_wall_s']:.3f} "
                  f"= {entry['root_add_over_cp']:.2f}x cp")
    print(f"raw results: {out}")


if __name__ == "__main__":
    main()
