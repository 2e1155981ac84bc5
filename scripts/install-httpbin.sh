#!/usr/bin/env bash
# Installs go-httpbin (github.com/mccutchen/go-httpbin) from the Go module proxy into the cache,
# once: a real third-party HTTP server that echoes headers and JSON bodies, standing in for a
# vendor declared in KEYBRAKE_VENDORS_FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
go_install_cached go-httpbin github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin "${GO_HTTPBIN_VERSION:-v2.26.0}"
