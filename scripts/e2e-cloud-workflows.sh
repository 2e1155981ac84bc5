#!/usr/bin/env bash
# e2e of the Cloud Workflows subworkflows: installs what it needs (pnpm, dependencies, stripe-mock,
# workflows-emulator from PyPI in a cached virtualenv), then runs the template's YAML for real in
# the emulator against the real proxy in front of stripe-mock.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
STRIPE_MOCK_BIN="$(bash scripts/install-stripe-mock.sh)"
WORKFLOWS_EMULATOR_BIN="$(bash scripts/install-workflows-emulator.sh)"
export STRIPE_MOCK_BIN WORKFLOWS_EMULATOR_BIN
pnpm run build
pnpm exec vitest run --project e2e-cloud-workflows "$@"
