"""Issue 19, round three: CPU and wall time of hashing one warm file in
several ways, each in its own process, in alternating rounds (the order
reverses every round), timed from fork to exit with CPU from wait4.

Variants: keel's `hash_file` (`b3 multi`), its tree hash with other leaf
sizes (`b3 leafN`), blake3's own memory-mapped hashing (`b3 mmap`), and,
with --mapped, bench/data/mapped_hash's pread and mapping variants (build it
first: cargo build --release --offline --manifest-path
bench/data/mapped_hash/Cargo.toml).

    python3 bench/data/hash_variants.py --file big.bin --b3 target/release/examples/b3 \\
        [--mapped bench/data/mapped_hash/target/release/mapped_hash] [--rounds 6] [--set leaves|mapped|all]

The file is read once first (warm). Writes bench/results/hash-variants-<UTC>.json
and prints medians.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results"


def variants(b3, mapped, which):
    found = []
    if which in ("leaves", "all"):
        found += [("b3 multi (keel)", [b3, "multi"])]
        found += [(f"b3 leaf{kib}", [b3, f"leaf{kib}"]) for kib in (64, 256, 512, 2048, 4096)]
        found += [("b3 mmap (blake3)", [b3, "mmap"])]
    if mapped and which in ("mapped", "all"):
        found += [
            ("pread 64 KiB, aligned", [mapped, "pread", "@", "64", "0"]),
            ("pread 64 KiB, buffer +16 B", [mapped, "pread", "@", "64", "16"]),
            ("pread 1 MiB, aligned", [mapped, "pread", "@", "1024", "0"]),
            ("pread 1 MiB, buffer +16 B", [mapped, "pread", "@", "1024", "16"]),
            ("pread 64 KiB, read only", [mapped, "pread", "@", "64", "0", "read"]),
            ("pread 1 MiB, read only", [mapped, "pread", "@", "1024", "0", "read"]),
            ("64 KiB buffer, hash only", [mapped, "pread", "@", "64", "0", "hash"]),
            ("1 MiB buffer, hash only", [mapped, "pread", "@", "1024", "0", "hash"]),
            ("map, populate 256 KiB", [mapped, "map", "@", "256", "1", "0"]),
            ("map, populate 1 MiB", [mapped, "map", "@", "1024", "1", "0"]),
            ("map, populate 2 MiB", [mapped, "map", "@", "2048", "1", "0"]),
            ("map, populate 4 MiB", [mapped, "map", "@", "4096", "1", "0"]),
            ("map 2 MiB, no populate (faults)", [mapped, "map", "@", "2048", "0", "0"]),
            ("map 2 MiB, aligned + HUGEPAGE", [mapped, "map", "@", "2048", "1", "0", "ah"]),
            ("map 2 MiB, SEQUENTIAL", [mapped, "map", "@", "2048", "1", "0", "s"]),
            ("map 2 MiB, munmap per region", [mapped, "map", "@", "2048", "1", "1"]),
            ("map 2 MiB, DONTNEED per region", [mapped, "map", "@", "2048", "1", "2"]),
            ("map 2 MiB, one mmap per region", [mapped, "map", "@", "2048", "1", "0", "r"]),
        ]
    return found


def timed(cmd):
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = proc.stdout.read().decode(errors="replace")
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed: {err[-2000:]}")
    return {"wall_s": round(wall, 4), "cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
            "digest": out.split()[0] if out.split() else ""}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--b3", required=True, help="keel-data's examples/b3")
    parser.add_argument("--mapped", help="bench/data/mapped_hash's binary")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--set", choices=("leaves", "mapped", "all"), default="all")
    parser.add_argument("--out")
    args = parser.parse_args()
    path = os.path.abspath(args.file)
    chosen = [(name, [path if part == "@" else part for part in cmd] if "@" in cmd else cmd + [path])
              for name, cmd in variants(os.path.abspath(args.b3),
                                        args.mapped and os.path.abspath(args.mapped), args.set)]
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
    runs = {name: [] for name, _ in chosen}
    loads = []
    for number in range(args.rounds):
        loads.append(round(os.getloadavg()[0], 2))
        for name, cmd in (chosen if number % 2 == 0 else list(reversed(chosen))):
            runs[name].append(timed(cmd))
    digests = {run["digest"] for name, values in runs.items() for run in values if "only" not in name}
    if len(digests) != 1:
        sys.exit(f"the variants disagree on the digest: {digests}")
    summary = {name: {"wall_s": round(statistics.median(r["wall_s"] for r in values), 4),
                      "cpu_s": round(statistics.median(r["cpu_s"] for r in values), 4),
                      "cpu_s_min": min(r["cpu_s"] for r in values)}
               for name, values in runs.items()}
    result = {"benchmark": "hashing one warm file, variants (issue 19, round three)",
              "file_bytes": os.path.getsize(path), "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
              "load_1m_per_round": loads, "runs": runs, "median": summary}
    out = Path(args.out) if args.out else RESULTS / f"hash-variants-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load per round: {loads}")
    for name, entry in summary.items():
        print(f"  {name:34s} wall {entry['wall_s']:.3f} s  CPU {entry['cpu_s']:.3f} s (min {entry['cpu_s_min']:.3f})")
    print(f"raw results: {out}")


if __name__ == "__main__":
    main()
