#!/usr/bin/env bash
# Installs Stripe's stripe-mock from the Go module proxy into the cache, once.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
go_install_cached stripe-mock github.com/stripe/stripe-mock "${STRIPE_MOCK_VERSION:-v0.203.0}"
