#!/usr/bin/env bash
# Start or stop a local S3-compatible server (moto) for keel's S3 tests.
#
#   eval "$(tests/s3/moto.sh start)"   # prints export lines on stdout
#   cargo test -p keel-artifacts       # runs the S3 suite against it
#   tests/s3/moto.sh stop
#
# start: picks a free port on 127.0.0.1, starts `moto_server` from the pinned
# Python venv (tests/python/ensure_venv.sh, or $KEEL_MOTO_VENV if set) in the
# background, waits until it answers HTTP, then prints
# `export KEEL_TEST_S3_ENDPOINT=http://127.0.0.1:PORT` and the AWS_* settings
# (test/test credentials, us-east-1, the endpoint) that make
# `ArtifactStore::open("s3://...")` talk to it. If a server started by this
# script is still running, its settings are printed again instead.
# stop: kills the server recorded in the pid file (and only that process).
# State (pid, port, log) lives in ${KEEL_MOTO_DIR:-${TMPDIR:-/tmp}/keel-moto}.
# Only the export lines go to stdout; everything else goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state_dir="${KEEL_MOTO_DIR:-${TMPDIR:-/tmp}/keel-moto}"
pid_file="$state_dir/moto.pid"
port_file="$state_dir/moto.port"
log_file="$state_dir/moto.log"
ready_timeout_s=60

log() { printf 'moto.sh: %s\n' "$*" >&2; }

# True if the pid file names a live moto_server process.
running() {
    [ -f "$pid_file" ] || return 1
    local pid
    pid="$(cat "$pid_file")"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q moto_server
}

print_exports() {
    local endpoint="http://127.0.0.1:$1"
    printf 'export KEEL_TEST_S3_ENDPOINT=%s\n' "$endpoint"
    printf 'export AWS_ACCESS_KEY_ID=test\n'
    printf 'export AWS_SECRET_ACCESS_KEY=test\n'
    printf 'export AWS_REGION=us-east-1\n'
    printf 'export AWS_DEFAULT_REGION=us-east-1\n'
    printf 'export AWS_ENDPOINT_URL=%s\n' "$endpoint"
}

venv_dir() {
    if [ -n "${KEEL_MOTO_VENV:-}" ]; then
        printf '%s\n' "$KEEL_MOTO_VENV"
    else
        "$repo/tests/python/ensure_venv.sh"
    fi
}

free_port() {
    "$1" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

start() {
    mkdir -p "$state_dir"
    if running && [ -f "$port_file" ]; then
        log "moto_server already running (pid $(cat "$pid_file"))"
        print_exports "$(cat "$port_file")"
        return 0
    fi
    local venv python moto port pid waited
    venv="$(venv_dir)"
    python="$venv/bin/python"
    moto="$venv/bin/moto_server"
    if [ ! -x "$moto" ]; then
        log "no moto_server in $venv (is moto[server] in tests/python/requirements.txt?)"
        exit 1
    fi
    port="$(free_port "$python")"
    # No stdin/stdout/stderr shared with the caller, so `$(moto.sh start)`
    # returns while the server keeps running.
    setsid "$moto" -H 127.0.0.1 -p "$port" </dev/null >"$log_file" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$pid_file"
    printf '%s\n' "$port" >"$port_file"
    waited=0
    until "$python" -c 'import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass  # any HTTP answer means the server is up
' "http://127.0.0.1:$port/" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "moto_server exited during start-up; log follows"
            cat "$log_file" >&2
            rm -f "$pid_file" "$port_file"
            exit 1
        fi
        if [ "$waited" -ge $((ready_timeout_s * 2)) ]; then
            log "moto_server did not answer within ${ready_timeout_s}s; stopping it"
            stop
            exit 1
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    log "moto_server ready on 127.0.0.1:$port (pid $pid, log $log_file)"
    print_exports "$port"
}

stop() {
    if ! running; then
        log "no moto_server recorded in $pid_file"
        rm -f "$pid_file" "$port_file"
        return 0
    fi
    local pid i
    pid="$(cat "$pid_file")"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "moto_server (pid $pid) ignored SIGTERM; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file" "$port_file"
    log "moto_server (pid $pid) stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *)
        log "usage: $0 start|stop"
        exit 2
        ;;
esac
