"""Exit codes of a process ended by a final Keybrake refusal: the same as the TypeScript
``keybrake-exec`` (``KEYBRAKE_EXIT_CODES`` in ``@keybrake/client``). 75 is a cap hit; workflow
engines that retry on exit codes (Argo's ``retryStrategy.expression``, Kubernetes Jobs'
``podFailurePolicy``) must not retry any of 75-81."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Optional

from .refusal import is_limit_refusal, keybrake_refusal

KEYBRAKE_EXIT_CODES: Mapping[str, int] = MappingProxyType(
    {
        "cap_exhausted": 75,
        "tainted_request_refused": 76,
        "endpoint_not_allowed": 77,
        "vendor_mismatch": 78,
        "vault_key_revoked": 79,
        "vault_key_expired": 80,
        "invalid_vault_key": 81,
    }
)
CAP_HIT_EXIT_CODE = 75
#: Issue 26: the exit code of a process ended after a request or concurrency limit refused its call
#: (``rate_limited``, ``concurrency_limited``). Transient, unlike 75..81: outside that range on
#: purpose, so an engine's retry-on-exit-code policy retries it (``LIMIT_REFUSED_EXIT_CODE`` in
#: ``@keybrake/client``).
LIMIT_REFUSED_EXIT_CODE = 82
KEYBRAKE_EXIT_CODE_MIN = 75
KEYBRAKE_EXIT_CODE_MAX = 81


def exit_code_for(error: Any, fallback: int = 1) -> int:
    """The exit code for an error (or response) that ended a program: the refusal's own code for a
    final Keybrake refusal, :data:`LIMIT_REFUSED_EXIT_CODE` (82) for a limit refusal (retryable),
    otherwise ``fallback``.

    Example: ``except Exception as error: sys.exit(exit_code_for(error))``."""
    refusal = keybrake_refusal(error)
    if refusal is not None:
        return KEYBRAKE_EXIT_CODES[refusal]
    return LIMIT_REFUSED_EXIT_CODE if is_limit_refusal(error) else fallback


def refusal_for_exit_code(code: int) -> Optional[str]:
    """The final refusal an exit code stands for, or None."""
    for refusal, value in KEYBRAKE_EXIT_CODES.items():
        if value == code:
            return refusal
    return None
