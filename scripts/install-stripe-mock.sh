#!/usr/bin/env bash
# Installs Stripe's stripe-mock from the Go module proxy into the cache, once.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
STRIPE_MOCK_VERSION="${STRIPE_MOCK_VERSION:-v0.203.0}"
target="$KEYBRAKE_CACHE_DIR/bin/stripe-mock-$STRIPE_MOCK_VERSION"
if [ ! -x "$target" ]; then
  command -v go >/dev/null || { echo "stripe-mock needs Go (https://go.dev) to install" >&2; exit 1; }
  echo "installing stripe-mock $STRIPE_MOCK_VERSION" >&2
  tmp="$(mktemp -d)"
  GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION" >&2
  mv "$tmp/stripe-mock" "$target"
  rm -rf "$tmp"
fi
echo "$target"
