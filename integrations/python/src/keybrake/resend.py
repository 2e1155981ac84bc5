"""Pointing the official ``resend`` SDK at a Keybrake proxy (the SDK is configured globally):

    resend.api_key = vault_key
    resend.api_url = resend_base_url(proxy_url)

A refusal surfaces as a ``resend.exceptions.ResendError`` whose ``headers`` carry the proxy's
``X-Keybrake-Cap-Hit`` / ``X-Keybrake-Error``: :func:`keybrake.is_cap_hit` and
:func:`keybrake.keybrake_refusal` recognise it. Pass ``{"idempotency_key": ...}`` as
``resend.Emails.send``'s options so a retried send is replayed, not sent twice.
"""

from __future__ import annotations


def resend_base_url(proxy_url: str) -> str:
    """The proxy's Resend route, for ``resend.api_url``."""
    return f"{proxy_url.rstrip('/')}/resend"
