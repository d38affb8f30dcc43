#!/usr/bin/env bash
# The release keel binary a benchmark runs, shared by bench/data's scripts.
# Source it; it sets `keel` to $KEEL_BIN, else $CARGO_TARGET_DIR (or the
# repository's target/) release/keel, and stops with a hint when there is
# no such binary.
keel="${KEEL_BIN:-${CARGO_TARGET_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target}/release/keel}"
[ -x "$keel" ] || { echo "no keel binary at $keel (cargo build --release -p keel)" >&2; exit 1; }
