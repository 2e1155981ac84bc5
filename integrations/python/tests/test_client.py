"""issue 24: KeybrakeClient against the real admin API: issue, get, taint, list calls, revoke; and
its retry rules (a cap hit is never retried; an issue is not repeated after it may have been sent)."""

from __future__ import annotations

import socket
import threading
from typing import List

import httpx
import pytest

from keybrake import CapExhaustedError, KeybrakeApiError, KeybrakeClient


def test_issue_get_taint_list_and_revoke(admin: KeybrakeClient, proxy_url: str) -> None:
    key = admin.issue_vault_key(
        vendor="stripe", usd_cap=5, allowed_endpoints=["POST /v1/payment_intents"], expires_in="10m", agent_run_label="py/test"
    )
    assert key["vault_key"] and key["key_id"] and key["agent_run_label"] == "py/test"
    state = admin.get_vault_key(key["key_id"])
    assert state["status"] == "active" and state["spent_usd"] == 0 and "vault_key" not in state
    response = httpx.post(
        f"{proxy_url}/stripe/v1/payment_intents",
        headers={"authorization": f"Bearer {key['vault_key']}"},
        data={"amount": "100", "currency": "usd"},
    )
    assert response.status_code == 200
    calls = admin.list_calls(key["key_id"])
    assert [(call["method"], call["outcome"]) for call in calls] == [("POST", "forwarded")]
    assert admin.taint_vault_key(key["key_id"]) == {"key_id": key["key_id"], "tainted": True}
    assert admin.get_vault_key(key["key_id"])["tainted"] is True
    assert admin.revoke_vault_key(key["key_id"])["status"] == "revoked"
    assert admin.revoke_vault_key(key["key_id"])["status"] == "revoked"  # idempotent
    assert admin.get_vault_key(key["key_id"])["status"] == "revoked"


def test_errors_carry_the_proxys_code(admin: KeybrakeClient, proxy_url: str) -> None:
    with pytest.raises(KeybrakeApiError) as missing:
        admin.get_vault_key("key_does_not_exist")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(KeybrakeApiError) as invalid:
        admin.issue_vault_key(vendor="stripe", allowed_endpoints=[], expires_in="10m", usd_cap=1)
    assert (invalid.value.status, invalid.value.code) == (400, "invalid_request")
    with KeybrakeClient(proxy_url, "not-an-issuer-key") as stranger, pytest.raises(KeybrakeApiError) as unauthorized:
        stranger.get_vault_key("x")
    assert unauthorized.value.code == "unauthorized"


class CountingServer:
    """A stand-in admin API answering every request with a fixed status, counting them."""

    def __init__(self, status: int, headers: str = "", body: bytes = b'{"error":{"code":"x","message":"m"}}') -> None:
        self.requests: List[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        answer = (
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{headers}content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode() + body
        threading.Thread(target=self._serve, args=(answer,), daemon=True).start()

    def _serve(self, answer: bytes) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self.requests.append(connection.recv(65536))
            connection.sendall(answer)
            connection.close()

    def close(self) -> None:
        self._server.close()


def test_a_cap_hit_is_never_retried() -> None:
    server = CountingServer(429, "x-keybrake-cap-hit: true\r\n", b'{"error":{"code":"cap_exhausted","message":"cap"}}')
    try:
        with KeybrakeClient(server.url, "k", max_network_retries=3) as client, pytest.raises(CapExhaustedError):
            client.get_vault_key("k1")
        assert len(server.requests) == 1
    finally:
        server.close()


def test_reads_are_retried_on_502_but_an_issue_is_not() -> None:
    server = CountingServer(502)
    try:
        with KeybrakeClient(server.url, "k", max_network_retries=2) as client:
            with pytest.raises(KeybrakeApiError):
                client.get_vault_key("k1")
            assert len(server.requests) == 3
            with pytest.raises(KeybrakeApiError):
                client.issue_vault_key(vendor="stripe", usd_cap=1, allowed_endpoints=["GET /v1/x"], expires_in=60)
            assert len(server.requests) == 4
    finally:
        server.close()


def test_an_issue_is_retried_when_the_store_stored_nothing() -> None:
    server = CountingServer(503, body=b'{"error":{"code":"store_unavailable","message":"m"}}')
    try:
        with KeybrakeClient(server.url, "k", max_network_retries=1) as client, pytest.raises(KeybrakeApiError) as caught:
            client.issue_vault_key(vendor="stripe", usd_cap=1, allowed_endpoints=["GET /v1/x"], expires_in=60)
        assert caught.value.code == "store_unavailable"
        assert len(server.requests) == 2
    finally:
        server.close()
