#!/usr/bin/env bash
# Benchmarks (`pnpm bench [--quick]`): installs what the variants need (nginx and redis-server from
# Debian, Portkey's gateway and LiteLLM when reachable), builds, and runs bench/dist/main.js.
# A variant that cannot start is reported with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
bash scripts/install-redis.sh
if ! command -v nginx >/dev/null 2>&1; then
  echo "installing nginx (Debian)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >&2 || echo "nginx could not be installed" >&2
fi
pnpm run build >&2
exec node bench/dist/main.js "$@"
