#!/usr/bin/env bash
# What the benchmark variants need beyond the workspace: nginx and redis-server from Debian.
# (Portkey's gateway comes with the workspace's npm dependencies; LiteLLM: scripts/install-litellm.sh.)
# With --oha also the open-loop load generator for the fixed-rate rows, oha from crates.io, built
# once into the cache with cargo (a cold build takes minutes, so only the full run asks for it);
# its path is then the one line printed on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
OHA_VERSION=1.16.0
bash scripts/install-redis.sh
if ! command -v nginx >/dev/null 2>&1; then
  echo "installing nginx-light from Debian's packages" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >&2
  # The package may start a system nginx on port 80; the benchmark starts its own on a free port.
  $SUDO service nginx stop >/dev/null 2>&1 || true
fi
if [ "${1:-}" = "--oha" ]; then
  root="$KEYBRAKE_CACHE_DIR/oha-$OHA_VERSION"
  if [ ! -x "$root/bin/oha" ]; then
    cargo="$(command -v cargo || echo "$HOME/.cargo/bin/cargo")"
    [ -x "$cargo" ] || { echo "oha needs cargo (https://rustup.rs) to install" >&2; exit 1; }
    echo "installing oha $OHA_VERSION from crates.io with cargo (once; a cold build takes several minutes)" >&2
    # --locked: the crate's own Cargo.lock, so the build is the one its release was tested with.
    "$cargo" install --locked "oha@$OHA_VERSION" --root "$root" >&2
  fi
  echo "$root/bin/oha"
fi
