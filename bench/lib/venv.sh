#!/usr/bin/env bash
# The pinned Python venv of a benchmark, shared by the bench/*/run.sh scripts
# that need Python tools beyond the stdlib (bench/drift, bench/multivariate,
# bench/cbpe). Source it, then call:
#
#   venv="$(bench_venv "$here/requirements.txt" "${KEEL_DRIFT_VENV:-}")"
#
# It delegates to tests/python/ensure_venv.sh (the one owner of how keel
# builds a pinned venv: keyed on the pins' hash, a marker written only after
# a complete install, concurrent installers serialised); the optional second
# argument is a venv path chosen by the caller. The test suite's
# KEEL_PY_VENV is not inherited: it names the tests' venv, not this one.
bench_venv() {
    local req=$1 path=${2:-}
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    if [ -n "$path" ]; then
        KEEL_PY_VENV="$path" bash "$root/tests/python/ensure_venv.sh" "$req"
    else
        env -u KEEL_PY_VENV bash "$root/tests/python/ensure_venv.sh" "$req"
    fi
}
