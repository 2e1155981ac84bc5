"""Pointing the official ``stripe`` SDK at a Keybrake proxy.

    client = stripe.StripeClient(vault_key, **stripe_options(proxy_url))

Every one of the SDK's hosts (``api``, ``files``, ``connect``, ``meter_events``) points at the
proxy, so the vault key never travels to Stripe's own hosts: the proxy forwards what the key's
allowlist allows and refuses the rest. A cap hit surfaces as a ``stripe.RateLimitError`` (status
429) that :func:`keybrake.is_cap_hit` recognises, and that the SDK never retries (the proxy answers
``Stripe-Should-Retry: false``).
"""

from __future__ import annotations

from typing import Any, Dict

#: The ``base_addresses`` keys of ``stripe.StripeClient`` (stripe-python's ``BaseAddress``).
STRIPE_BASE_ADDRESSES = ("api", "files", "connect", "meter_events")


def stripe_base_url(proxy_url: str) -> str:
    """The proxy's Stripe route, for ``base_addresses`` or ``stripe.api_base``."""
    return f"{proxy_url.rstrip('/')}/stripe"


def stripe_options(proxy_url: str, *, max_network_retries: int = 2) -> Dict[str, Any]:
    """Keyword arguments of ``stripe.StripeClient`` that send all its calls through the proxy. The
    SDK keeps its own retries (with its own idempotency keys, which the proxy replays)."""
    base = stripe_base_url(proxy_url)
    return {"base_addresses": {name: base for name in STRIPE_BASE_ADDRESSES}, "max_network_retries": max_network_retries}
