#!/usr/bin/env bash
# `pnpm e2e:argo`: everything of the Argo integration that can run on this machine, then the kind
# e2e, which needs a Docker host and says SKIP without one.
#   1. installs the argo CLI v4.0.5 (offline linter only) and its controller's test binary;
#   2. runs integrations/argo/test: drift, full-schema validation, `argo lint --offline`, the retry
#      expressions in Argo's own controller, and the script-level tests (python3 and keybrake-exec
#      against the real proxy and stripe-mock; the Kubernetes API is a fake of our own);
#   3. e2e/argo-kind/run.sh: kind + Argo + the Helm chart + the examples (Docker host only).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
STRIPE_MOCK_BIN="$(bash scripts/install-stripe-mock.sh)"
ARGO_BIN="$(bash scripts/install-argo.sh)"
ARGO_EXPR_TEST_BIN="$(bash scripts/install-argo.sh --expr-test)"
export STRIPE_MOCK_BIN ARGO_BIN ARGO_EXPR_TEST_BIN
pnpm run build
pnpm exec vitest run --project embedded integrations/argo/test "$@"
echo "e2e:argo: ran lint, schema, drift, expression and script-level tests (integrations/argo/test)" >&2
bash e2e/argo-kind/run.sh
if ! docker info >/dev/null 2>&1; then
  echo "e2e:argo: SKIPPED e2e/argo-kind (no Docker daemon here): the workflow-level run on kind + Argo was not done" >&2
fi
