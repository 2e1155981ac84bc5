#!/usr/bin/env bash
# Quick start: installs what the proxy needs, then runs it on the embedded store (`pnpm serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_deps
exec pnpm serve
