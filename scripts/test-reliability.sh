#!/usr/bin/env bash
# The reliability suite alone (`pnpm test:reliability`): installs what it needs, builds, and runs
# the `reliability` vitest project. ./scripts/test.sh runs it too, with everything else.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
bash scripts/install-redis.sh
SCHEMATHESIS_BIN="$(bash scripts/install-schemathesis.sh)"
TOXIPROXY_BIN="$(bash scripts/install-toxiproxy.sh)"
export SCHEMATHESIS_BIN TOXIPROXY_BIN
pnpm run build
pnpm exec vitest run --project reliability "$@"
