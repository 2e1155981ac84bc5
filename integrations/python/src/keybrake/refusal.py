"""Telling Keybrake's own refusals from everything else (a vendor's own 429 included).

The proxy marks what it refuses: a cap hit is a 429 with ``X-Keybrake-Cap-Hit: true``, and every
refusal and error of its own carries ``X-Keybrake-Error: <error.code>``. A vendor's response never
carries either, so a vendor's 429 is never mistaken for a cap hit, whatever its text says. A value
with headers is judged by them alone; only one without any (no SDK this package supports drops
them: stripe, resend >= 2.23, httpx and requests all keep them) falls back to the proxy's body.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

from .errors import KeybrakeApiError

#: The header the proxy sets on its own cap-hit 429 (a vendor's own 429 never carries it).
CAP_HIT_HEADER = "x-keybrake-cap-hit"
#: The header the proxy sets on its own refusals and errors, with the ``error.code``.
ERROR_HEADER = "x-keybrake-error"

#: Refusals a retry cannot change: the same call with the same key meets the same answer.
TERMINAL_REFUSALS: Tuple[str, ...] = (
    "cap_exhausted",
    "tainted_request_refused",
    "endpoint_not_allowed",
    "vendor_mismatch",
    "vault_key_revoked",
    "vault_key_expired",
    "invalid_vault_key",
)

#: Issue 26: refusals by a request or concurrency limit of the vault key (or an ancestor's).
#: Unlike :data:`TERMINAL_REFUSALS` they are transient: retry after ``Retry-After``.
LIMIT_REFUSALS: Tuple[str, ...] = ("rate_limited", "concurrency_limited")


def header_value(headers: Any, name: str) -> Optional[str]:
    """A header of an httpx/requests/urllib3 headers object or a plain mapping, by lower-case name."""
    if headers is None:
        return None
    if not isinstance(headers, Mapping) and not hasattr(headers, "items"):
        return None
    try:
        items = list(headers.items())
    except Exception:  # pragma: no cover - an exotic headers object
        return None
    for key, value in items:
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if str(key).lower() == name:
            if isinstance(value, (list, tuple)):
                value = value[0] if value else ""
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            return str(value)
    return None


def _status_of(value: Any) -> Optional[int]:
    for attribute in ("status_code", "http_status", "status"):
        status = getattr(value, attribute, None)
        if isinstance(status, int) and not isinstance(status, bool):
            return status
    return None


def _headers_of(value: Any) -> Any:
    # httpx/requests responses: .headers; stripe errors: .headers; resend errors: .headers;
    # twilio's TwilioHttpClient responses: .headers; an httpx/requests error: its .response.
    headers = getattr(value, "headers", None)
    if headers is None:
        response = getattr(value, "response", None)
        if response is not None and response is not value:
            headers = getattr(response, "headers", None)
    return headers


def _body_code(value: Any) -> Optional[str]:
    """The ``error.code`` of a parsed Keybrake error body held by an SDK error (stripe's
    ``json_body``), or None."""
    body = getattr(value, "json_body", None)
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("code"), str):
            return str(error["code"])
    return None


def is_cap_hit(value: Any) -> bool:
    """Whether a response or error is Keybrake's cap hit, as opposed to any other failure (a
    vendor's own 429 included). Recognises ``httpx``/``requests`` responses (and their
    ``HTTPStatusError``/``HTTPError``), this package's errors, and the errors of the official
    ``stripe``, ``resend`` and ``twilio`` SDKs (the latter through :mod:`keybrake.twilio`)."""
    if value is None:
        return False
    if isinstance(value, KeybrakeApiError):
        return value.code == "cap_exhausted"
    headers = _headers_of(value)
    if headers is not None:
        # The header decides (the contract): a vendor's own 429 body can say cap_exhausted too.
        return header_value(headers, CAP_HIT_HEADER) == "true"
    # Only a value that carries no headers at all (none of the SDKs above) falls back to our body.
    return _status_of(value) == 429 and _body_code(value) == "cap_exhausted"


def keybrake_refusal(value: Any) -> Optional[str]:
    """The code of a Keybrake refusal that retrying cannot change (see :data:`TERMINAL_REFUSALS`),
    or None for anything else: a vendor's own error, a network failure, a 503 the store will
    recover from. Recognises what :func:`is_cap_hit` does, by the proxy's ``X-Keybrake-Error``
    header or its error body."""
    if value is None:
        return None
    if is_cap_hit(value):
        return "cap_exhausted"
    if isinstance(value, KeybrakeApiError):
        return value.code if value.code in TERMINAL_REFUSALS else None
    headers = _headers_of(value)
    if headers is not None:
        code = header_value(headers, ERROR_HEADER)
    else:
        code = _body_code(value) if _status_of(value) in (401, 403) else None
    return code if code in TERMINAL_REFUSALS else None


def _body_error(value: Any) -> Optional[Mapping[str, Any]]:
    body = getattr(value, "json_body", None)
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        return body["error"]  # type: ignore[no-any-return]
    return None


def limit_refusal(value: Any) -> Optional[str]:
    """Issue 26: the limit a response or error was refused by (``rate_limited``,
    ``concurrency_limited``), or None; the twin of ``limitRefusal`` in ``@keybrake/client``.
    Recognises what :func:`keybrake_refusal` does, by the proxy's ``X-Keybrake-Error`` header (a
    vendor's own 429 never carries it), or by the proxy's error body for a value with no headers
    at all. A cap hit is never a limit refusal."""
    if value is None:
        return None
    if isinstance(value, KeybrakeApiError):
        return value.code if value.code in LIMIT_REFUSALS else None
    headers = _headers_of(value)
    if headers is not None:
        code = header_value(headers, ERROR_HEADER)
        return code if code in LIMIT_REFUSALS else None
    code = _body_code(value) if _status_of(value) == 429 else None
    return code if code in LIMIT_REFUSALS else None


def is_limit_refusal(value: Any) -> bool:
    """Whether a response or error is a refusal by a request or concurrency limit (see
    :func:`limit_refusal`): transient, retry it after :func:`retry_after_ms`."""
    return limit_refusal(value) is not None


def retry_after_ms(value: Any) -> Optional[int]:
    """How long to wait before retrying a limit refusal, in ms: its ``Retry-After`` (whole
    seconds), else its body's ``error.retry_after_s``; None for anything that is not a limit
    refusal. A limit refusal always says when: 1 s, the smallest it ever says, when it does not."""
    if not is_limit_refusal(value):
        return None
    header = header_value(_headers_of(value), "retry-after")
    try:
        seconds = float(header) if header is not None else 0.0
    except ValueError:
        seconds = 0.0
    if seconds > 0:
        return int(seconds * 1000)
    candidates = [getattr(value, "retry_after_s", None)]
    error = _body_error(value)
    if error is not None:
        candidates.append(error.get("retry_after_s"))
    for candidate in candidates:
        if isinstance(candidate, (int, float)) and not isinstance(candidate, bool) and candidate > 0:
            return int(candidate * 1000)
    return 1000
