"""issue 24: the official stripe, twilio and resend Python SDKs through the real proxy, each with the
two-line change the README shows: happy path, cap hit (terminal, never retried, nothing reaches
the vendor), revocation, retry-replay (one charge upstream), and a vendor's own 429 (not a cap hit).

Upstreams: stripe-mock (behind a counting relay); Twilio and Resend are stand-ins of our own (no
mock of theirs runs here), see integrations/python/test/python.test.ts.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import pytest
import resend
import stripe
import twilio.rest
from resend.exceptions import ResendError
from twilio.base.exceptions import TwilioRestException

from keybrake import (
    CapExhaustedError,
    KeybrakeApiError,
    KeybrakeClient,
    derive_idempotency_key,
    exit_code_for,
    is_cap_hit,
    keybrake_refusal,
)
from keybrake.resend import resend_base_url
from keybrake.stripe import stripe_options
from keybrake.twilio import TWILIO_PLACEHOLDER_SID, twilio_http_client, twilio_idempotency_key

Witness = Callable[[], Dict[str, Any]]
PAYMENT_INTENTS = ["POST /v1/payment_intents"]
MESSAGES = ["POST /2010-04-01/Accounts/*/Messages.json"]
EMAILS = ["POST /emails"]


def issue(admin: KeybrakeClient, vendor: str, cap: float, endpoints: list, **extra: Any) -> Dict[str, Any]:
    return admin.issue_vault_key(vendor=vendor, usd_cap=cap, allowed_endpoints=endpoints, expires_in="10m", **extra)


def outcomes(admin: KeybrakeClient, key_id: str) -> list:
    return [(call["outcome"], call["reason"]) for call in admin.list_calls(key_id)]


# --- stripe ---------------------------------------------------------------------------------------


def test_stripe_charges_with_only_the_key_and_base_url_changed(admin: KeybrakeClient, proxy_url: str, witness: Witness) -> None:
    key = issue(admin, "stripe", 50, PAYMENT_INTENTS)
    before = witness()["stripe_charges"]
    client = stripe.StripeClient(key["vault_key"], **stripe_options(proxy_url))
    intent = client.v1.payment_intents.create({"amount": 2000, "currency": "usd"})
    assert intent.object == "payment_intent"
    assert admin.get_vault_key(key["key_id"])["spent_usd"] == 20
    assert witness()["stripe_charges"] == before + 1


def test_stripe_cap_hit_is_recognised_and_never_retried_by_the_sdk(admin: KeybrakeClient, proxy_url: str, witness: Witness) -> None:
    key = issue(admin, "stripe", 10, PAYMENT_INTENTS)
    before = witness()["stripe_charges"]
    client = stripe.StripeClient(key["vault_key"], **stripe_options(proxy_url, max_network_retries=3))
    with pytest.raises(stripe.RateLimitError) as caught:
        client.v1.payment_intents.create({"amount": 2000, "currency": "usd"})
    assert caught.value.http_status == 429
    assert is_cap_hit(caught.value)
    assert keybrake_refusal(caught.value) == "cap_exhausted"
    assert exit_code_for(caught.value) == 75
    # One blocked call: the SDK's three retries never happened; nothing reached Stripe.
    assert outcomes(admin, key["key_id"]) == [("blocked", "cap_exhausted")]
    assert witness()["stripe_charges"] == before


def test_stripe_sdk_retry_after_a_dropped_response_is_replayed_not_charged_twice(
    admin: KeybrakeClient, dropping_relay: Callable[..., Any], witness: Witness
) -> None:
    key = issue(admin, "stripe", 50, PAYMENT_INTENTS)
    relay = dropping_relay(1)
    before = witness()["stripe_charges"]
    client = stripe.StripeClient(key["vault_key"], **stripe_options(relay.url, max_network_retries=2))
    intent = client.v1.payment_intents.create({"amount": 1500, "currency": "usd"})
    assert intent.amount == 1500
    assert relay.dropped == 1
    calls = admin.list_calls(key["key_id"])
    assert [call["outcome"] for call in calls] == ["forwarded", "replayed"]
    assert calls[0]["idempotency_key"] and calls[1]["idempotency_key"] == calls[0]["idempotency_key"]
    assert admin.get_vault_key(key["key_id"])["spent_usd"] == 15
    assert witness()["stripe_charges"] == before + 1


def test_stripe_retry_with_a_derived_key_is_replayed(admin: KeybrakeClient, proxy_url: str, witness: Witness) -> None:
    key = issue(admin, "stripe", 50, PAYMENT_INTENTS)
    before = witness()["stripe_charges"]
    client = stripe.StripeClient(key["vault_key"], **stripe_options(proxy_url, max_network_retries=0))
    idempotency_key = derive_idempotency_key(["wf-py-1", "charge", "cus_1"])
    first = client.v1.payment_intents.create({"amount": 700, "currency": "usd"}, {"idempotency_key": idempotency_key})
    again = client.v1.payment_intents.create({"amount": 700, "currency": "usd"}, {"idempotency_key": idempotency_key})
    assert again.id == first.id
    assert [outcome for outcome, _ in outcomes(admin, key["key_id"])] == ["forwarded", "replayed"]
    assert admin.get_vault_key(key["key_id"])["spent_usd"] == 7
    assert witness()["stripe_charges"] == before + 1


def test_stripe_revocation_is_an_authentication_error_named_vault_key_revoked(admin: KeybrakeClient, proxy_url: str) -> None:
    key = issue(admin, "stripe", 50, PAYMENT_INTENTS)
    assert admin.revoke_vault_key(key["key_id"])["status"] == "revoked"
    client = stripe.StripeClient(key["vault_key"], **stripe_options(proxy_url))
    with pytest.raises(stripe.AuthenticationError) as caught:
        client.v1.payment_intents.create({"amount": 100, "currency": "usd"})
    assert not is_cap_hit(caught.value)
    assert keybrake_refusal(caught.value) == "vault_key_revoked"
    assert exit_code_for(caught.value) == 79


def test_stripe_tainted_key_refused_on_a_money_moving_endpoint(admin: KeybrakeClient, proxy_url: str) -> None:
    key = issue(admin, "stripe", 50, PAYMENT_INTENTS, tainted=True)
    client = stripe.StripeClient(key["vault_key"], **stripe_options(proxy_url))
    with pytest.raises(stripe.PermissionError) as caught:
        client.v1.payment_intents.create({"amount": 100, "currency": "usd"})
    assert keybrake_refusal(caught.value) == "tainted_request_refused"
    assert not is_cap_hit(caught.value)


def test_stripe_own_429_is_not_a_cap_hit(admin_429: KeybrakeClient, vendor_429_proxy_url: str) -> None:
    key = issue(admin_429, "stripe", 50, PAYMENT_INTENTS)
    client = stripe.StripeClient(key["vault_key"], **stripe_options(vendor_429_proxy_url, max_network_retries=0))
    with pytest.raises(stripe.RateLimitError) as caught:
        client.v1.payment_intents.create({"amount": 100, "currency": "usd"})
    assert caught.value.http_status == 429
    assert not is_cap_hit(caught.value)
    assert keybrake_refusal(caught.value) is None
    assert exit_code_for(caught.value) == 1
    assert outcomes(admin_429, key["key_id"]) == [("forwarded", None)]


# --- twilio ---------------------------------------------------------------------------------------


def twilio_client(proxy_url: str, vault_key: str) -> twilio.rest.Client:
    return twilio.rest.Client(TWILIO_PLACEHOLDER_SID, vault_key, http_client=twilio_http_client(proxy_url))


def send_sms(client: twilio.rest.Client, body: str) -> Any:
    return client.messages.create(to="+15005550006", from_="+15005550001", body=body)


def test_twilio_sends_with_only_the_credentials_and_http_client_changed(admin: KeybrakeClient, proxy_url: str, witness: Witness) -> None:
    key = issue(admin, "twilio", 1, MESSAGES)
    message = send_sms(twilio_client(proxy_url, key["vault_key"]), "hello")
    assert message.status == "queued"
    seen = witness()
    # The proxy rewrote the placeholder SID to the real account's.
    assert seen["twilio_paths"][-1] == f"/2010-04-01/Accounts/{seen['twilio_account_sid']}/Messages.json"
    assert admin.get_vault_key(key["key_id"])["spent_usd"] == pytest.approx(0.01)


def test_twilio_cap_hit_raises_cap_exhausted_and_reaches_no_vendor(admin: KeybrakeClient, proxy_url: str, witness: Witness) -> None:
    key = issue(admin, "twilio", 0.015, MESSAGES)
    client = twilio_client(proxy_url, key["vault_key"])
    send_sms(client, "one")
    before = witness()["twilio_requests"]
    with pytest.raises(CapExhaustedError) as caught:
        send_sms(client, "two")
    assert is_cap_hit(caught.value)
    assert exit_code_for(caught.value) == 75
    assert witness()["twilio_requests"] == before
    assert outcomes(admin, key["key_id"]) == [("forwarded", None), ("blocked", "cap_exhausted")]


def test_twilio_retry_in_one_idempotency_block_is_replayed(admin: KeybrakeClient, proxy_url: str, witness: Witness) -> None:
    key = issue(admin, "twilio", 1, MESSAGES)
    client = twilio_client(proxy_url, key["vault_key"])
    before = witness()["twilio_requests"]
    with twilio_idempotency_key(derive_idempotency_key(["wf-py-2", "sms", "+15005550006"])):
        first = send_sms(client, "receipt")
        again = send_sms(client, "receipt")
    assert again.sid == first.sid
    assert [outcome for outcome, _ in outcomes(admin, key["key_id"])] == ["forwarded", "replayed"]
    assert witness()["twilio_requests"] == before + 1
    assert admin.get_vault_key(key["key_id"])["spent_usd"] == pytest.approx(0.01)


def test_twilio_revocation_is_a_keybrake_refusal(admin: KeybrakeClient, proxy_url: str) -> None:
    key = issue(admin, "twilio", 1, MESSAGES)
    admin.revoke_vault_key(key["key_id"])
    with pytest.raises(KeybrakeApiError) as caught:
        send_sms(twilio_client(proxy_url, key["vault_key"]), "x")
    assert caught.value.status == 401
    assert keybrake_refusal(caught.value) == "vault_key_revoked"
    assert not is_cap_hit(caught.value)


def test_twilio_own_429_and_403_reach_the_sdk_and_are_not_refusals(admin: KeybrakeClient, proxy_url: str) -> None:
    key = issue(admin, "twilio", 1, MESSAGES)
    client = twilio_client(proxy_url, key["vault_key"])
    with pytest.raises(TwilioRestException) as limited:
        send_sms(client, "vendor-429")
    assert limited.value.status == 429
    assert not is_cap_hit(limited.value)
    assert keybrake_refusal(limited.value) is None
    with pytest.raises(TwilioRestException) as forbidden:
        send_sms(client, "vendor-403")
    assert forbidden.value.status == 403
    assert keybrake_refusal(forbidden.value) is None


# --- resend ---------------------------------------------------------------------------------------

EMAIL = {"from": "agent@example.com", "to": "customer@example.com", "subject": "Receipt", "text": "Thanks"}


@pytest.fixture
def resend_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """The README's two lines, undone after the test (the SDK is configured globally)."""

    def point(proxy_url: str, vault_key: str) -> None:
        monkeypatch.setattr(resend, "api_key", vault_key)
        monkeypatch.setattr(resend, "api_url", resend_base_url(proxy_url))

    return point


