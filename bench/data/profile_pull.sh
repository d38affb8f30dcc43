#!/usr/bin/env bash
# Where `keel data pull` of many small files spends its time (issue 19): a
# project with SMALL_FILES files of 1-4 KiB (bench.py's seed and sizes),
# added and pushed to a local-directory remote, then the workspace copy and
# the cache deleted and pulled back, --runs times, each timed under
# /usr/bin/time. With --perf the last pull runs under `perf record -g` and
# the top symbols (children included) are printed; with --strace under
# `strace -c -f` (system call counts and time; strace slows the run, so its
# wall time is not a figure). --settle S waits S seconds after the deletion
# (ext4 without a journal skips inodes freed in the last 60 s when it
# allocates new ones, scanning past each of them; see BENCHMARKS.md).
#
#   KEEL_BIN=target/release/keel bash bench/data/profile_pull.sh [--runs 3] [--perf] [--strace] [--settle 65]
#
# Needs python3, git, /usr/bin/time; perf (Debian: linux-perf) / strace for
# the profiles. Prints the load average before and after.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/keel_bin.sh"
runs=3 perf=0 strace=0 settle=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --perf) perf=1; shift ;;
    --strace) strace=1; shift ;;
    --settle) settle="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
files="${SMALL_FILES:-20000}"
work="$(mktemp -d "${TMPDIR:-/tmp}/keel-pull.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$(dirname "${BASH_SOURCE[0]}")/small_files.py" "$work/repo/data" "$files"
cd "$work/repo"
git init -q
"$keel" --quiet init >/dev/null
"$keel" --quiet data remote add origin "$work/remote" >/dev/null
"$keel" --quiet data add data >/dev/null
"$keel" --quiet data push data >/dev/null
reset() { chmod -R u+w data; rm -rf data .keel/cache; sync; sleep "$settle"; }
for run in $(seq 1 "$runs"); do
  reset
  /usr/bin/time -f "pull $files files: %e s wall, %U s user, %S s sys, %M KiB max RSS" \
    "$keel" --quiet data pull data
done
if [ "$perf" = 1 ]; then
  reset
  perf record -F 4000 -g -o "$work/perf.data" -- "$keel" --quiet data pull data 2>/dev/null >/dev/null
  perf report -i "$work/perf.data" --children --no-demangle --stdio --percent-limit 3 \
    --sort symbol -g none 2>/dev/null | grep -v '^$' | head -60
fi
if [ "$strace" = 1 ]; then
  reset
  strace -c -f -o "$work/strace.txt" "$keel" --quiet data pull data >/dev/null
  head -30 "$work/strace.txt"
fi
"$keel" data status data
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
