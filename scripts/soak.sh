#!/usr/bin/env bash
# The soak on demand (`pnpm soak`): two replicas on Redis under 1,000 req/s of mixed calls for
# 10 minutes (KEYBRAKE_SOAK_SECONDS, KEYBRAKE_SOAK_RATE to change). CI runs the same test for 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
bash scripts/install-redis.sh
pnpm run build
KEYBRAKE_RUN_SOAK=1 KEYBRAKE_SOAK_SECONDS="${KEYBRAKE_SOAK_SECONDS:-600}" pnpm exec vitest run --project soak "$@"
