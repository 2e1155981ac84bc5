#!/usr/bin/env bash
# The Python package's virtualenv for its tests (integrations/python/.venv, never the system
# site-packages): the pinned versions of integrations/python/requirements-dev.txt (the official
# stripe, twilio, resend, conductor-python and temporalio SDKs, httpx, requests, pytest) and the
# package itself, editable. pip's downloads are cached under $KEYBRAKE_CACHE_DIR/pip, and the venv
# is rebuilt only when the requirements or pyproject.toml change. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
dir=integrations/python
venv="$dir/.venv"
stamp="$(cat "$dir/requirements-dev.txt" "$dir/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.keybrake-stamp" 2>/dev/null)" != "$stamp" ]; then
  command -v python3 >/dev/null || { echo "the Python tests need python3 (3.9 or later)" >&2; exit 1; }
  echo "installing the Python test environment into $venv (pip cache: $KEYBRAKE_CACHE_DIR/pip)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  export PIP_CACHE_DIR="$KEYBRAKE_CACHE_DIR/pip" PIP_DISABLE_PIP_VERSION_CHECK=1
  "$venv/bin/pip" install -q -r "$dir/requirements-dev.txt" >&2
  # Editable, without build isolation: hatchling comes from the pinned requirements.
  "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$dir" >&2
  echo "$stamp" >"$venv/.keybrake-stamp"
fi
echo "$PWD/$venv/bin/python"
