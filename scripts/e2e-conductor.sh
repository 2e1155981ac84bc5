#!/usr/bin/env bash
# e2e of the Conductor integration: installs what it needs (pnpm, dependencies, stripe-mock, the
# Conductor server jar and a Java 21+ to run it), then runs the billing example on real workers
# against the real proxy and a real Conductor server. With CONDUCTOR_SERVER_URL set, that server
# is used instead (see e2e/README.md for the docker-compose stack).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
STRIPE_MOCK_BIN="$(bash scripts/install-stripe-mock.sh)"
export STRIPE_MOCK_BIN
if [ -z "${CONDUCTOR_SERVER_URL:-}" ]; then
  eval "$(bash scripts/install-conductor.sh)"
  export CONDUCTOR_JAR CONDUCTOR_JAVA
fi
# The Python workers' virtualenv (integrations/python/.venv).
KEYBRAKE_PYTHON="$(bash scripts/install-python.sh)"
export KEYBRAKE_PYTHON
pnpm run build
pnpm exec vitest run --project e2e-conductor "$@"
