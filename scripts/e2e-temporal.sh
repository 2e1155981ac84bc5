#!/usr/bin/env bash
# e2e of the Temporal integration: installs what it needs (pnpm, dependencies, stripe-mock, the
# Temporal CLI for its dev server), then runs the workflows on real workers against the real proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
STRIPE_MOCK_BIN="$(bash scripts/install-stripe-mock.sh)"
TEMPORAL_CLI_BIN="$(bash scripts/install-temporal.sh)"
export STRIPE_MOCK_BIN TEMPORAL_CLI_BIN
# The Python workers' virtualenv (integrations/python/.venv).
KEYBRAKE_PYTHON="$(bash scripts/install-python.sh)"
export KEYBRAKE_PYTHON
pnpm run build
pnpm exec vitest run --project e2e-temporal "$@"
