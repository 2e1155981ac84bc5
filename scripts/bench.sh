#!/usr/bin/env bash
# Benchmarks (`pnpm bench [--quick]`): installs what the variants need (nginx and redis-server from
# Debian, Portkey's gateway and LiteLLM when reachable), builds, and runs bench/dist/main.js.
# A variant that cannot start is reported with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
bash scripts/install-bench.sh
bash scripts/install-litellm.sh >/dev/null
pnpm run build >&2
exec node bench/dist/main.js "$@"
