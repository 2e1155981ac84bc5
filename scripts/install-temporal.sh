#!/usr/bin/env bash
# Installs the Temporal CLI (dev server: `temporal server start-dev`) from the Go module proxy into
# the cache, once (a few minutes). v1.5.1: later versions have replace directives `go install` refuses.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
go_install_cached temporal github.com/temporalio/cli/cmd/temporal "${TEMPORAL_CLI_VERSION:-v1.5.1}"
