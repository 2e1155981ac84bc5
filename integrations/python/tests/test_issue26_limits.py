"""issue 26: the proxy's limit refusals (``rate_limited``, ``concurrency_limited``, a 429 with
``Retry-After`` and never the cap-hit header) are told apart from cap hits and from a vendor's own
429, and mapped as the TypeScript SDK maps them: ``limit_refusal`` / ``is_limit_refusal`` /
``retry_after_ms``, exit code 82, the Conductor decorator's ``IN_PROGRESS`` with
``callback_after_seconds``, Temporal's retryable ``KeybrakeRateLimited`` with ``next_retry_delay``.
The unit part on values built here; the last test on a real refusal of the real proxy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import requests
import stripe
from conductor.client.http.models.task import Task
from conductor.client.worker.worker import Worker
from resend.exceptions import RateLimitError as ResendRateLimitError
from temporalio.exceptions import ApplicationError

from keybrake import (
    LIMIT_REFUSED_EXIT_CODE,
    LIMIT_REFUSALS,
    CapExhaustedError,
    KeybrakeApiError,
    KeybrakeClient,
    exit_code_for,
    is_cap_hit,
    is_limit_refusal,
    keybrake_refusal,
    limit_refusal,
    retry_after_ms,
)
from keybrake.conductor import KeybrakeTaskContext, keybrake_worker
from keybrake.stripe import stripe_options
from keybrake.temporal import CONCURRENCY_LIMITED_FAILURE, RATE_LIMITED_FAILURE, to_temporal_failure


def body(code: str, retry_after_s: Any = None) -> bytes:
    extra = "" if retry_after_s is None else f',"retry_after_s":{retry_after_s}'
    return ('{"error":{"code":"%s","message":"limit"%s}}' % (code, extra)).encode()


def httpx_response(status: int, headers: dict, content: bytes) -> httpx.Response:
    return httpx.Response(status, headers=headers, content=content, request=httpx.Request("POST", "http://kb/stripe/v1/charges"))


def requests_response(status: int, headers: dict, content: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    response._content = content
    return response


@pytest.mark.parametrize("make", [httpx_response, requests_response], ids=["httpx", "requests"])
@pytest.mark.parametrize("code", LIMIT_REFUSALS)
def test_a_limit_refusal_is_named_by_the_error_header_with_its_retry_after(make, code: str) -> None:
    refused = make(429, {"X-Keybrake-Error": code, "Retry-After": "7"}, body(code, 7))
    assert limit_refusal(refused) == code
    assert is_limit_refusal(refused)
    assert retry_after_ms(refused) == 7000
    # Transient: neither a cap hit nor a final refusal; its own exit code, outside 75..81.
    assert not is_cap_hit(refused)
    assert keybrake_refusal(refused) is None
    assert exit_code_for(refused) == LIMIT_REFUSED_EXIT_CODE == 82


def test_a_cap_hit_and_a_vendors_own_429_are_never_limit_refusals() -> None:
    capped = httpx_response(429, {"X-Keybrake-Cap-Hit": "true", "X-Keybrake-Error": "cap_exhausted"}, body("cap_exhausted"))
    assert limit_refusal(capped) is None and retry_after_ms(capped) is None
    assert exit_code_for(capped) == 75
    # A vendor's 429 whose body says rate_limited: no proxy header, so not ours.
    vendors = httpx_response(429, {"Retry-After": "3"}, body("rate_limited", 3))
    assert limit_refusal(vendors) is None and retry_after_ms(vendors) is None
    assert exit_code_for(vendors) == 1
    for value in (None, "rate_limited", 429, ValueError("rate_limited"), CapExhaustedError()):
        assert not is_limit_refusal(value)


def test_sdk_errors_and_this_packages_errors() -> None:
    refused = stripe.RateLimitError(
        "limit",
        http_status=429,
        json_body={"error": {"code": "concurrency_limited", "retry_after_s": 1}},
        headers={"x-keybrake-error": "concurrency_limited", "retry-after": "1"},
    )
    assert limit_refusal(refused) == "concurrency_limited" and retry_after_ms(refused) == 1000
    vendors = stripe.RateLimitError("rate limited", http_status=429, json_body={"error": {"code": "rate_limited"}}, headers={})
    assert limit_refusal(vendors) is None
    resend_refused = ResendRateLimitError("limit", "rate_limited", 429, headers={"x-keybrake-error": "rate_limited", "retry-after": "2"})
    assert limit_refusal(resend_refused) == "rate_limited" and retry_after_ms(resend_refused) == 2000
    # An error of this package: its retry_after_s, else the smallest Retry-After the proxy sends.
    assert retry_after_ms(KeybrakeApiError(429, "rate_limited", "m", retry_after_s=4)) == 4000
    assert retry_after_ms(KeybrakeApiError(429, "concurrency_limited", "m")) == 1000
    assert limit_refusal(KeybrakeApiError(429, "cap_exhausted", "m")) is None
    # Only the body, no headers at all (stripe's json_body): still recognised, with its retry_after_s.
    headerless = stripe.RateLimitError("limit", http_status=429, json_body={"error": {"code": "rate_limited", "retry_after_s": 5}})
    headerless.headers = None
    assert limit_refusal(headerless) == "rate_limited" and retry_after_ms(headerless) == 5000


def run_conductor(error: Exception) -> Any:
    def charge(task: Task, keybrake: KeybrakeTaskContext) -> dict:
        raise error

    worker = Worker("charge", keybrake_worker(charge, proxy_url="http://keybrake:8080"))
    task = Task(task_id="t-1", workflow_instance_id="wf-1", reference_task_name="charge__1", input_data={"vaultKey": "kb_x"})
    return worker.execute(task)


def test_conductor_a_limit_refusal_is_handed_back_in_progress_after_retry_after() -> None:
    result = run_conductor(KeybrakeApiError(429, "rate_limited", "limit", retry_after_s=3))
    assert result.status == "IN_PROGRESS"
    assert result.callback_after_seconds == 3
    assert result.output_data["error"] == {"code": "rate_limited", "message": "Keybrake limit (rate_limited): limit", "retry_after_s": 3}
    # A cap hit in the same worker stays terminal.
    assert run_conductor(CapExhaustedError()).status == "FAILED_WITH_TERMINAL_ERROR"


def test_temporal_a_limit_refusal_is_retryable_after_retry_after() -> None:
    rate = to_temporal_failure(KeybrakeApiError(429, "rate_limited", "m", retry_after_s=2))
    assert isinstance(rate, ApplicationError)
    assert rate.type == RATE_LIMITED_FAILURE and not rate.non_retryable
    assert rate.next_retry_delay == timedelta(seconds=2)
    concurrency = to_temporal_failure(KeybrakeApiError(429, "concurrency_limited", "m"))
    assert isinstance(concurrency, ApplicationError)
    assert concurrency.type == CONCURRENCY_LIMITED_FAILURE and concurrency.next_retry_delay == timedelta(seconds=1)


def test_a_real_limit_refusal_of_the_proxy_through_the_official_stripe_sdk(admin: KeybrakeClient, proxy_url: str) -> None:
    key = admin.issue_vault_key(
        vendor="stripe", usd_cap=50, allowed_endpoints=["GET /v1/balance"], expires_in="10m", max_requests_per_minute=1
    )
    assert admin.get_vault_key(key["key_id"])["limits"]["max_requests_per_minute"] == 1
    client = stripe.StripeClient(key["vault_key"], **stripe_options(proxy_url, max_network_retries=0))
    # One call a minute: of three calls in a row (two minutes at most), one is refused.
    refused = None
    for _ in range(3):
        try:
            client.v1.balance.retrieve()
        except stripe.StripeError as error:
            refused = error
            break
    assert refused is not None
    assert refused.http_status == 429
    assert limit_refusal(refused) == "rate_limited"
    assert not is_cap_hit(refused) and keybrake_refusal(refused) is None
    seconds = int(refused.headers["retry-after"])
    assert 1 <= seconds <= 60
    assert retry_after_ms(refused) == seconds * 1000
    assert exit_code_for(refused) == 82
    mapped = to_temporal_failure(refused)
    assert isinstance(mapped, ApplicationError) and mapped.type == RATE_LIMITED_FAILURE
    assert mapped.next_retry_delay == timedelta(seconds=seconds)
    result = run_conductor(refused)
    assert result.status == "IN_PROGRESS" and result.callback_after_seconds == seconds
