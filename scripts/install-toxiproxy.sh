#!/usr/bin/env bash
# Installs toxiproxy-server (Shopify's TCP fault injector) from the Go module proxy into the cache,
# once, and prints its path. The reliability suite puts it between the proxy and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
go_install_cached server github.com/Shopify/toxiproxy/v2/cmd/server "${TOXIPROXY_VERSION:-v2.5.0}"
