#!/usr/bin/env bash
# Regenerates the console's screenshots in docs/ (shown in the README) from real data: the
# screenshot test run against `keybrake serve` and stripe-mock in Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
STRIPE_MOCK_BIN="$(bash scripts/install-stripe-mock.sh)"
KEYBRAKE_CHROMIUM_BIN="$(bash scripts/install-chromium.sh)"
bash scripts/install-redis.sh
export STRIPE_MOCK_BIN KEYBRAKE_CHROMIUM_BIN
pnpm run build
KEYBRAKE_CONSOLE_SCREENSHOTS_DIR=docs pnpm exec vitest run --project console console/test/issue-22-console-screenshots.test.ts
