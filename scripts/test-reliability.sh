#!/usr/bin/env bash
# The reliability suite alone (`pnpm test:reliability`): installs what it needs, builds, and runs
# the `reliability` vitest project, then the soak's 30-second mode. ./scripts/test.sh runs both too.
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
# The soak's short mode, alone so that it holds its rate (`pnpm soak` for the full 10 minutes).
KEYBRAKE_RUN_SOAK=1 pnpm exec vitest run --project soak
# Again beside two busy loops: correctness must hold on a starved machine (issue 16).
KEYBRAKE_RUN_SOAK=1 KEYBRAKE_SOAK_BUSY_LOOPS=2 pnpm exec vitest run --project soak
