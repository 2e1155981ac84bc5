"""Pointing the official ``twilio`` SDK at a Keybrake proxy:

    client = twilio.rest.Client(TWILIO_PLACEHOLDER_SID, vault_key, http_client=twilio_http_client(proxy_url))

The SDK would turn any error into a ``TwilioRestException`` without the proxy's headers, so this
HTTP client raises :class:`keybrake.CapExhaustedError` on a cap hit and a
:class:`keybrake.KeybrakeApiError` with the proxy's code on its other refusals; Twilio's own
errors (its own 429 included) reach the SDK unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Dict, Iterator, Optional, Tuple
from urllib.parse import urlsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from .errors import CapExhaustedError, KeybrakeApiError
from .refusal import CAP_HIT_HEADER, ERROR_HEADER, header_value

#: An ``AC...`` account SID to construct the SDK with: it insists on one, and the proxy rewrites
#: it to the real SID (and back in responses), so the agent never learns the real one.
TWILIO_PLACEHOLDER_SID = "AC" + "0" * 32

_idempotency_key: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("keybrake_twilio_idempotency_key", default=None)


@contextlib.contextmanager
def twilio_idempotency_key(key: str) -> Iterator[None]:
    """Sends ``Idempotency-Key: key`` with every Twilio call made inside the block (the SDK's
    ``create`` methods take no headers): a retry of the block is replayed by the proxy, not sent
    again.

        with twilio_idempotency_key(derive_idempotency_key([run_id, "sms", to])):
            client.messages.create(to=to, from_=sender, body=text)
    """
    token = _idempotency_key.set(key)
    try:
        yield
    finally:
        _idempotency_key.reset(token)


class KeybrakeTwilioHttpClient(TwilioHttpClient):
    """The Twilio SDK's HTTP client, sending every request to the proxy's ``/twilio`` route instead
    of ``api.twilio.com``."""

    def __init__(self, proxy_url: str, *, timeout: Optional[float] = 30.0, **options: Any) -> None:
        super().__init__(timeout=timeout, **options)
        self._proxy_base = f"{proxy_url.rstrip('/')}/twilio"

    def request(
        self,
        method: str,
        url: str,
        params: Optional[Dict[str, object]] = None,
        data: Optional[Dict[str, object]] = None,
        headers: Optional[Dict[str, str]] = None,
        auth: Optional[Tuple[str, str]] = None,
        timeout: Optional[float] = None,
        allow_redirects: bool = False,
    ) -> Response:
        target = urlsplit(url)
        proxied = f"{self._proxy_base}{target.path}" + (f"?{target.query}" if target.query else "")
        headers = dict(headers or {})
        key = _idempotency_key.get()
        if key is not None:
            headers["Idempotency-Key"] = key
        response = super().request(method, proxied, params, data, headers, auth, timeout, allow_redirects)
        if header_value(response.headers, CAP_HIT_HEADER) == "true":
            raise CapExhaustedError(vendor="twilio")
        refusal = header_value(response.headers, ERROR_HEADER)
        if refusal is not None:
            retry_after = header_value(response.headers, "retry-after")
            raise KeybrakeApiError(
                response.status_code,
                refusal,
                f"Keybrake refused the call: {refusal}",
                retry_after_s=int(retry_after) if retry_after is not None and retry_after.isdigit() else None,
            )
        return response


def twilio_http_client(proxy_url: str, **options: Any) -> KeybrakeTwilioHttpClient:
    """The ``http_client`` argument of ``twilio.rest.Client`` that calls through the proxy."""
    return KeybrakeTwilioHttpClient(proxy_url, **options)
