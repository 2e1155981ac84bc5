"""Fixtures: the real proxy and the upstreams that integrations/python/test/python.test.ts started
(through the environment), and a dropping relay for retry-replay."""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.request
from typing import Any, Callable, Dict, Iterator, List

import pytest

from keybrake import KeybrakeClient


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: these tests run from integrations/python/test/python.test.ts (pnpm test)")
    return value


@pytest.fixture
def proxy_url() -> str:
    return _env("KEYBRAKE_TEST_PROXY_URL")


@pytest.fixture
def vendor_429_proxy_url() -> str:
    """A proxy whose vendors (stand-ins) all answer their own 429."""
    return _env("KEYBRAKE_TEST_VENDOR_429_PROXY_URL")


@pytest.fixture
def admin(proxy_url: str) -> Iterator[KeybrakeClient]:
    with KeybrakeClient(proxy_url, _env("KEYBRAKE_TEST_ISSUER_KEY")) as client:
        yield client


@pytest.fixture
def admin_429(vendor_429_proxy_url: str) -> Iterator[KeybrakeClient]:
    with KeybrakeClient(vendor_429_proxy_url, _env("KEYBRAKE_TEST_ISSUER_KEY")) as client:
        yield client


@pytest.fixture
def witness() -> Callable[[], Dict[str, Any]]:
    """What reached the vendors: stripe-mock's charges (counted by a relay) and the stand-ins' requests."""
    url = _env("KEYBRAKE_TEST_WITNESS_URL")

    def read() -> Dict[str, Any]:
        with urllib.request.urlopen(url) as response:  # noqa: S310 - a loopback test server
            return dict(json.load(response))

    return read


class DroppingRelay:
    """A TCP relay in front of the proxy that lets the first ``drops`` requests through but drops
    their responses (the client sees the connection reset after the call was made), then relays
    normally: what a flaky network does to a charge that already happened."""

    def __init__(self, target: str, drops: int = 1) -> None:
        host_port = target.split("://", 1)[1].rstrip("/")
        host, port = host_port.split(":")
        self._target = (host, int(port))
        self._drops = drops
        self.dropped = 0
        self._claimed = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._sockets: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                drop = self._claimed < self._drops
                self._claimed += 1
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, drop), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, drop: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if drop:
                    # The proxy answered: the call happened. The client never hears of it.
                    with self._lock:
                        self.dropped += 1
                    for end in (source, sink):
                        try:
                            end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                            # shutdown wakes the other direction's thread, blocked in recv.
                            end.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._server.close()
        for end in self._sockets:
            try:
                end.close()
            except OSError:
                pass


@pytest.fixture
def dropping_relay(proxy_url: str) -> Iterator[Callable[..., DroppingRelay]]:
    relays: List[DroppingRelay] = []

    def start(drops: int = 1) -> DroppingRelay:
        relay = DroppingRelay(proxy_url, drops)
        relays.append(relay)
        return relay

    yield start
    for relay in relays:
        relay.close()
