#!/usr/bin/env bash
# Run the MLflow-client conformance test against a freshly started server.
#
#   tests/python/run_conformance.sh [--keel-bin PATH]   # keel server (default target/debug/keel)
#   tests/python/run_conformance.sh --mlflow            # the real mlflow server, as a reference
#   tests/python/run_conformance.sh --uri http://H:P    # an already running server
#   tests/python/run_conformance.sh --auth [--mlflow]   # users and permissions: the server
#       runs MLflow's basic-auth app (keel: --app-name basic-auth; mlflow: the same, with
#       Flask-WTF from requirements-auth.txt installed beside the pinned venv) and
#       conformance_auth.py drives it with MLflow's own auth client
#
# Starts the server on a free 127.0.0.1 port with a temporary SQLite store and
# artifact directory, waits for GET /health, runs conformance_tracking.py with
# the pinned venv (tests/python/ensure_venv.sh), stops the server and exits
# with the script's exit code. Server log: kept and printed on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
keel_bin="$repo/target/debug/keel"
mode=keel
uri=""
auth=0
startup_timeout="${KEEL_STARTUP_TIMEOUT:-180}"

while [ $# -gt 0 ]; do
    case "$1" in
        --keel-bin) keel_bin="$2"; shift 2 ;;
        --mlflow) mode=mlflow; shift ;;
        --uri) mode=external; uri="$2"; shift 2 ;;
        --auth) auth=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

venv="$("$here/ensure_venv.sh")"
py="$venv/bin/python"

if [ "$mode" = external ]; then
    MLFLOW_TRACKING_URI="$uri" exec "$py" "$here/conformance_tracking.py"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/keel-conformance.XXXXXX")"
port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
log="$work/server.log"
pgid=""

stop_server() {
    if [ -n "$pgid" ] && kill -0 -- "-$pgid" 2>/dev/null; then
        kill -TERM -- "-$pgid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 -- "-$pgid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
    pgid=""
}
cleanup() {
    stop_server
    if [ "${KEEP_WORK:-}" = 1 ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

app_args=()
extra_path=""
if [ "$auth" = 1 ]; then
    # mlflow[auth] needs Flask-WTF (MLflow's auth client imports it too), which the
    # pinned venv lacks: installed beside it by ensure_auth_extra.sh.
    extra_path="$("$here/ensure_auth_extra.sh" "$py")"
    export MLFLOW_FLASK_SERVER_SECRET_KEY="conformance-$port"
    # MLflow's basic_auth.ini, as a team moving from MLflow would have it.
    export ADMIN_PASSWORD="conformance-admin-$port"
    export MLFLOW_AUTH_ADMIN_PASSWORD="$ADMIN_PASSWORD"
    export MLFLOW_AUTH_CONFIG_PATH="$work/basic_auth.ini"
    printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///%s/basic_auth.db\nadmin_username = admin\n' \
        "$work" >"$MLFLOW_AUTH_CONFIG_PATH"
    app_args=(--app-name basic-auth)
fi

if [ "$mode" = keel ]; then
    [ -x "$keel_bin" ] || { echo "keel binary not found: $keel_bin (cargo build first)" >&2; exit 1; }
    set -m   # job control: the background server leads its own process group
    # KEEL_CONFORMANCE_BACKEND picks another metadata store (e.g. a PostgreSQL database).
    "$keel_bin" server --backend-store-uri "${KEEL_CONFORMANCE_BACKEND:-sqlite:///$work/keel.db}" \
        --artifacts-destination "$work/artifacts" --host 127.0.0.1 --port "$port" \
        "${app_args[@]}" >"$log" 2>&1 &
    target=keel
else
    set -m
    PYTHONPATH="$extra_path" PATH="$venv/bin:$PATH" MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
        "$venv/bin/mlflow" server \
        --host 127.0.0.1 --port "$port" --backend-store-uri "sqlite:///$work/mlflow.db" \
        --artifacts-destination "$work/artifacts" --workers 1 "${app_args[@]}" >"$log" 2>&1 &
    target=mlflow
fi
pid=$!
set +m
pgid=$pid   # the server leads its own process group

url="http://127.0.0.1:$port"
echo "started $mode server pid $pid at $url (work dir $work)" >&2
deadline=$(( $(date +%s) + startup_timeout ))
until curl -fsS -o /dev/null "$url/health" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "server exited before becoming healthy; log:" >&2
        cat "$log" >&2
        exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "server not healthy after ${startup_timeout}s; log:" >&2
        tail -50 "$log" >&2
        exit 1
    fi
    sleep 0.2
done

rc=0
if [ "$auth" = 1 ]; then
    PYTHONPATH="$extra_path" MLFLOW_TRACKING_URI="$url" "$py" "$here/conformance_auth.py" \
        --target "$target" || rc=$?
else
    MLFLOW_TRACKING_URI="$url" "$py" "$here/conformance_tracking.py" \
        --target "$target" --artifacts-dir "$work/artifacts" || rc=$?
fi
if [ "$rc" -ne 0 ]; then
    echo "---- last 40 lines of the server log ($log) ----" >&2
    tail -40 "$log" >&2
fi
exit "$rc"
