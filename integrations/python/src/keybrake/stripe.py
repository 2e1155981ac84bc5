"""Pointing the official ``stripe`` SDK at a Keybrake proxy.

    client = stripe.StripeClient(vault_key, **stripe_options(proxy_url))

A cap hit surfaces as a ``stripe.RateLimitError`` (status 429) that :func:`keybrake.is_cap_hit`
recognises, and that the SDK never retries (the proxy answers ``Stripe-Should-Retry: false``).
"""

from __future__ import annotations

from typing import Any, Dict


def stripe_base_url(proxy_url: str) -> str:
    """The proxy's Stripe route, for ``base_addresses={"api": ...}`` or ``stripe.api_base``."""
    return f"{proxy_url.rstrip('/')}/stripe"


def stripe_options(proxy_url: str, *, max_network_retries: int = 2) -> Dict[str, Any]:
    """Keyword arguments of ``stripe.StripeClient`` that send its API calls through the proxy. The
    SDK keeps its own retries (with its own idempotency keys, which the proxy replays)."""
    return {"base_addresses": {"api": stripe_base_url(proxy_url)}, "max_network_retries": max_network_retries}
