#!/usr/bin/env bash
# Benchmarks (`pnpm bench [--quick]`): installs what the variants need (nginx and redis-server from
# Debian, Portkey's gateway and LiteLLM when reachable, and for a full run oha from crates.io),
# builds, and runs bench/dist/main.js. A variant that cannot start is reported with the reason.
# `--quick` (CI) keeps to autocannon, so a fresh machine need not build oha; `--quick --oha` uses
# oha for the fixed-rate rows too.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
quick=0
oha=0
for arg in "$@"; do
  [ "$arg" = "--quick" ] && quick=1
  [ "$arg" = "--oha" ] && oha=1
done
if [ "$quick" = 0 ] || [ "$oha" = 1 ]; then
  KEYBRAKE_OHA_BIN="$(bash scripts/install-bench.sh --oha)"
  export KEYBRAKE_OHA_BIN
else
  bash scripts/install-bench.sh
fi
bash scripts/install-litellm.sh >/dev/null
pnpm run build >&2
exec node bench/dist/main.js "$@"
