#!/usr/bin/env bash
# Renders the plain manifests (templates/kubernetes/manifests/keybrake.yaml) from the Helm chart,
# with the pinned Helm (scripts/install-helm.sh). Run it after changing the chart; the chart's
# tests fail while the committed file differs from this render.
set -euo pipefail
cd "$(dirname "$0")/.."
HELM_BIN="${HELM_BIN:-$(bash scripts/install-helm.sh)}"
"$HELM_BIN" template keybrake templates/kubernetes/keybrake --namespace keybrake --kube-version 1.33.0 \
  --values templates/kubernetes/manifests.values.yaml > templates/kubernetes/manifests/keybrake.yaml
echo "rendered templates/kubernetes/manifests/keybrake.yaml" >&2
