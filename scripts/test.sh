#!/usr/bin/env bash
# Installs everything the tests need (pnpm, dependencies, stripe-mock), then runs them all:
# typecheck, lint, and the vitest suite against real stripe-mock.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
STRIPE_MOCK_BIN="$(bash scripts/install-stripe-mock.sh)"
export STRIPE_MOCK_BIN
pnpm run build
pnpm run typecheck
pnpm run lint
pnpm exec vitest run "$@"
