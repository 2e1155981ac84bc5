#!/usr/bin/env bash
# Schemathesis (PyPI) for the reliability suite's API fuzzing, in a cached virtualenv. Prints the
# path of its `schemathesis` command.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
pip_install_cached schemathesis schemathesis "${SCHEMATHESIS_VERSION:-4.32.5}" schemathesis
