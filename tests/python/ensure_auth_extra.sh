#!/usr/bin/env bash
# Install what `mlflow[auth]` adds to the pinned venv (requirements-auth.txt:
# Flask-WTF and WTForms) into a folder of its own and print that folder, for
# PYTHONPATH. The shared venv and its hash stay as they are.
#   extra=$(tests/python/ensure_auth_extra.sh "$venv/bin/python")
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$1"
req="$here/requirements-auth.txt"
extra="${HOME:-/root}/.cache/keel/py-auth-extra-$(sha256sum "$req" | cut -c1-12)"
if [ ! -f "$extra/.complete" ]; then
    "$py" -m pip install --disable-pip-version-check --no-input --no-deps \
        --target "$extra" -r "$req" >&2
    : >"$extra/.complete"
fi
printf '%s\n' "$extra"
