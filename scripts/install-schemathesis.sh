#!/usr/bin/env bash
# Schemathesis (PyPI) for the reliability suite's API fuzzing, in a cached virtualenv. Prints the
# path of its `schemathesis` command.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
version="${SCHEMATHESIS_VERSION:-4.32.5}"
venv="$KEYBRAKE_CACHE_DIR/schemathesis-$version"
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "installing schemathesis $version from PyPI (once)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "schemathesis==$version" >&2
fi
echo "$venv/bin/schemathesis"
