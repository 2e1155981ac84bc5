"""Keybrake's Python client: the admin API, cap-hit detection, idempotency keys, and helpers for
the official vendor SDKs, Conductor workers, Temporal activities and containers
(``keybrake-exec``). The vendor and engine helpers live in their own modules
(``keybrake.stripe``, ``keybrake.twilio``, ``keybrake.resend``, ``keybrake.conductor``,
``keybrake.temporal``) so that this one imports none of those SDKs."""

from .client import KeybrakeClient
from .errors import CapExhaustedError, KeybrakeApiError
from .exit_codes import (
    CAP_HIT_EXIT_CODE,
    KEYBRAKE_EXIT_CODE_MAX,
    KEYBRAKE_EXIT_CODE_MIN,
    KEYBRAKE_EXIT_CODES,
    LIMIT_REFUSED_EXIT_CODE,
    exit_code_for,
    refusal_for_exit_code,
)
from .idempotency import derive_idempotency_key
from .refusal import (
    CAP_HIT_HEADER,
    ERROR_HEADER,
    LIMIT_REFUSALS,
    TERMINAL_REFUSALS,
    is_cap_hit,
    is_limit_refusal,
    keybrake_refusal,
    limit_refusal,
    retry_after_ms,
)
from .token_file import TokenFile, TokenFileError, TokenProvider

__all__ = [
    "KeybrakeClient",
    "KeybrakeApiError",
    "CapExhaustedError",
    "TokenFile",
    "TokenFileError",
    "TokenProvider",
    "is_cap_hit",
    "keybrake_refusal",
    "CAP_HIT_HEADER",
    "ERROR_HEADER",
    "TERMINAL_REFUSALS",
    "LIMIT_REFUSALS",
    "limit_refusal",
    "is_limit_refusal",
    "retry_after_ms",
    "LIMIT_REFUSED_EXIT_CODE",
    "derive_idempotency_key",
    "KEYBRAKE_EXIT_CODES",
    "CAP_HIT_EXIT_CODE",
    "KEYBRAKE_EXIT_CODE_MIN",
    "KEYBRAKE_EXIT_CODE_MAX",
    "exit_code_for",
    "refusal_for_exit_code",
]
