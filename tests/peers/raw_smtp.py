"""A raw SMTP client for hostile-input tests: sends exactly the bytes it is given (NUL,
bare CR, over-long lines) and reads whole replies, bounded in time."""

from __future__ import annotations

import socket
from dataclasses import dataclass

READ_TIMEOUT = 30.0  # bounds a hang, measures nothing


@dataclass(frozen=True)
class Reply:
    code: int
    text: str  # every line's text, joined by newlines

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class RawSmtp:
    def __init__(self, port: int, host: str = "127.0.0.1", *, source: str | None = None) -> None:
        self.sock = socket.create_connection(
            (host, port), timeout=READ_TIMEOUT, source_address=(source, 0) if source else None
        )
        self._buffer = b""

    def read(self) -> Reply:
        """One reply; code 0 when the server closed the connection first."""
        lines: list[str] = []
        while True:
            while b"\n" not in self._buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return Reply(0, "\n".join(lines) or "(closed)")
                self._buffer += chunk
            line, _, self._buffer = self._buffer.partition(b"\n")
            text = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(text[4:])
            if text[3:4] != "-":
                return Reply(int(text[:3]), "\n".join(lines))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: bytes | str) -> Reply:
        raw = line.encode() if isinstance(line, str) else line
        self.send(raw + b"\r\n")
        return self.read()

    def closed_by_server(self) -> bool:
        """True once the server has closed its side (reads EOF), bounded by the timeout."""
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, TimeoutError):
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
