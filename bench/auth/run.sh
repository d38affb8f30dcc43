#!/usr/bin/env bash
# Cost of authentication per request, keel vs mlflow --app-name basic-auth.
#   bench/auth/run.sh [--keel-bin target/release/keel] [--requests 300] [--servers keel,mlflow]
# See run_bench.py. mlflow[auth]'s Flask-WTF comes from tests/python/requirements-auth.txt,
# installed beside the pinned venv (as run_conformance.sh --auth does).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
venv="$("$repo/tests/python/ensure_venv.sh")"
extra="$("$repo/tests/python/ensure_auth_extra.sh" "$venv/bin/python")"
exec "$venv/bin/python" "$here/run_bench.py" --extra-path "$extra" "$@"
