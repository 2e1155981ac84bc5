#!/usr/bin/env bash
# Installs Debian's chromium (for the console's browser tests, driven by playwright-core), once, and
# prints the binary's path. Never `playwright install`: the tests use the distribution's build.
set -euo pipefail
find_chromium() {
  for bin in "${KEYBRAKE_CHROMIUM_BIN:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -n "$bin" ] && [ -x "$bin" ]; then
      echo "$bin"
      return 0
    fi
  done
  return 1
}
if find_chromium; then
  exit 0
fi
echo "installing chromium from Debian's packages (once)" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
# Only what chromium needs to run headless (no recommended desktop services); a concurrent apt waits for the lock.
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 chromium >&2
find_chromium
