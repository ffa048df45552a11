"""Client connections at the front door: slow or silent clients cannot hold them forever."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.support.moorage_server import RunningServer, moorage_server


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {"MOORAGE_IDLE_TIMEOUT_SECONDS": "1", "MOORAGE_REQUEST_TIMEOUT_SECONDS": "1"}
    with moorage_server(tmp_path_factory.mktemp("conn"), env=env) as server:
        yield server


def _connect(server: RunningServer) -> socket.socket:
    address = urlsplit(server.url)
    return socket.create_connection((address.hostname, address.port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_request_head_that_never_finishes_gets_408(quick: RunningServer) -> None:
    with _connect(quick) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHo")
        reply = _read_all(sock)  # returns when the server closes; a socket timeout would raise
    assert reply.startswith(b"HTTP/1.1 408")


def test_an_idle_keep_alive_connection_is_closed(quick: RunningServer) -> None:
    with _connect(quick) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        assert _read_all(sock) == b""  # nothing more: the server hung up after the idle timeout


def test_a_silent_connection_does_not_block_others(quick: RunningServer) -> None:
    silent = [_connect(quick) for _ in range(20)]
    try:
        with _connect(quick) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_all(sock).startswith(b"HTTP/1.1 200")
    finally:
        for sock in silent:
            sock.close()
