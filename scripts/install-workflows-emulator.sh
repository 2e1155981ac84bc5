#!/usr/bin/env bash
# workflows-emulator (PyPI, Apache-2.0): a third-party Google Cloud Workflows interpreter, in a
# cached virtualenv, for the Cloud Workflows e2e. Prints the path of its `workflows-emulator`
# command.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
pip_install_cached workflows-emulator workflows-emulator "${WORKFLOWS_EMULATOR_VERSION:-1.10.0}" workflows-emulator
