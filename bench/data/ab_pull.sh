#!/usr/bin/env bash
# A/B of bench.py's "pull 20,000 files into an empty cache" step between
# keel binaries, alternating them round by round (issue 19). Each
# measurement starts from a fresh project made the way bench.py makes it:
# the SMALL_FILES files of 1-4 KiB (bench.py's seed and sizes) copied in,
# `keel init`, `data add` (a loose cache), `data push` to a local-directory
# remote; then the workspace copy and the cache are deleted and
# `keel --quiet data pull data` is timed under /usr/bin/time.
#
#   bash bench/data/ab_pull.sh [--rounds 3] [--loop] KEEL_BIN_A KEEL_BIN_B ...
#
# The time of such a pull is mostly ext4 allocating inodes past the ones
# just freed (BENCHMARKS.md), so it depends on what the disk went through
# in the last minutes. --loop (root only) makes every measurement on a
# freshly made 4 GiB journal-less ext4 on a loop device instead, so each
# binary meets the same disk state (slower in absolute terms: two flex
# groups only). Prints one line per measurement with the load average.
set -euo pipefail
rounds=3 loop=0
bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --loop) loop=1; shift ;;
    *) bins+=("$(realpath "$1")"); shift ;;
  esac
done
[ "${#bins[@]}" -gt 0 ] || { echo "usage: $0 [--rounds N] [--loop] KEEL_BIN..." >&2; exit 2; }
files="${SMALL_FILES:-20000}"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/keel-ab-pull.XXXXXX")"
mnt="$scratch/mnt"
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt"; fi
  chmod -R u+w "$scratch" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
python3 "$(dirname "${BASH_SOURCE[0]}")/small_files.py" "$scratch/source" "$files"
for round in $(seq 1 "$rounds"); do
  for keel in "${bins[@]}"; do
    if [ "$loop" = 1 ]; then
      if mountpoint -q "$mnt"; then umount "$mnt"; fi
      truncate -s 4G "$scratch/fs.img"
      mkfs.ext4 -q -O ^has_journal -F "$scratch/fs.img"
      mkdir -p "$mnt"; mount -o loop "$scratch/fs.img" "$mnt"
      work="$mnt"
    else
      work="$scratch/work"
      chmod -R u+w "$work" 2>/dev/null || true
      rm -rf "$work"
    fi
    mkdir -p "$work/repo"
    cp -r "$scratch/source" "$work/repo/data"
    cd "$work/repo"
    git init -q
    "$keel" --quiet init >/dev/null
    "$keel" --quiet data remote add origin "$work/remote" >/dev/null
    "$keel" --quiet data add data >/dev/null
    "$keel" --quiet data push data >/dev/null
    chmod -R u+w data .keel/cache
    rm -rf data .keel/cache
    /usr/bin/time -f "$keel round $round: %e s wall, %U s user, %S s sys, load $(cut -d' ' -f1-3 /proc/loadavg)" \
      "$keel" --quiet data pull data
    "$keel" data status data | grep -q "up to date" || echo "  (status not clean after the pull)"
    cd /
  done
done
