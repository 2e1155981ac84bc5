"""issue 24: is_cap_hit / keybrake_refusal / exit_code_for on responses and errors built here
(httpx, requests, the official SDKs' own error classes): what tells a cap hit from a vendor's 429
is the proxy's header, never the text. Through the real proxy: test_vendor_sdks.py."""

from __future__ import annotations

import httpx
import pytest
import requests
import stripe
from resend.exceptions import RateLimitError as ResendRateLimitError

from keybrake import (
    CAP_HIT_EXIT_CODE,
    KEYBRAKE_EXIT_CODES,
    CapExhaustedError,
    KeybrakeApiError,
    exit_code_for,
    is_cap_hit,
    keybrake_refusal,
    refusal_for_exit_code,
)

CAP_BODY = b'{"error":{"code":"cap_exhausted","message":"cap"}}'


def httpx_response(status: int, headers: dict, body: bytes = CAP_BODY) -> httpx.Response:
    return httpx.Response(status, headers=headers, content=body, request=httpx.Request("POST", "http://kb/stripe/v1/charges"))


def requests_response(status: int, headers: dict, body: bytes = CAP_BODY) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    response._content = body
    return response


@pytest.mark.parametrize("make", [httpx_response, requests_response], ids=["httpx", "requests"])
def test_a_cap_hit_response_is_recognised_by_its_header(make) -> None:
    capped = make(429, {"X-Keybrake-Cap-Hit": "true", "X-Keybrake-Error": "cap_exhausted"})
    assert is_cap_hit(capped)
    assert keybrake_refusal(capped) == "cap_exhausted"
    assert exit_code_for(capped) == 75


@pytest.mark.parametrize("make", [httpx_response, requests_response], ids=["httpx", "requests"])
def test_a_vendor_429_is_not_a_cap_hit_even_if_its_text_says_cap_exhausted(make) -> None:
    vendors = make(429, {"Retry-After": "1"}, b'{"error":{"code":"cap_exhausted","message":"our own quota: cap_exhausted"}}')
    assert not is_cap_hit(vendors)
    assert keybrake_refusal(vendors) is None
    assert exit_code_for(vendors) == 1


def test_other_refusals_are_named_by_the_error_header_and_only_terminal_ones_count() -> None:
    assert keybrake_refusal(httpx_response(401, {"X-Keybrake-Error": "vault_key_revoked"})) == "vault_key_revoked"
    assert keybrake_refusal(httpx_response(403, {"X-Keybrake-Error": "tainted_request_refused"})) == "tainted_request_refused"
    # The store will recover: retryable, so not a final refusal.
    assert keybrake_refusal(httpx_response(503, {"X-Keybrake-Error": "store_unavailable"})) is None
    assert keybrake_refusal(httpx_response(200, {})) is None


def test_httpx_status_errors_carry_their_response() -> None:
    response = httpx_response(429, {"x-keybrake-cap-hit": "true"})
    error = httpx.HTTPStatusError("429", request=response.request, response=response)
    assert is_cap_hit(error)
    requests_error = requests.HTTPError(response=requests_response(403, {"X-Keybrake-Error": "endpoint_not_allowed"}))
    assert keybrake_refusal(requests_error) == "endpoint_not_allowed"
    assert exit_code_for(requests_error) == 77


def test_sdk_errors_stripe_and_resend() -> None:
    capped = stripe.RateLimitError("cap", http_status=429, json_body={"error": {"code": "cap_exhausted"}}, headers={"x-keybrake-cap-hit": "true"})
    assert is_cap_hit(capped)
    vendors = stripe.RateLimitError("rate limited", http_status=429, json_body={"error": {"code": "rate_limit"}}, headers={})
    assert not is_cap_hit(vendors) and keybrake_refusal(vendors) is None
    resend_capped = ResendRateLimitError("Unknown error", "InternalServerError", 429, headers={"x-keybrake-cap-hit": "true"})
    assert is_cap_hit(resend_capped)
    resend_vendors = ResendRateLimitError("Too many requests", "rate_limit_exceeded", 429, headers={})
    assert not is_cap_hit(resend_vendors)


def test_this_packages_errors_and_other_values() -> None:
    assert is_cap_hit(CapExhaustedError())
    assert keybrake_refusal(KeybrakeApiError(403, "vendor_mismatch", "m")) == "vendor_mismatch"
    assert keybrake_refusal(KeybrakeApiError(400, "invalid_request", "m")) is None
    for value in (None, "cap_exhausted", 429, ValueError("cap_exhausted"), {"error": {"code": "cap_exhausted"}}):
        assert not is_cap_hit(value)
        assert keybrake_refusal(value) is None


def test_exit_codes_are_the_typescript_clis() -> None:
    assert dict(KEYBRAKE_EXIT_CODES) == {
        "cap_exhausted": 75,
        "tainted_request_refused": 76,
        "endpoint_not_allowed": 77,
        "vendor_mismatch": 78,
        "vault_key_revoked": 79,
        "vault_key_expired": 80,
        "invalid_vault_key": 81,
    }
    assert CAP_HIT_EXIT_CODE == 75
    assert refusal_for_exit_code(75) == "cap_exhausted" and refusal_for_exit_code(1) is None
    assert exit_code_for(ValueError("x"), fallback=3) == 3
