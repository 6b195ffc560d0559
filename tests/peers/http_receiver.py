"""A real HTTP server that records every POST (as an event receiver would), answers a
status chosen by the test, and can be taken down and brought back on the same port.

HTTP/1.0 without keep-alive: every request is its own connection, so a receiver that is
down refuses the next request instead of serving it over an old connection.

Fixture (registered as a plugin in tests/conftest.py): ``http_receiver``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest


@dataclass(frozen=True)
class Post:
    path: str
    content_type: str | None
    body: Any  # the parsed JSON, or the form's fields as a dict
    status: int  # what the receiver answered


class HttpReceiver:
    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.status = 200
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def url_for(self, path: str) -> str:
        """Another route of the same receiver (``posts`` record each request's path)."""
        return f"http://127.0.0.1:{self.port}/{path}"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                content_type = self.headers.get("Content-Type")
                if content_type == "application/x-www-form-urlencoded":
                    # GreenArrow's older form: one event, its fields as form values.
                    body: Any = dict(parse_qsl(raw.decode(), keep_blank_values=True))
                else:
                    body = json.loads(raw)
                with receiver._lock:
                    status = receiver.status
                    receiver.posts.append(Post(self.path, content_type, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: nothing listens on the port any more."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted_events(self) -> list[dict[str, Any]]:
        """Every event the receiver acknowledged (2xx), in arrival order."""
        with self._lock:
            posts = list(self.posts)
        found: list[dict[str, Any]] = []
        for post in posts:
            if 200 <= post.status < 300:
                found.extend(post.body if isinstance(post.body, list) else [post.body])
        return found


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
