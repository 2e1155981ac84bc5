#!/usr/bin/env bash
# LiteLLM's proxy from PyPI for the benchmark, in a cached virtualenv (about 100 s the first time).
# Prints the path of its `litellm` command.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
pip_install_cached litellm 'litellm[proxy]' "${LITELLM_VERSION:-1.106.2}" litellm
