"""Idempotency keys derived from the identity of one logical call, byte-identical to the
TypeScript client's ``deriveIdempotencyKey`` (the shared vectors in
``integrations/test-vectors/idempotency-keys.json`` hold both to it)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from decimal import Decimal
from typing import Sequence, Union

Part = Union[str, int, float]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _js_number(value: float) -> str:
    """``String(value)`` of JavaScript for a finite or non-finite double (ECMA-262 Number::toString)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that round-trip, as JavaScript's algorithm does.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(str(d) for d in digit_tuple).rstrip("0")
    assert isinstance(exponent, int)
    exponent += len("".join(str(d) for d in digit_tuple)) - len(digits)
    k = len(digits)
    n = exponent + k
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def _part_text(part: Part) -> str:
    if isinstance(part, bool) or not isinstance(part, (str, int, float)):
        raise TypeError(f"derive_idempotency_key parts are str, int or float, not {type(part).__name__}")
    if isinstance(part, str):
        return part
    if isinstance(part, int):
        # JavaScript numbers are doubles: an int past 2**53 would be rounded there.
        return str(part) if abs(part) < 2**53 else _js_number(float(part))
    return _js_number(part)


def _js_json_stringify(parts: Sequence[str]) -> str:
    """``JSON.stringify`` of an array of strings, as JavaScript writes it (no spaces, non-ASCII
    kept, lone surrogates escaped as ``\\udxxx``)."""
    text = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def derive_idempotency_key(parts: Sequence[Part]) -> str:
    """An ``Idempotency-Key`` for one logical call: the same parts give the same key (so a retry of
    the call is replayed, not charged again), different parts give different keys. SHA-256 over
    the JSON array of the parts as strings, base64url without padding, prefixed ``kb_`` (46
    characters).

    Feed it what stays the same across retries of one call and differs between executions:
    Temporal ``workflow_id`` + ``activity_id``; Conductor ``workflowInstanceId`` +
    ``referenceTaskName`` (not the task id, which changes per retry); Argo ``{{workflow.uid}}`` +
    the step name + ``{{item}}``; plus your own call name.

    >>> derive_idempotency_key(["wf-1", "charge", "cus_1"])[:3]
    'kb_'
    """
    if isinstance(parts, (str, bytes)):
        raise TypeError("derive_idempotency_key takes a sequence of parts, not one string")
    if len(parts) == 0:
        raise TypeError("derive_idempotency_key needs at least one part")
    canonical = _js_json_stringify([_part_text(part) for part in parts])
    # surrogatepass: a lone surrogate was escaped above, so none is left to encode.
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return "kb_" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
