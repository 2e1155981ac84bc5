#!/usr/bin/env bash
# moto[server] (PyPI): an S3-compatible server for the archive's S3 sink tests (issue 23), in a cached
# virtualenv. Prints the path of its `moto_server` command.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
pip_install_cached moto 'moto[server]' "${MOTO_VERSION:-5.2.1}" moto_server
