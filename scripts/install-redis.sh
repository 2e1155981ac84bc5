#!/usr/bin/env bash
# Installs Debian's redis-server and redis-cli (for the Redis store tests), once.
set -euo pipefail
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  exit 0
fi
echo "installing redis-server from Debian's packages" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools >&2
# The package starts a system Redis on 6379; the tests start their own on free ports.
