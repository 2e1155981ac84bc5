"""issue 24: derive_idempotency_key is byte-identical to the TypeScript deriveIdempotencyKey: both
test suites assert the shared vectors (integrations/test-vectors/idempotency-keys.json), generated
once from the TypeScript implementation."""

import json
from pathlib import Path

import pytest

from keybrake import derive_idempotency_key

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "test-vectors" / "idempotency-keys.json").read_text(encoding="utf-8")
)["vectors"]


def test_the_vectors_cover_unicode_empty_long_parts_and_separators() -> None:
    names = "\n".join(vector["name"] for vector in VECTORS)
    for topic in ("unicode", "empty part", "long part", "separator", "lone surrogate", "floats"):
        assert topic in names


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_issue_24_matches_the_typescript_key(vector: dict) -> None:
    assert derive_idempotency_key(vector["parts"]) == vector["expected"]


def test_parts_must_be_a_non_empty_sequence_of_str_int_or_float() -> None:
    with pytest.raises(TypeError):
        derive_idempotency_key([])
    with pytest.raises(TypeError):
        derive_idempotency_key("charge")  # one string is not a list of parts
    with pytest.raises(TypeError):
        derive_idempotency_key([True])  # JavaScript would say "true", Python "True": refused
    with pytest.raises(TypeError):
        derive_idempotency_key([None])  # type: ignore[list-item]
