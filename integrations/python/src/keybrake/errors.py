"""Errors of the Keybrake client. ``code`` is the proxy's ``error.code`` (see the wire contract)."""

from __future__ import annotations

from typing import Optional


class KeybrakeApiError(Exception):
    """An error answer from the Keybrake admin API or proxy."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        #: Issue 26: the proxy's ``Retry-After`` (seconds) on a limit refusal (``rate_limited``,
        #: ``concurrency_limited``), else None.
        self.retry_after_s = retry_after_s


class CapExhaustedError(KeybrakeApiError):
    """The vault key's dollar cap is exhausted (429 with ``X-Keybrake-Cap-Hit: true``). Terminal: a
    retry hits the same wall, so integrations turn it into a never-retried failure."""

    def __init__(
        self, message: str = "The vault key cap is exhausted; nothing was forwarded.", vendor: Optional[str] = None
    ) -> None:
        super().__init__(429, "cap_exhausted", message)
        self.vendor = vendor
