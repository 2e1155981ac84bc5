#!/usr/bin/env bash
# Installs Helm (the `helm` CLI: `helm lint`, `helm template`) from the Go module proxy into the
# cache, once (several minutes on 2 cores), and prints its path. Pinned: the chart's CI checks and
# the committed manifests in templates/kubernetes/manifests/ are rendered by this version. Built by
# `go install`, it assumes Kubernetes v1.20 when no cluster is given (release builds set the version
# through -ldflags), so every call passes --kube-version.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
go_install_cached helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION:-v3.22.0}"
