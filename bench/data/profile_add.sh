#!/usr/bin/env bash
# Where `keel data add` of one large file spends its time as an ordinary user
# (issue 19): a fresh git + keel project owned by `nobody`, FILE copied in
# (owned by nobody, synced, read once to warm the page cache), then one
# `keel --quiet data add` as nobody under the chosen tool:
#   --time    /usr/bin/time (wall, user, sys, faults)          [default]
#   --strace  strace -f -tt -T (the timeline, into OUT.strace) and strace -f -c
#             (counts and time per system call); strace slows the run, so its
#             wall time is not a figure
#   --perf    perf record -g (into OUT.perf.data), then the top symbols
#             (children included) and the top self-time symbols
#   --phases  perf trace (no ptrace, so the timing holds) of a few system
#             calls: keel's exec to its project lock (start-up), the lock to
#             the first linkat (scan and hash), that linkat to exit_group
#             (link, metafile, .gitignore, stat cache, exit); into OUT.trace
#
#   KEEL_BIN=target/release/keel bash bench/data/profile_add.sh FILE [--time|--strace|--perf] [OUT]
#
# Runs as root (switches to nobody with setpriv); needs git, /usr/bin/time,
# strace / perf (and python3 for --phases) for those modes. Prints the load average before and after.
set -euo pipefail
file="${1:?usage: profile_add.sh FILE [--time|--strace|--perf] [OUT]}"
mode="${2:---time}"
out="${3:-/tmp/keel-add-profile}"
source "$(dirname "${BASH_SOURCE[0]}")/../lib/keel_bin.sh"
[ "$(id -u)" = 0 ] || { echo "run as root (the add runs as nobody)" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/keel-add-profile.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
chown nobody:nogroup "$work"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- env HOME="$work" "$@"; }
cd "$work"
as_nobody git init -q
as_nobody "$keel" --quiet init >/dev/null
cp "$file" big.bin
chown nobody:nogroup big.bin
sync
as_nobody cat big.bin >/dev/null
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
case "$mode" in
  --time)
    as_nobody /usr/bin/time -f "add: %e s wall, %U s user, %S s sys, %R minor faults, %c involuntary switches" \
      "$keel" --quiet data add big.bin ;;
  --strace)
    strace -u nobody -E HOME="$work" -f -tt -T -o "$out.strace" "$keel" --quiet data add big.bin
    echo "timeline: $out.strace ($(wc -l <"$out.strace") lines)"
    # Again, counted (a fresh project: the first add left the file linked).
    rm -rf .keel .gitignore big.bin.keel .git
    chmod u+w big.bin
    as_nobody git init -q
    as_nobody "$keel" --quiet init >/dev/null
    strace -u nobody -E HOME="$work" -f -c -o "$out.strace-c" "$keel" --quiet data add big.bin
    head -30 "$out.strace-c" ;;
  --perf)
    perf record -g -o "$out.perf.data" -- setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
      env HOME="$work" "$keel" --quiet data add big.bin 2>&1 | tail -2
    perf report -i "$out.perf.data" --children --stdio --percent-limit 3 2>/dev/null | grep -v '^$' | head -60
    echo "--- self time:"
    perf report -i "$out.perf.data" --no-children --stdio --sort sym --percent-limit 1 -g none 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -30 ;;
  --phases)
    perf trace -f -e 'execve,flock,linkat,exit_group' -o "$out.trace" -- setpriv --reuid=nobody \
      --regid=nogroup --clear-groups -- env HOME="$work" "$keel" --quiet data add big.bin
    python3 - "$out.trace" <<'PY'
import sys
rows = [line for line in open(sys.argv[1]) if line.strip() and not line.strip().startswith("?")]
at = lambda line: float(line.split()[0])
exec_ = [at(r) for r in rows if "keel/" in r and "execve" in r][0]
lock = [at(r) for r in rows if "flock" in r][0]
link = [at(r) for r in rows if "linkat" in r][0]
end = [at(r) for r in rows if "keel/" in r and "exit_group" in r][-1]
print(f"start-up {lock - exec_:.1f} ms, scan + hash {link - lock:.1f} ms, "
      f"link + writes + exit {end - link:.1f} ms, total {end - exec_:.1f} ms")
PY
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
