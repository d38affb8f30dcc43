#!/usr/bin/env bash
# Create (or reuse) the pinned Python venv used by keel's MLflow conformance
# test and the tracking benchmark, and print its path on stdout.
#
#   VENV=$(tests/python/ensure_venv.sh) && "$VENV/bin/python" ...
#   VENV=$(tests/python/ensure_venv.sh bench/serving/requirements.txt)   # another pin set
#
# The optional argument names another requirements file; its lock is the file
# beside it with .lock instead of .txt (optional), and only the default set is
# import-checked (mlflow, sklearn, requests, moto).
#
# Location: ${KEEL_PY_VENV:-$HOME/.cache/keel/py-<hash>}, where <hash> is the
# first 12 hex digits of sha256(requirements.txt + requirements.lock), so a
# change of pins gives a new venv. A marker file is written only after the
# install succeeded; a venv left incomplete by an interrupted install is
# rebuilt from scratch.
# Interpreter: $KEEL_PYTHON, else python3.11, else python3 (>= 3.10).
# Only the venv path goes to stdout; every log line goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="${1:-$here/requirements.txt}"
lock="${req%.txt}.lock"

log() { printf 'ensure_venv: %s\n' "$*" >&2; }

[ -f "$req" ] || { log "missing $req"; exit 1; }

hash="$({ cat "$req"; if [ -f "$lock" ]; then cat "$lock"; fi; } | sha256sum | cut -c1-12)"
venv="${KEEL_PY_VENV:-${HOME:-/root}/.cache/keel/py-$hash}"
marker="$venv/.keel-venv-complete"

# Fast path: a complete venv for exactly these pins.
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$hash" ] && [ -x "$venv/bin/python" ]; then
    printf '%s\n' "$venv"
    exit 0
fi

mkdir -p "$(dirname "$venv")"

# Serialise concurrent installers (CI job + benchmark started together).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv.lock"
    log "waiting for lock $venv.lock"
    flock 9
    # Someone else may have finished while we waited.
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "$hash" ] && [ -x "$venv/bin/python" ]; then
        printf '%s\n' "$venv"
        exit 0
    fi
fi

pick_python() {
    if [ -n "${KEEL_PYTHON:-}" ]; then printf '%s\n' "$KEEL_PYTHON"; return; fi
    local c
    for c in python3.11 python3; do
        if command -v "$c" >/dev/null 2>&1 \
            && "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
            printf '%s\n' "$c"
            return
        fi
    done
    log "no Python >= 3.10 found (set KEEL_PYTHON)"
    exit 1
}
py="$(pick_python)"

incomplete="$venv/.keel-venv-incomplete"
if [ -e "$venv" ]; then
    if [ -f "$incomplete" ] || { [ -f "$venv/pyvenv.cfg" ] && [ ! -x "$venv/bin/python" ]; }; then
        # Our own earlier install was interrupted: start again from scratch.
        log "removing incomplete venv $venv"
        rm -rf "$venv"
    elif [ -x "$venv/bin/python" ]; then
        # A complete venv for other pins (or a venv given by KEEL_PY_VENV): reuse it,
        # pip brings it to the pinned set.
        log "reusing existing venv $venv (marker missing or for other pins)"
    else
        log "$venv exists and is not a venv; refusing to touch it"
        exit 1
    fi
fi

if [ ! -e "$venv" ]; then
    log "creating venv $venv with $("$py" --version 2>&1) ($(command -v "$py"))"
    if ! "$py" -m venv "$venv" >&2; then
        log "'$py -m venv' failed (on Debian: apt-get install python3-venv)"
        rm -rf "$venv"
        exit 1
    fi
    : >"$incomplete"
fi
rm -f "$marker"

pip_args=(install --disable-pip-version-check --no-input -r "$req")
if [ -f "$lock" ]; then
    pip_args+=(-c "$lock")
else
    log "no requirements.lock: installing from requirements.txt only"
fi

log "installing pinned packages (~850 MB, several minutes on a cold cache)"
start=$(date +%s)
if ! "$venv/bin/python" -m pip "${pip_args[@]}" >&2; then
    log "pip install failed; leaving $venv without marker (it will be rebuilt)"
    exit 1
fi

# Quick import check before declaring success.
if [ -z "${1:-}" ]; then
    "$venv/bin/python" -c 'import mlflow, sklearn, requests, moto' >&2
fi

printf '%s\n' "$hash" >"$marker"
rm -f "$incomplete"
log "venv ready in $(( $(date +%s) - start )) s"
printf '%s\n' "$venv"
