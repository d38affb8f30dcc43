"""keel vs DVC data-versioning benchmark driver (called by run.sh).

Generates the data with a fixed seed, then for each tool makes a fresh
git repo, copies the data in (untimed) and times each operation under
/usr/bin/time -v (wall, user+sys CPU, max RSS). Writes JSON under
bench/results/ and prints a Markdown table with keel/DVC ratios.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = REPO / "bench" / "results"
WORK = Path(os.environ.get("BENCH_WORK", RESULTS / "tmp" / "data"))
SEED = 20251127
SMALL_FILES = int(os.environ.get("SMALL_FILES", "20000"))
BIG_MIB = int(os.environ.get("BIG_MIB", "1024"))
KEEL = os.environ["KEEL_BIN"]
DVC = os.environ["DVC_BIN"]
B3 = os.environ["B3_BIN"]
ENV = dict(os.environ, DVC_NO_ANALYTICS="1", CI="true", GIT_AUTHOR_NAME="bench",
           GIT_AUTHOR_EMAIL="bench@example.invalid", GIT_COMMITTER_NAME="bench",
           GIT_COMMITTER_EMAIL="bench@example.invalid")


def generate(source: Path) -> None:
    marker = source / f".generated-{SEED}-{SMALL_FILES}-{BIG_MIB}"
    if marker.exists():
        return
    shutil.rmtree(source, ignore_errors=True)
    (source / "data").mkdir(parents=True)
    rng = random.Random(SEED)
    for index in range(SMALL_FILES):
        size = rng.randint(1024, 4096)
        (source / "data" / f"f{index:05d}.bin").write_bytes(rng.randbytes(size))
    with open(source / "big.bin", "wb") as big:
        for _ in range(BIG_MIB):
            big.write(rng.randbytes(1 << 20))
    marker.touch()


def run(cmd, cwd, check=True):
    return subprocess.run(cmd, cwd=cwd, env=ENV, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def timed(label, cmd, cwd):
    out = WORK / "time.txt"
    started = time.time()
    proc = subprocess.run(["/usr/bin/time", "-v", "-o", str(out)] + cmd, cwd=cwd, env=ENV,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.stderr.write(f"{label}: {' '.join(cmd)} failed ({proc.returncode})\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n")
        raise SystemExit(1)
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
    print(f"  {label:<28} wall {wall_s:7.2f} s  cpu {cpu:7.2f} s  rss {rss:6.0f} MiB  load {load:.1f}", flush=True)
    return {"wall_s": wall_s, "cpu_s": round(cpu, 3), "max_rss_mib": round(rss, 1), "load_1m": round(load, 2), "command": " ".join(cmd), "started": started}


def fresh_repo(tool: str, source: Path) -> Path:
    repo = WORK / tool
    if repo.exists():
        subprocess.run(["chmod", "-R", "u+w", str(repo)], check=False)
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    run(["git", "init", "-q"], repo)
    run(["cp", "-r", str(source / "data"), str(repo / "data")], repo)
    run(["cp", str(source / "big.bin"), str(repo / "big.bin")], repo)
    return repo


def rm(path: Path):
    subprocess.run(["rm", "-rf", str(path)], check=True)


def bench_keel(source: Path):
    repo = fresh_repo("keel", source)
    remote = WORK / "keel-remote"
    rm(remote)
    k = [KEEL, "--quiet"]
    run(k + ["init"], repo)
    run(k + ["data", "remote", "add", "origin", str(remote)], repo)
    r = {}
    r["add_small"] = timed("keel add 20k files", k + ["data", "add", "data"], repo)
    r["status_noop"] = timed("keel status (no-op)", k + ["data", "status"], repo)
    r["add_big"] = timed("keel add 1 GiB", k + ["data", "add", "big.bin"], repo)
    r["status_noop_all"] = timed("keel status (both, no-op)", k + ["data", "status"], repo)
    r["push_small"] = timed("keel push 20k files", k + ["data", "push", "data"], repo)
    r["push_big"] = timed("keel push 1 GiB", k + ["data", "push", "big.bin"], repo)
    r["push_noop"] = timed("keel push (all there)", k + ["data", "push"], repo)
    rm(repo / "data"); rm(repo / "big.bin")
    r["checkout_small"] = timed("keel checkout 20k files", k + ["data", "checkout", "data"], repo)
    first = next((repo / "data").iterdir())
    r["default_link"] = "hardlink" if first.stat().st_nlink > 1 else "copy (or reflink)"
    r["checkout_big"] = timed("keel checkout 1 GiB", k + ["data", "checkout", "big.bin"], repo)
    rm(repo / "data"); rm(repo / "big.bin")
    r["checkout_small_hardlink"] = timed("keel checkout 20k (hardlink)", k + ["data", "checkout", "data", "--link", "hardlink"], repo)
    r["checkout_big_hardlink"] = timed("keel checkout 1 GiB (hardlink)", k + ["data", "checkout", "big.bin", "--link", "hardlink"], repo)
    # Back to independent copies (the default as root) for the pull below.
    rm(repo / "data"); rm(repo / "big.bin")
    run(k + ["data", "checkout"], repo)
    r["status_after_checkout"] = timed("keel status after checkout", k + ["data", "status"], repo)
    rm(repo / "data"); rm(repo / "big.bin"); rm(repo / ".keel" / "cache")
    r["pull_small"] = timed("keel pull 20k files", k + ["data", "pull", "data"], repo)
    r["pull_big"] = timed("keel pull 1 GiB", k + ["data", "pull", "big.bin"], repo)
    status = run(k[:1] + ["data", "status"], repo).stdout
    assert "up to date" in status, status
    # A fresh clone's view: fetch into an empty cache, no workspace change.
    rm(repo / ".keel" / "cache")
    r["fetch_all"] = timed("keel fetch all (empty cache)", k + ["data", "fetch"], repo)
    rm(repo); rm(remote)
    return r


def bench_dvc(source: Path):
    repo = fresh_repo("dvc", source)
    remote = WORK / "dvc-remote"
    rm(remote)
    d = [DVC]
    run(d + ["init", "-q"], repo)
    run(d + ["config", "core.analytics", "false"], repo)
    run(d + ["config", "core.site_cache_dir", str(WORK / "dvc-site-cache")], repo)
    rm(WORK / "dvc-site-cache")
    run(d + ["remote", "add", "-d", "origin", str(remote)], repo)
    r = {}
    r["add_small"] = timed("dvc add 20k files", d + ["add", "-q", "data"], repo)
    r["status_noop"] = timed("dvc status (no-op)", d + ["status", "-q"], repo)
    r["add_big"] = timed("dvc add 1 GiB", d + ["add", "-q", "big.bin"], repo)
    r["status_noop_all"] = timed("dvc status (both, no-op)", d + ["status", "-q"], repo)
    r["push_small"] = timed("dvc push 20k files", d + ["push", "-q", "data.dvc"], repo)
    r["push_big"] = timed("dvc push 1 GiB", d + ["push", "-q", "big.bin.dvc"], repo)
    r["push_noop"] = timed("dvc push (all there)", d + ["push", "-q"], repo)
    rm(repo / "data"); rm(repo / "big.bin")
    r["checkout_small"] = timed("dvc checkout 20k files", d + ["checkout", "-q", "data.dvc"], repo)
    r["checkout_big"] = timed("dvc checkout 1 GiB", d + ["checkout", "-q", "big.bin.dvc"], repo)
    r["status_after_checkout"] = timed("dvc status after checkout", d + ["status", "-q"], repo)
    rm(repo / "data"); rm(repo / "big.bin"); rm(repo / ".dvc" / "cache")
    r["pull_small"] = timed("dvc pull 20k files", d + ["pull", "-q", "data.dvc"], repo)
    r["pull_big"] = timed("dvc pull 1 GiB", d + ["pull", "-q", "big.bin.dvc"], repo)
    rm(repo / ".dvc" / "cache")
    r["fetch_all"] = timed("dvc fetch all (empty cache)", d + ["fetch", "-q"], repo)
    rm(repo); rm(remote)
    return r


def ceiling(source: Path):
    big = str(source / "big.bin")
    run(["sh", "-c", f"cat '{big}' > /dev/null"], WORK)  # warm the page cache
    r = {}
    r["read_1gib_warm"] = timed("cat 1 GiB > /dev/null", ["sh", "-c", f"cat '{big}' > /dev/null"], WORK)
    r["blake3_1_thread"] = timed("BLAKE3 1 thread", [B3, "single", big], WORK)
    r["blake3_keel_multi"] = timed("BLAKE3 keel hash_file", [B3, "multi", big], WORK)
    # BLAKE3 alone (file read into memory first, only the hash timed; the
    # program prints its own time, /usr/bin/time's includes the read).
    for key, mode in [("blake3_memory_1_thread", "memory1"), ("blake3_memory_all_threads", "memoryN")]:
        out = run([B3, mode, big], WORK).stdout.split()
        r[key] = {"hash_s": float(out[2]), "gib_per_s": float(out[4]), "cpu_s": float(out[6])}
        print(f"  BLAKE3 in memory, {mode:<8}  hash {out[2]} s  {out[4]} GiB/s  {out[6]} CPU-s", flush=True)
    # What `add` must also do as root: write a 1 GiB copy into the page cache.
    copy = WORK / "copy.bin"
    rm(copy)
    r["copy_1gib_warm"] = timed("cp 1 GiB (copy_file_range)", ["cp", big, str(copy)], WORK)
    rm(copy)
    return r


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    source = WORK / "source"
    print(f"generating {SMALL_FILES} small files + {BIG_MIB} MiB (seed {SEED}) in {source}", flush=True)
    generate(source)
    print("machine ceiling:", flush=True)
    ceil = ceiling(source)
    print("keel:", flush=True)
    keel = bench_keel(source)
    print("dvc:", flush=True)
    dvc = bench_dvc(source)
    dvc_version = run([DVC, "--version"], WORK).stdout.strip()
    keel_version = run([KEEL, "--version"], WORK).stdout.strip()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result = {
        "benchmark": "data versioning: keel vs dvc",
        "date_utc": stamp,
        "machine": {"nproc": os.cpu_count(), "uname": " ".join(os.uname())},
        "data": {"seed": SEED, "small_files": SMALL_FILES, "small_sizes": "1024-4096 bytes", "big_mib": BIG_MIB},
        "versions": {"keel": keel_version, "dvc": dvc_version},
        "command": "bench/data/run.sh",
        "ceiling": ceil,
        "keel": keel,
        "dvc": dvc,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"data-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(REPO)}\n")
    n = f"{SMALL_FILES:,}"
    big = f"{BIG_MIB} MiB" if BIG_MIB != 1024 else "1 GiB"
    rows = [
        (f"add {n} small files", "add_small"),
        (f"status, nothing changed ({n})", "status_noop"),
        (f"add {big} file", "add_big"),
        ("status, nothing changed (both)", "status_noop_all"),
        (f"push {n} files (local remote)", "push_small"),
        (f"push {big}", "push_big"),
        ("push, all already there", "push_noop"),
        (f"checkout {n} after delete (default link)", "checkout_small"),
        (f"checkout {big} after delete (default link)", "checkout_big"),
        ("status after checkout", "status_after_checkout"),
        (f"pull {n} files (empty cache)", "pull_small"),
        (f"pull {big} (empty cache)", "pull_big"),
        ("fetch everything into an empty cache", "fetch_all"),
    ]
    print(f"{SMALL_FILES} files of 1-4 KiB, one {BIG_MIB} MiB file; keel default link = reflink,hardlink,copy minus hardlink where read-only modes do not hold (here: {keel['default_link']!r}); dvc default = reflink,copy\n")
    print("| operation | keel wall s | keel CPU s | keel RSS MiB | dvc wall s | dvc CPU s | dvc RSS MiB | wall ratio dvc/keel | CPU ratio dvc/keel |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, key in rows:
        k, v = keel[key], dvc[key]
        print(f"| {name} | {k['wall_s']:.2f} | {k['cpu_s']:.2f} | {k['max_rss_mib']:.0f} | {v['wall_s']:.2f} | {v['cpu_s']:.2f} | {v['max_rss_mib']:.0f} | {v['wall_s'] / max(k['wall_s'], 0.005):.1f}x | {v['cpu_s'] / max(k['cpu_s'], 0.005):.1f}x |")
    for name, key in [(f"checkout {n}, keel --link hardlink vs dvc default", "checkout_small_hardlink"), (f"checkout {big}, keel --link hardlink vs dvc default", "checkout_big_hardlink")]:
        k = keel[key]
        base = dvc[key.replace("_hardlink", "")]
        print(f"| {name} | {k['wall_s']:.2f} | {k['cpu_s']:.2f} | {k['max_rss_mib']:.0f} | {base['wall_s']:.2f} | {base['cpu_s']:.2f} | {base['max_rss_mib']:.0f} | {base['wall_s'] / max(k['wall_s'], 0.005):.1f}x | {base['cpu_s'] / max(k['cpu_s'], 0.005):.1f}x |")
    print(f"\nMachine ceiling ({big} file, warm page cache):\n")
    print("| measurement | wall s | CPU s | GiB/s (wall) |")
    print("|---|---:|---:|---:|")
    gib = BIG_MIB / 1024
    for name, key in [("cat > /dev/null", "read_1gib_warm"), ("BLAKE3, 1 thread, 1 MiB reads", "blake3_1_thread"), ("BLAKE3, keel hash_file (multi-thread)", "blake3_keel_multi")]:
        c = ceil[key]
        print(f"| {name} | {c['wall_s']:.2f} | {c['cpu_s']:.2f} | {gib / max(c['wall_s'], 0.005):.2f} |")
    for name, key in [("BLAKE3 in memory, 1 thread (hash only)", "blake3_memory_1_thread"), ("BLAKE3 in memory, all threads (hash only)", "blake3_memory_all_threads")]:
        c = ceil[key]
        print(f"| {name} | {c['hash_s']:.2f} | {c['cpu_s']:.2f} | {c['gib_per_s']:.2f} |")
    c = ceil["copy_1gib_warm"]
    print(f"| cp (copy_file_range into a new file) | {c['wall_s']:.2f} | {c['cpu_s']:.2f} | {gib / max(c['wall_s'], 0.005):.2f} |")
    print(f"| keel add {big} (hash + link + start-up) vs warm read | {keel['add_big']['wall_s']:.2f} | {keel['add_big']['cpu_s']:.2f} | {keel['add_big']['wall_s'] / max(ceil['read_1gib_warm']['wall_s'], 0.005):.1f}x read time |")


if __name__ == "__main__":
    main()
