"""Writes bench.py's small files (same seed and sizes) into a folder:
python3 bench/data/small_files.py OUT N  ->  OUT/f00000.bin ... 1-4 KiB each.
Shared by profile_pull.sh and ab_pull.sh."""

import random
import sys
from pathlib import Path

out, n = Path(sys.argv[1]), int(sys.argv[2])
out.mkdir(parents=True)
rng = random.Random(20251127)  # bench.py's seed and sizes
for index in range(n):
    (out / f"f{index:05d}.bin").write_bytes(rng.randbytes(rng.randint(1024, 4096)))
