#!/usr/bin/env bash
# Installs the Temporal CLI (dev server: `temporal server start-dev`) from the Go module proxy into
# the cache, once. v1.5.1: later versions have replace directives `go install` refuses.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
TEMPORAL_CLI_VERSION="${TEMPORAL_CLI_VERSION:-v1.5.1}"
target="$KEYBRAKE_CACHE_DIR/bin/temporal-$TEMPORAL_CLI_VERSION"
if [ ! -x "$target" ]; then
  command -v go >/dev/null || { echo "the Temporal CLI needs Go (https://go.dev) to install" >&2; exit 1; }
  echo "installing the Temporal CLI $TEMPORAL_CLI_VERSION (takes a few minutes once)" >&2
  tmp="$(mktemp -d)"
  GOBIN="$tmp" go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION" >&2
  mv "$tmp/temporal" "$target"
  rm -rf "$tmp"
fi
echo "$target"