def test_resend_sends_then_reports_a_cap_hit(admin: KeybrakeClient, proxy_url: str, witness: Witness, resend_at: Any) -> None:
    key = issue(admin, "resend", 1, EMAILS)
    resend_at(proxy_url, key["vault_key"])
    before = witness()["resend_requests"]
    assert resend.Emails.send(EMAIL)["id"].startswith("email_")
    resend.Emails.send(EMAIL)
    with pytest.raises(ResendError) as caught:
        resend.Emails.send(EMAIL)
    assert is_cap_hit(caught.value)
    assert keybrake_refusal(caught.value) == "cap_exhausted"
    seen = witness()
    assert seen["resend_requests"] == before + 2
    # The stand-in saw the real secret, never the vault key.
    assert all(auth.startswith("Bearer re_") and key["vault_key"] not in auth for auth in seen["resend_authorizations"])
    assert admin.get_vault_key(key["key_id"])["spent_usd"] == pytest.approx(0.8)


def test_resend_retry_with_the_same_idempotency_key_is_replayed(
    admin: KeybrakeClient, proxy_url: str, witness: Witness, resend_at: Any
) -> None:
    key = issue(admin, "resend", 1, EMAILS)
    resend_at(proxy_url, key["vault_key"])
    before = witness()["resend_requests"]
    options = {"idempotency_key": derive_idempotency_key(["wf-py-3", "receipt"])}
    first = resend.Emails.send(EMAIL, options)  # type: ignore[arg-type]
    again = resend.Emails.send(EMAIL, options)  # type: ignore[arg-type]
    assert again["id"] == first["id"]
    assert [outcome for outcome, _ in outcomes(admin, key["key_id"])] == ["forwarded", "replayed"]
    assert witness()["resend_requests"] == before + 1


def test_resend_revocation_is_named_and_not_a_cap_hit(admin: KeybrakeClient, proxy_url: str, resend_at: Any) -> None:
    key = issue(admin, "resend", 1, EMAILS)
    admin.revoke_vault_key(key["key_id"])
    resend_at(proxy_url, key["vault_key"])
    with pytest.raises(ResendError) as caught:
        resend.Emails.send(EMAIL)
    assert not is_cap_hit(caught.value)
    assert keybrake_refusal(caught.value) == "vault_key_revoked"


def test_resend_own_429_is_not_a_cap_hit(admin: KeybrakeClient, proxy_url: str, resend_at: Any) -> None:
    key = issue(admin, "resend", 1, EMAILS)
    resend_at(proxy_url, key["vault_key"])
    with pytest.raises(ResendError) as caught:
        resend.Emails.send({**EMAIL, "subject": "vendor-429"})
    assert str(caught.value.code) == "429"
    assert not is_cap_hit(caught.value)
    assert keybrake_refusal(caught.value) is None
