#!/usr/bin/env bash
# What the benchmark variants need beyond the workspace: nginx and redis-server from Debian.
# (Portkey's gateway comes with the workspace's npm dependencies; LiteLLM: scripts/install-litellm.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-redis.sh
if ! command -v nginx >/dev/null 2>&1; then
  echo "installing nginx-light from Debian's packages" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >&2
  # The package may start a system nginx on port 80; the benchmark starts its own on a free port.
  $SUDO service nginx stop >/dev/null 2>&1 || true
fi
