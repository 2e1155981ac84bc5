"""Issue 25: ``TokenFile``, the token provider that re-reads a projected token when the kubelet
rotates it, and ``KeybrakeClient(token_provider=...)`` sending it as the bearer."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from keybrake import KeybrakeApiError, KeybrakeClient, TokenFile, TokenFileError


class ProjectedVolume:
    """A projected volume as the kubelet's AtomicWriter writes it: each version in a timestamped
    hidden folder, ``..data`` a symlink to the current one, ``token`` a symlink to ``..data/token``.
    A rotation writes a new folder, points ``..data_tmp`` at it, renames it over ``..data`` (the one
    atomic step) and removes the old folder."""

    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        self._version = 0
        self._current: Optional[str] = None
        self.rotate(token)
        os.symlink(os.path.join("..data", "token"), root / "token")
        self.path = str(root / "token")

    def rotate(self, token: str) -> None:
        self._version += 1
        folder = f"..2026_12_02_00_00_00.{self._version:09d}"
        (self.root / folder).mkdir()
        (self.root / folder / "token").write_text(token)
        os.symlink(folder, self.root / "..data_tmp")
        os.rename(self.root / "..data_tmp", self.root / "..data")
        if self._current is not None:
            for child in (self.root / self._current).iterdir():
                child.unlink()
            (self.root / self._current).rmdir()
        self._current = folder


def _answer_error(handler: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
    """Answers the request with the contract's error body."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def recording_server() -> Iterator[Tuple[str, List[Optional[str]]]]:
    """A server of ours that records each request's Authorization header and answers 404."""
    seen: List[Optional[str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.headers.get("authorization"))
            _answer_error(self, 404, "not_found", "no such key")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_sends_the_file_token_and_the_new_one_after_a_kubelet_data_swap(
    tmp_path: Path, recording_server: Tuple[str, List[Optional[str]]]
) -> None:
    url, seen = recording_server
    volume = ProjectedVolume(tmp_path, "token-one\n")
    with KeybrakeClient(url, token_provider=TokenFile(volume.path)) as client:
        for _ in range(2):
            with pytest.raises(KeybrakeApiError):
                client.get_vault_key("key_a")
        volume.rotate("token-two")
        with pytest.raises(KeybrakeApiError):
            client.get_vault_key("key_a")
        volume.rotate("token-three")
        volume.rotate("token-four")
        with pytest.raises(KeybrakeApiError):
            client.get_vault_key("key_a")
    assert seen == ["Bearer token-one", "Bearer token-one", "Bearer token-two", "Bearer token-four"]


def test_against_the_real_proxy_a_refused_rotation_gives_401_and_the_next_valid_token_works(
    tmp_path: Path, proxy_url: str
) -> None:
    issuer_key = os.environ["KEYBRAKE_TEST_ISSUER_KEY"]
    # The bearer is opaque to the client: the issuer key stands in for a valid token here.
    volume = ProjectedVolume(tmp_path, issuer_key)
    with KeybrakeClient(proxy_url, token_provider=TokenFile(volume.path)) as client:
        issued = client.issue_vault_key(
            vendor="stripe", usd_cap=5, allowed_endpoints=["POST /v1/payment_intents"], expires_in="10m"
        )
        volume.rotate("kb_admin_not-trusted")
        with pytest.raises(KeybrakeApiError) as refused:
            client.get_vault_key(issued["key_id"])
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        volume.rotate(issuer_key)
        assert client.get_vault_key(issued["key_id"])["status"] == "active"
        assert client.revoke_vault_key(issued["key_id"]) == {"key_id": issued["key_id"], "status": "revoked"}


def test_an_unusable_token_file_raises_token_file_error_with_the_path_never_the_text(
    tmp_path: Path, recording_server: Tuple[str, List[Optional[str]]]
) -> None:
    url, seen = recording_server
    missing = str(tmp_path / "absent")
    with KeybrakeClient(url, token_provider=TokenFile(missing)) as client:
        with pytest.raises(TokenFileError) as error:
            client.get_vault_key("key_a")
    assert error.value.path == missing
    assert error.value.code == "token_file_unreadable"
    (tmp_path / "empty").write_text(" \n")
    with pytest.raises(TokenFileError):
        TokenFile(str(tmp_path / "empty"))()
    (tmp_path / "two-lines").write_text("eyJhbGciOiJSUzI1NiJ9.secret-part\ninjected: header")
    with pytest.raises(TokenFileError) as two_lines:
        TokenFile(str(tmp_path / "two-lines"))()
    assert "secret-part" not in str(two_lines.value)
    assert "secret-part" not in repr(two_lines.value)
    assert seen == []


def test_takes_exactly_one_of_api_key_and_token_provider() -> None:
    with pytest.raises(TypeError):
        KeybrakeClient("http://127.0.0.1:1")
    with pytest.raises(TypeError):
        KeybrakeClient("http://127.0.0.1:1", "key", token_provider=lambda: "token")


def test_a_401_token_expired_is_retried_once_with_the_rotated_token_never_without_a_rotation(tmp_path: Path) -> None:
    volume = ProjectedVolume(tmp_path, "old-token")
    seen: List[Optional[str]] = []
    rotate_on_expiry: List[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            authorization = self.headers.get("authorization")
            seen.append(authorization)
            expired = authorization == "Bearer old-token"
            if expired and rotate_on_expiry:
                volume.rotate(rotate_on_expiry[0])
            if expired:
                _answer_error(self, 401, "token_expired", "x")
            else:
                _answer_error(self, 404, "not_found", "x")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with KeybrakeClient(url, token_provider=TokenFile(volume.path), max_network_retries=0) as client:
            with pytest.raises(KeybrakeApiError) as refused:
                client.get_vault_key("key_a")
            assert (refused.value.status, refused.value.code) == (401, "token_expired")
            assert seen == ["Bearer old-token"]
            rotate_on_expiry.append("new-token")
            with pytest.raises(KeybrakeApiError) as answered:
                client.get_vault_key("key_a")
            assert answered.value.status == 404
        assert seen == ["Bearer old-token", "Bearer old-token", "Bearer new-token"]
    finally:
        server.shutdown()
        server.server_close()
