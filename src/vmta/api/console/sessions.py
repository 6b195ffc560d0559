"""Console sessions: a random token in an ``HttpOnly`` cookie names a session held in this
process's memory, with the credential it was opened with and its CSRF token.

The CSRF defence is the synchronizer token of OWASP's CSRF Prevention Cheat Sheet, sent
the double-submit way: the token is also in a cookie that script reads (``SameSite=Strict``
like the session's), and every state-changing request must echo it in the
``X-CSRF-Token`` header or a ``csrf_token`` form field; the server compares it with the
session's own copy, not with the cookie. Before sign-in the sign-in form carries a token
of its own (against login CSRF), kept in the same cookie.

A session ends after ``IDLE`` seconds without a request, or ``LIFETIME`` after sign-in,
and at sign-out. The credential is looked up again every ``RECHECK`` seconds, so a
revoked credential (``vmta credentials revoke``) closes its sessions within that time.
Sessions live in this process: a restart signs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

SESSION_COOKIE = "vmta_console_session"
CSRF_COOKIE = "vmta_console_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
IDLE = 8 * 3600.0
LIFETIME = 24 * 3600.0
RECHECK = 30.0
MAX_SESSIONS = 10_000


@dataclass
class Session:
    name: str  # the credential's name: every action is logged with it
    csrf: str
    started: float
    last_seen: float
    checked: float  # when the credential was last found valid


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class Sessions:
    def __init__(self) -> None:
        self._by_token: OrderedDict[str, Session] = OrderedDict()

    def open(self, name: str, now: float) -> tuple[str, Session]:
        token = new_token()
        session = Session(name=name, csrf=new_token(), started=now, last_seen=now, checked=now)
        self._by_token[token] = session
        while len(self._by_token) > MAX_SESSIONS:
            self._by_token.popitem(last=False)  # the oldest first
        return token, session

    def find(self, token: str | None, now: float) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        if now - session.last_seen > IDLE or now - session.started > LIFETIME:
            del self._by_token[token]
            return None
        session.last_seen = now
        self._by_token.move_to_end(token)
        return session

    def close(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def close_all_of(self, name: str) -> None:
        for token in [t for t, s in self._by_token.items() if s.name == name]:
            del self._by_token[token]
