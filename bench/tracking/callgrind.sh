#!/usr/bin/env bash
# Instructions the keel server executes per tracking call (issue 19), counted
# by callgrind: exact and independent of the machine's load, so two builds
# compare in any conditions (wall-time ratios against MLflow: raw_http.sh).
# The server runs under valgrind on SQLite; the raw-HTTP bench's data is set up,
# the counters are zeroed, N calls of the operation are made (search: 109 of
# 200 runs, as raw_http.py's; log_batch: 1,000 new metrics per call), then the
# counters are dumped. Every thread of the server counts, the background WAL
# checkpointer included.
#
#   bash bench/tracking/callgrind.sh [--keel-bin PATH] [--op search|log_batch] [--calls N]
#        [--out FILE]   (keeps the callgrind dump for callgrind_annotate)
#
# Needs valgrind (Debian: valgrind). Prints one line per build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
keel="${KEEL_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/keel}"
op=search
calls=20
out=
while [ $# -gt 0 ]; do
    case "$1" in
        --keel-bin) keel="$2"; shift 2 ;;
        --op) op="$2"; shift 2 ;;
        --calls) calls="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -x "$keel" ] || { echo "no keel binary at $keel (cargo build --release -p keel)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
python="$(bash "$root/tests/python/ensure_venv.sh")/bin/python"
work="$(mktemp -d)"
port="$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
(cd "$work" && exec valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$work/cg.out" \
    "$keel" server --port "$port" --backend-store-uri "sqlite:///$work/keel.db" \
    --artifacts-destination "$work/artifacts" >"$work/server.log" 2>&1) &
server=$!
trap 'kill $server 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
sleep 2
# valgrind runs keel as the same process, so $server is the server's pid.
"$python" "$here/callgrind_drive.py" "$port" "$op" "$calls" "$server"
dump="$(ls -t "$work"/cg.out* | head -1)"
[ -z "$out" ] || cp "$dump" "$out"
total="$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")"
echo "$op: $((total / calls)) instructions per call ($calls calls, $keel)"
