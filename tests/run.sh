#!/usr/bin/env bash
# The README's test command: prepares everything the test suite needs, then runs it.
#
#   bash tests/run.sh            # all tests (what .ci/run runs)
#   bash tests/run.sh -p keel-store   # extra arguments go to `cargo test`
#
# Prepares: the pinned Python venv with the official MLflow client (cached under
# ~/.cache/keel), a pinned GTO venv (release tags), Debian's chromium and chromium-driver (installed with apt-get
# when missing) for the web UI's browser test, a PostgreSQL test database server (the machine's own on
# 127.0.0.1:5432 unless KEEL_TEST_POSTGRES_URL says otherwise) and a local
# S3-compatible server (moto) for the S3 artifact tests, and checks deploy/'s
# Kubernetes manifests (deploy/validate.sh: kubectl kustomize + a pinned
# schema validator). With CI=true a missing PostgreSQL or kubectl fails the
# run instead of being skipped.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

export KEEL_TEST_POSTGRES_URL="${KEEL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! psql "$KEEL_TEST_POSTGRES_URL" -Atc 'select 1' >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "tests/run.sh: PostgreSQL at $KEEL_TEST_POSTGRES_URL is unreachable (CI=true: failing)" >&2
        exit 1
    fi
    echo "tests/run.sh: PostgreSQL at $KEEL_TEST_POSTGRES_URL is unreachable: its tests will be skipped" >&2
    unset KEEL_TEST_POSTGRES_URL
fi

if [ -n "${KEEL_TEST_POSTGRES_URL:-}" ]; then
    # Test databases left by earlier (killed) runs.
    psql "$KEEL_TEST_POSTGRES_URL" -Atc \
        "select datname from pg_database where datname like 'keel\_test\_%' or datname like 'keel\_conformance\_%'" |
        while read -r stale; do
            psql "$KEEL_TEST_POSTGRES_URL" -qc "drop database if exists \"$stale\"" >/dev/null 2>&1 || true
        done
fi

# Headless Chromium and its WebDriver for keel-ui's browser test (Debian packages).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "tests/run.sh: installing chromium and chromium-driver for the browser test" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >/dev/null 2>&1; then
        if [ "${CI:-}" = true ]; then
            echo "tests/run.sh: cannot install chromium and chromium-driver (CI=true: failing)" >&2
            exit 1
        fi
        echo "tests/run.sh: chromium is not installed: the browser test will be skipped" >&2
    fi
fi

echo "tests/run.sh: preparing the Python venv (mlflow client, scikit-learn, moto)" >&2
KEEL_PY_VENV="$(bash tests/python/ensure_venv.sh)"
export KEEL_PY_VENV
# GTO, in a venv of its own (its dependencies do not meet MLflow's pins).
KEEL_GTO_VENV="$(env -u KEEL_PY_VENV bash tests/python/ensure_venv.sh tests/python/gto/requirements.txt)"
export KEEL_GTO_VENV

# The Kubernetes manifests: every overlay rendered with `kubectl kustomize`
# and validated against the Kubernetes schema (pinned kubernetes-validate).
bash deploy/validate.sh

eval "$(bash tests/s3/moto.sh start)"
trap 'bash tests/s3/moto.sh stop >/dev/null 2>&1 || true' EXIT

# The fuzz targets (proptest properties) run this many cases each: bounded
# in CI, raise it locally for a longer search.
export PROPTEST_CASES="${PROPTEST_CASES:-256}"

cargo test --workspace --locked "$@"
