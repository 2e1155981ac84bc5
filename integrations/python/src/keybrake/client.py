"""Typed client of the Keybrake admin API, with the TypeScript client's retry and timeout rules."""

from __future__ import annotations

import json
import random
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Union, cast
from urllib.parse import quote

import httpx

from .errors import CapExhaustedError, KeybrakeApiError
from .refusal import CAP_HIT_HEADER

_RETRYABLE_STATUSES = frozenset({502, 503, 504})


def _backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: 0.5 s, 1 s, 2 s... at most 8 s, as the Stripe SDK."""
    base = min(0.5 * 2.0**attempt, 8.0)
    return base / 2 + random.random() * (base / 2)


class KeybrakeClient:
    """The admin API: issue, get, revoke and taint vault keys, list a key's calls.

    Retries, as ``@keybrake/client``: requests that are safe to repeat (reads, revocations,
    taints) after a network error or a 502/503/504, up to ``max_network_retries`` times with
    exponential backoff and jitter; an issue request only when it provably stored nothing
    (connection refused, 503 ``store_unavailable``), since a repeat would issue a second key. A cap
    hit is never retried (:class:`CapExhaustedError`).

    Authentication: ``api_key`` (an issuer key, one of the proxy's ``KEYBRAKE_API_KEYS``) or, for
    workload identity (issue 25), ``token_provider``: called before every attempt for the bearer
    token to send, e.g. ``TokenFile("/var/run/secrets/keybrake/token")``. Exactly one of the two.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Optional[str] = None,
        *,
        token_provider: Optional[Callable[[], str]] = None,
        timeout: float = 80.0,
        max_network_retries: int = 2,
        http_client: Optional[httpx.Client] = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        if (api_key is None) == (token_provider is None):
            raise TypeError("KeybrakeClient: give exactly one of api_key (an issuer key) and token_provider")
        self._bearer: Callable[[], str] = token_provider or (lambda: cast(str, api_key))
        self._rotates = token_provider is not None
        self._timeout = timeout
        self._max_network_retries = max_network_retries
        self._http = http_client or httpx.Client()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "KeybrakeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def issue_vault_key(
        self,
        *,
        vendor: str,
        allowed_endpoints: Sequence[str],
        expires_in: Union[str, int],
        daily_usd_cap: Optional[float] = None,
        usd_cap: Optional[float] = None,
        agent_run_label: Optional[str] = None,
        parent_key_id: Optional[str] = None,
        tainted: Optional[bool] = None,
        max_requests_per_second: Optional[int] = None,
        max_requests_per_minute: Optional[int] = None,
        max_concurrent: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Issues a vault key for one execution (``POST /vault/keys``). The answer's ``vault_key``
        is shown only here. Not retried once sent: a second key would be issued. The three limits
        (issue 26) make a call over them a transient 429 (see :func:`keybrake.limit_refusal`)."""
        body: Dict[str, Any] = {"vendor": vendor, "allowed_endpoints": list(allowed_endpoints), "expires_in": expires_in}
        for name, value in (
            ("daily_usd_cap", daily_usd_cap),
            ("usd_cap", usd_cap),
            ("agent_run_label", agent_run_label),
            ("parent_key_id", parent_key_id),
            ("tainted", tainted),
            ("max_requests_per_second", max_requests_per_second),
            ("max_requests_per_minute", max_requests_per_minute),
            ("max_concurrent", max_concurrent),
        ):
            if value is not None:
                body[name] = value
        return cast(Dict[str, Any], self._request("POST", "/vault/keys", body, repeatable=False))

    def get_vault_key(self, key_id: str) -> Dict[str, Any]:
        """A key's state and spend: ``status``, ``spent_usd``, ``reserved_usd``, ``remaining_usd``..."""
        return cast(Dict[str, Any], self._request("GET", f"/vault/keys/{quote(key_id, safe='')}"))

    def revoke_vault_key(self, key_id: str) -> Dict[str, Any]:
        """Revokes a key and its children; idempotent, effective on the next call everywhere."""
        return cast(Dict[str, Any], self._request("DELETE", f"/vault/keys/{quote(key_id, safe='')}"))

    def taint_vault_key(self, key_id: str) -> Dict[str, Any]:
        """Taints a key and its children for good: they can no longer call money-moving endpoints."""
        return cast(Dict[str, Any], self._request("POST", f"/vault/keys/{quote(key_id, safe='')}/taint"))

    def list_calls(self, key_id: str) -> List[Dict[str, Any]]:
        """Every proxied request made with the key, oldest first."""
        answer = self._request("GET", f"/vault/keys/{quote(key_id, safe='')}/calls")
        return cast(List[Dict[str, Any]], answer["calls"])

    def _request(self, method: str, path: str, body: Any = None, *, repeatable: bool = True) -> Any:
        content: Optional[bytes] = None
        if body is not None:
            content = json.dumps(body).encode()
        attempt = 0
        retried_expired = False
        while True:
            # Asked on every attempt: a retry after a rotation sends the new token.
            token = self._bearer()
            headers = {"authorization": f"Bearer {token}"}
            if content is not None:
                headers["content-type"] = "application/json"
            try:
                response = self._http.request(
                    method, f"{self._base_url}{path}", headers=headers, content=content, timeout=self._timeout
                )
            except httpx.TransportError as error:
                # ConnectError: no connection was made, so nothing was sent.
                not_sent = isinstance(error, httpx.ConnectError)
                if (repeatable or not_sent) and attempt < self._max_network_retries:
                    time.sleep(_backoff_seconds(attempt))
                    attempt += 1
                    continue
                raise
            if response.is_success:
                return response.json()
            try:
                parsed = response.json()
            except ValueError:
                parsed = None
            error_body = parsed.get("error") if isinstance(parsed, dict) else None
            error_body = error_body if isinstance(error_body, dict) else {}
            code = str(error_body.get("code") or "unknown_error")
            message = str(error_body.get("message") or f"HTTP {response.status_code}")
            if response.status_code == 429 and response.headers.get(CAP_HIT_HEADER) == "true":
                raise CapExhaustedError(message)
            # Issue 25: an expired token was refused before anything was stored. If the token file
            # has been rotated since (the kubelet replaces it well before expiry), send the new one, once.
            if (
                response.status_code == 401
                and code == "token_expired"
                and self._rotates
                and not retried_expired
            ):
                retried_expired = True
                if self._bearer() != token:
                    continue
            # 503 store_unavailable stored nothing: safe to repeat whatever the method.
            stored_nothing = response.status_code == 503 and code == "store_unavailable"
            if (
                response.status_code in _RETRYABLE_STATUSES
                and (repeatable or stored_nothing)
                and attempt < self._max_network_retries
            ):
                time.sleep(_backoff_seconds(attempt))
                attempt += 1
                continue
            retry_after = response.headers.get("retry-after")
            raise KeybrakeApiError(
                response.status_code,
                code,
                message,
                retry_after_s=int(retry_after) if retry_after is not None and retry_after.isdigit() else None,
            )
