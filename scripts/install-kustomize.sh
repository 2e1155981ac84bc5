#!/usr/bin/env bash
# Installs kustomize (what `kubectl apply -k` runs) from the Go module proxy into the cache, once
# (about a minute and a half), and prints its path. The chart's tests build
# templates/kubernetes/manifests with it. Pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
version="${KUSTOMIZE_VERSION:-v5.8.1}"
target="$KEYBRAKE_CACHE_DIR/bin/kustomize-$version"
if [ ! -x "$target" ]; then
  command -v go >/dev/null || { echo "kustomize needs Go (https://go.dev) to install" >&2; exit 1; }
  echo "installing kustomize $version from the Go module proxy (once)" >&2
  tmp="$(mktemp -d)"
  # The module's major-version suffix (/v5) is not in the binary's name: go install writes `kustomize`.
  GOBIN="$tmp" go install "sigs.k8s.io/kustomize/kustomize/v5@$version" >&2
  mv "$tmp/kustomize" "$target"
  rm -rf "$tmp"
fi
echo "$target"
