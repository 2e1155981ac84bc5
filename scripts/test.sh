#!/usr/bin/env bash
# Installs everything the tests need (pnpm, dependencies, stripe-mock, redis-server, chromium, go-httpbin, the Temporal
# CLI, the argo CLI, the Conductor server, Helm, kustomize, workflows-emulator, the Python package's
# virtualenv), then runs them all: typecheck, lint, and the vitest projects
# (embedded store, Redis store, and e2e on the real engines) against real stripe-mock, Redis,
# Temporal and Conductor.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
STRIPE_MOCK_BIN="$(bash scripts/install-stripe-mock.sh)"
export STRIPE_MOCK_BIN
bash scripts/install-redis.sh
# go-httpbin: a real third-party server standing in for a vendor declared in KEYBRAKE_VENDORS_FILE.
GO_HTTPBIN_BIN="$(bash scripts/install-httpbin.sh)"
export GO_HTTPBIN_BIN
TEMPORAL_CLI_BIN="$(bash scripts/install-temporal.sh)"
export TEMPORAL_CLI_BIN
# Argo's own CLI, built from the Go module proxy, used only as an offline linter of templates/argo,
# and its controller's test binary with our retry-expression test (integrations/argo/expr-test).
ARGO_BIN="$(bash scripts/install-argo.sh)"
ARGO_EXPR_TEST_BIN="$(bash scripts/install-argo.sh --expr-test)"
export ARGO_BIN ARGO_EXPR_TEST_BIN
eval "$(bash scripts/install-conductor.sh)"
export CONDUCTOR_JAR CONDUCTOR_JAVA
bash scripts/install-bench.sh
SCHEMATHESIS_BIN="$(bash scripts/install-schemathesis.sh)"
WORKFLOWS_EMULATOR_BIN="$(bash scripts/install-workflows-emulator.sh)"
export WORKFLOWS_EMULATOR_BIN
TOXIPROXY_BIN="$(bash scripts/install-toxiproxy.sh)"
export SCHEMATHESIS_BIN TOXIPROXY_BIN
# moto_server: an S3-compatible server for the audit archive's S3 sink (issue 23).
MOTO_SERVER_BIN="$(bash scripts/install-moto.sh)"
export MOTO_SERVER_BIN
bash scripts/install-litellm.sh >/dev/null
# The Python package's virtualenv (integrations/python/.venv: the official stripe, twilio, resend,
# conductor-python and temporalio SDKs, pytest); its tests run from vitest (integrations/python/test).
KEYBRAKE_PYTHON="$(bash scripts/install-python.sh)"
export KEYBRAKE_PYTHON
# Debian's chromium for the console's browser tests (playwright-core drives it; never `playwright install`).
KEYBRAKE_CHROMIUM_BIN="$(bash scripts/install-chromium.sh)"
export KEYBRAKE_CHROMIUM_BIN
HELM_BIN="$(bash scripts/install-helm.sh)"
KUSTOMIZE_BIN="$(bash scripts/install-kustomize.sh)"
export HELM_BIN KUSTOMIZE_BIN
pnpm run build
pnpm run typecheck
pnpm run lint
report="$(mktemp)"
status=0
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
# A plain closing line any CI can read.
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$report" || true
rm -f "$report"
[ "$status" = 0 ] || exit "$status"
# Only when the suite ran whole: arguments (e.g. -t or --project) select tests, not the soak or the benchmark.
if [ "$#" = 0 ]; then
  # The soak's short mode (30 s; `pnpm soak` runs 10 minutes), alone so that it holds its rate.
  KEYBRAKE_RUN_SOAK=1 pnpm exec vitest run --project soak
  # Again with two busy loops beside it: correctness must hold on a starved machine (issue 16).
  KEYBRAKE_RUN_SOAK=1 KEYBRAKE_SOAK_BUSY_LOOPS=2 pnpm exec vitest run --project soak
fi
# The benchmark's quick mode: every variant that can run here, the cap race (must not overshoot).
if [ "$#" = 0 ]; then
  node bench/dist/main.js --quick
fi
