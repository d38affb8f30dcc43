#!/usr/bin/env bash
# Renders every overlay of deploy/k8s with `kubectl kustomize` and validates
# each rendered resource against the Kubernetes API schema of
# $KEEL_K8S_VERSION (kubernetes-validate, pinned in deploy/requirements.txt,
# in a cached venv made by tests/python/ensure_venv.sh), strictly: an unknown
# or misspelt field fails. The keel commands and flags in the manifests are
# checked by the Rust test `every_keel_command_in_the_deploy_manifests_parses`
# (crates/keel/src/commands/mod.rs). Run by tests/run.sh.
#
#   bash deploy/validate.sh
#
# With CI=true a missing kubectl or a venv that cannot be installed fails;
# otherwise the check is skipped with a message.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
version="${KEEL_K8S_VERSION:-1.33.0}"

skip_or_fail() {
    if [ "${CI:-}" = true ]; then
        echo "deploy/validate.sh: $1 (CI=true: failing)" >&2
        exit 1
    fi
    echo "deploy/validate.sh: $1: skipping the manifest check" >&2
    exit 0
}

command -v kubectl >/dev/null 2>&1 || skip_or_fail "kubectl is not installed"
venv="$(env -u KEEL_PY_VENV bash tests/python/ensure_venv.sh "$repo/deploy/requirements.txt")" ||
    skip_or_fail "cannot install deploy/requirements.txt"
validate=("$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version")

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# The validator itself must refuse a wrong resource (a misspelt field).
cat >"$out/canary.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: canary
spec:
  selector:
    matchLabels: {app: canary}
  template:
    metadata:
      labels: {app: canary}
    spec:
      containers:
        - name: canary
          image: keel
          readinessProbe:
            httpGet: {path: /health, prot: 5000}
YAML
if "${validate[@]}" "$out/canary.yaml" >/dev/null 2>&1; then
    echo "deploy/validate.sh: kubernetes-validate accepted a misspelt field; the check is broken" >&2
    exit 1
fi

overlays=0
resources=0
for overlay in deploy/k8s/overlays/*/; do
    name="$(basename "$overlay")"
    if ! kubectl kustomize "$overlay" >"$out/$name.yaml"; then
        echo "deploy/validate.sh: kubectl kustomize $overlay failed" >&2
        exit 1
    fi
    count="$(grep -c '^kind:' "$out/$name.yaml" || true)"
    if [ "$count" -eq 0 ]; then
        echo "deploy/validate.sh: $overlay renders no resource" >&2
        exit 1
    fi
    if ! "${validate[@]}" "$out/$name.yaml" >&2; then
        echo "deploy/validate.sh: $overlay does not validate against Kubernetes $version" >&2
        exit 1
    fi
    overlays=$((overlays + 1))
    resources=$((resources + count))
done
echo "deploy/validate.sh: $overlays overlays, $resources resources rendered and valid for Kubernetes $version" >&2
