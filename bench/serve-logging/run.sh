#!/usr/bin/env bash
# keel serve throughput with the prediction log off and on under each
# --log-fsync policy (and, with --baseline-bin, an older keel): see
# serve_logging.py for what it measures and checks. Needs only python3.
#
#   bash bench/serve-logging/run.sh [--keel-bin target/release/keel] [--baseline-bin OLD]
#        [--seconds 10] [--rounds 3] [--connections 32] [--variants off,never,interval,always]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec python3 "$here/serve_logging.py" "$@"
