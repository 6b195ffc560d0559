"""Request bodies are bounded at 1 MiB, checked while they arrive: a declared length over
the bound is refused before a byte of the body is read, and a streamed (chunked) body is
refused as soon as it passes the bound. The answer is 413 in the family's format."""

from __future__ import annotations

import json
import select
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, snapshot
from tests.conftest import TEST_SECRET
from vmta.store.store import Store

LIMIT = 1024 * 1024
MESSAGE = f"The request body is larger than {LIMIT} bytes (1024 KiB)."
CHUNK = 64 * 1024
GIVE_UP_AFTER = 100 * 1024 * 1024  # bounds the test if the server never stops reading

READING = [f"{GA}/relay_servers", "/v1/externalmtas"]  # endpoints that read their body
PATHS = [*READING, "/api/messages/0123456789ABCDEF0123/retry"]


def address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def head(path: str, *length_or_chunked: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {TEST_SECRET}",
        "Content-Type: application/json",
        *length_or_chunked,
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def read_response(conn: socket.socket) -> tuple[int, Any]:
    received = b""
    while b"\r\n\r\n" not in received or not _complete(received):
        chunk = conn.recv(65536)
        if not chunk:
            break
        received += chunk
    header, _, body = received.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    return status, json.loads(body)


def _complete(received: bytes) -> bool:
    header, _, body = received.partition(b"\r\n\r\n")
    for line in header.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def assert_family_413(path: str, status: int, body: Any) -> None:
    assert status == 413
    if path.startswith(GA):
        assert body == {
            "success": False,
            "data": None,
            "error_code": "invalid_request",
            "error_messages": [MESSAGE],
        }
    else:
        assert body == {"error": MESSAGE}


@pytest.mark.parametrize("path", PATHS)
def test_declared_length_over_the_bound_is_413_before_the_body_is_sent(
    live_api: str, store: Store, path: str
) -> None:
    before = snapshot(store)
    with socket.create_connection(address(live_api), timeout=30) as conn:
        # 100 MB announced, not one byte of it sent: the answer cannot depend on reading it.
        conn.sendall(head(path, "Content-Length: 100000000"))
        status, body = read_response(conn)
    assert_family_413(path, status, body)
    assert snapshot(store) == before


@pytest.mark.parametrize("path", READING)
def test_streamed_body_is_refused_once_it_passes_the_bound(
    live_api: str, store: Store, path: str
) -> None:
    before = snapshot(store)
    sent = 0
    chunk = b"%x\r\n%s\r\n" % (CHUNK, b" " * CHUNK)
    with socket.create_connection(address(live_api), timeout=30) as conn:
        conn.sendall(head(path, "Transfer-Encoding: chunked"))
        while sent < GIVE_UP_AFTER:
            readable, _, _ = select.select([conn], [], [], 0)
            if readable:
                break
            try:
                conn.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += CHUNK
        status, body = read_response(conn)
    assert_family_413(path, status, body)
    # The server stopped reading near the bound; what was sent past it sat in buffers.
    assert sent < 16 * LIMIT
    assert snapshot(store) == before


def test_body_of_exactly_the_bound_is_read(client: TestClient) -> None:
    padding = " " * (LIMIT - len('{"relay_server": []}'))
    body = '{"relay_server": []' + padding + "}"
    assert len(body) == LIMIT
    response = client.post(f"{GA}/relay_servers", content=body)
    assert failed(response, 400, "invalid_request") == ['"relay_server" must be a JSON object.']
    over = client.post(f"{GA}/relay_servers", content=body + " ")
    assert over.status_code == 413
