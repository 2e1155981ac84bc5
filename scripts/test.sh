#!/usr/bin/env bash
# Installs everything the tests need (pnpm, dependencies, stripe-mock, redis-server, chromium, go-httpbin, the Temporal
# CLI, the argo CLI, the Conductor server, Helm, kustomize, workflows-emulator, the Python package's
# virtualenv, the earlier releases the upgrade tests start from), then runs them all: typecheck, lint, and the vitest projects
# (embedded store, Redis store, and e2e on the real engines) against real stripe-mock, Redis,
# Temporal and Conductor.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
# The tools install in four lanes at once, since on a fresh machine most of the time is downloads
# and unpacking beside CPU-bound Go builds: the Go builds (one at a time: each uses every core),
# Debian's packages (one dpkg at a time), PyPI's virtualenvs, and the Conductor jar from Maven
# Central. Each lane prints `NAME=path` lines for the tools it installed; a failed lane fails the
# run with its own log, after the others finish.
go_lane() {
  # stripe-mock; go-httpbin (a real third-party server standing in for a vendor declared in
  # KEYBRAKE_VENDORS_FILE); the Temporal CLI; Argo's own CLI, built from the Go module proxy and used
  # only as an offline linter of templates/argo, and its controller's test binary with our
  # retry-expression test (integrations/argo/expr-test); toxiproxy; Helm and kustomize; Hydra.
  local bin
  bin="$(bash scripts/install-stripe-mock.sh)"
  echo "STRIPE_MOCK_BIN=$bin"
  bin="$(bash scripts/install-httpbin.sh)"
  echo "GO_HTTPBIN_BIN=$bin"
  bin="$(bash scripts/install-temporal.sh)"
  echo "TEMPORAL_CLI_BIN=$bin"
  bin="$(bash scripts/install-argo.sh)"
  echo "ARGO_BIN=$bin"
  bin="$(bash scripts/install-argo.sh --expr-test)"
  echo "ARGO_EXPR_TEST_BIN=$bin"
  bin="$(bash scripts/install-toxiproxy.sh)"
  echo "TOXIPROXY_BIN=$bin"
  bin="$(bash scripts/install-helm.sh)"
  echo "HELM_BIN=$bin"
  bin="$(bash scripts/install-kustomize.sh)"
  echo "KUSTOMIZE_BIN=$bin"
  # ORY Hydra, the real OIDC provider of the workload-identity tests (issue 25).
  bin="$(bash scripts/install-hydra.sh)"
  echo "HYDRA_BIN=$bin"
}
apt_lane() {
  # redis-server, nginx for the quick benchmark, and chromium for the console's browser tests
  # (playwright-core drives it; never `playwright install`).
  local bin
  bash scripts/install-redis.sh
  bash scripts/install-bench.sh
  bin="$(bash scripts/install-chromium.sh)"
  echo "KEYBRAKE_CHROMIUM_BIN=$bin"
}
pip_lane() {
  # schemathesis; workflows-emulator; moto_server (an S3-compatible server for the audit archive's
  # S3 sink, issue 23); LiteLLM for the benchmark's comparison; the Python package's virtualenv
  # (integrations/python/.venv: the official stripe, twilio, resend, conductor-python and temporalio
  # SDKs, pytest), whose tests run from vitest (integrations/python/test).
  local bin
  bin="$(bash scripts/install-schemathesis.sh)"
  echo "SCHEMATHESIS_BIN=$bin"
  bin="$(bash scripts/install-workflows-emulator.sh)"
  echo "WORKFLOWS_EMULATOR_BIN=$bin"
  bin="$(bash scripts/install-moto.sh)"
  echo "MOTO_SERVER_BIN=$bin"
  bash scripts/install-litellm.sh >/dev/null
  bin="$(bash scripts/install-python.sh)"
  echo "KEYBRAKE_PYTHON=$bin"
}
maven_lane() {
  bash scripts/install-conductor.sh
  # The earlier releases the upgrade tests start from (core-proxy/test/upgrade-*.test.ts), each
  # exported from git history and built once per commit into the cache: the tests find them built.
  # Here, mostly waiting beside the Conductor download, rather than in the suite's own time.
  local commit
  for commit in $(grep -oE '^[0-9a-f]{40}' scripts/upgrade-releases.txt); do
    bash scripts/build-release.sh "$commit" >/dev/null
  done
}
lanes="$(mktemp -d)"
for lane in go apt pip maven; do
  # errexit holds inside each lane (no `&&` there, which would suspend it): its first failed install ends it.
  (set -e; "${lane}_lane") >"$lanes/$lane.env" 2> >(sed -u "s/^/[install $lane] /" >&2) &
  echo $! >"$lanes/$lane.pid"
done
failed=""
for lane in go apt pip maven; do
  wait "$(cat "$lanes/$lane.pid")" || failed="$failed $lane"
done
[ -z "$failed" ] || { echo "installing failed in:$failed (see the [install ...] lines above)" >&2; exit 1; }
# The lanes' lines are NAME=path (install-conductor.sh prints its own CONDUCTOR_JAR= and CONDUCTOR_JAVA=).
set -a
for lane in go apt pip maven; do
  # shellcheck disable=SC1090
  . "$lanes/$lane.env"
done
set +a
rm -rf "$lanes"
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
