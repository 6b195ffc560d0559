"""A bound on the size of request bodies, enforced while they are read.

A request whose ``Content-Length`` is over the bound is answered 413 (RFC 9110 §15.5.14)
before a byte of its body is read; a body without a length (chunked) is counted as it
arrives and refused the moment it passes the bound, so vmta never holds more than
``limit`` bytes of one body in memory. In that second case the 413 is sent from here and
the application is told that the client went away (``http.disconnect``): whatever it
would still answer is dropped, so the client gets exactly one response.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large_message(limit: int) -> str:
    return f"The request body is larger than {limit} bytes ({limit // 1024} KiB)."


class BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes with ``reject(path)``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        reject: Callable[[str, int], Response],
        larger: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.reject = reject
        # Paths that take whole messages (injection APIs) and allow more.
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.limit)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self.reject(scope["path"], limit)(scope, receive, send)
            return
        seen = 0
        refused = False

        async def bounded_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    await self.reject(scope["path"], limit)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def send_unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, bounded_receive, send_unless_refused)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.strip()
            # A malformed length is the server's (uvicorn's) to refuse; not ours to guess.
            return int(text) if text.isdigit() and len(text) < 20 else None
    return None
