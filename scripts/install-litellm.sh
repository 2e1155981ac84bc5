#!/usr/bin/env bash
# LiteLLM's proxy from PyPI for the benchmark, in a cached virtualenv (about 100 s the first time).
# Prints the path of its `litellm` command.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
version="${LITELLM_VERSION:-1.106.2}"
venv="$KEYBRAKE_CACHE_DIR/litellm-$version"
if [ ! -x "$venv/bin/litellm" ]; then
  echo "installing litellm[proxy] $version from PyPI (once)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "litellm[proxy]==$version" >&2
fi
echo "$venv/bin/litellm"
