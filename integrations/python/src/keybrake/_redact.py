"""Keeping a vault key out of what an engine stores (task output, logs, failure reasons)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

#: What a vault key is replaced with wherever it would leave the worker.
VAULT_KEY_REDACTED = "[vault key redacted]"

T = TypeVar("T")


def redact_vault_key(value: T, vault_key: str) -> T:
    """``value`` as the engine will store it (its JSON form), with every occurrence of the key
    replaced. Vault keys are base64url, which JSON never escapes, so the key is found as is."""
    if value is None or vault_key == "":
        return value
    text = json.dumps(value, default=str)
    if vault_key not in text:
        return value
    result: Any = json.loads(text.replace(vault_key, VAULT_KEY_REDACTED))
    return result  # type: ignore[no-any-return]


def redact_vault_key_text(text: str, vault_key: str) -> str:
    return text if vault_key == "" else text.replace(vault_key, VAULT_KEY_REDACTED)
