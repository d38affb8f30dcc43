#!/usr/bin/env bash
# `keel data add` of one large file into a fresh project, timed (issue 19):
# the file is copied into a new git repo, synced (no writeback of it left
# to compete) and read once (warm page cache),
# then `keel --quiet data add` runs under /usr/bin/time. As root the cache
# gets a copy (see ARCHITECTURE.md's invariants), so compare with `cp`.
#
#   KEEL_BIN=target/release/keel bash bench/data/add_big.sh FILE
#
# For the issue's ratio (the add as an ordinary user against a warm `cat`,
# hash_file alone, A/B of two builds, root against `cp`, in one run) use
# bench/data/add_vs_read.py; for a profile of one add, profile_add.sh.
set -euo pipefail
file="${1:?usage: add_big.sh FILE}"
source "$(dirname "${BASH_SOURCE[0]}")/../lib/keel_bin.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/keel-add.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
git init -q
"$keel" --quiet init >/dev/null
cp "$file" big.bin
sync
cat big.bin >/dev/null
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "add: %e s wall, %U s user, %S s sys" "$keel" --quiet data add big.bin
