"""API authentication (contract §1): Bearer or Basic, checked against hashed secrets.

Every path answers 401 without valid credentials, except the health check. Positive
answers are cached for a few seconds so that a busy client does not cost a database
query (or, for an operator-chosen secret, a scrypt hash) per request; a revoked
credential stops working within that time.

Scopes (contract §4): an ``admin`` credential may use every endpoint; a ``submit`` one only
the injection endpoints, and gets 403 in the family's error format elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi.responses import JSONResponse

from vmta.api.errors import error_response
from vmta.domain.config.bounds import has_control_character
from vmta.domain.config.credential import DEFAULT_SCOPE, Scope, hash_secret, secret_matches
from vmta.store.credentials import CredentialRecord, CredentialRepository
from vmta.store.store import Store

CACHE_SECONDS = 5.0
OPEN_PATHS = frozenset({"/api/health"})
# What a `submit` credential may call: message injection (contract §2.12, §3.6).
INJECTION_PATHS = frozenset({"/api/v1/send.json", "/v1/inject"})
# Paths that check credentials themselves, because the client may send them in the body
# (GreenArrow's HTTP Submission API); they still answer 401 without valid ones.
SELF_AUTHENTICATING_PATHS = frozenset({"/api/v1/send.json"})


@dataclass(frozen=True)
class Principal:
    name: str
    scope: Scope = DEFAULT_SCOPE


def may_use(principal: Principal, path: str) -> bool:
    """May ``principal`` call ``path``? Admin everything, submit only injection."""
    return principal.scope == "admin" or path in INJECTION_PATHS


def forbidden(path: str) -> JSONResponse:
    return error_response(
        path,
        403,
        "forbidden",
        ["This credential's scope (submit) allows message injection only."],
    )


class Authenticator:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, Principal]] = {}

    def check(self, authorization: str | None) -> Principal | None:
        """The principal an ``Authorization`` header proves, or None."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        scheme = scheme.lower()
        if scheme == "bearer" and value:
            return self._cached(hash_secret(value), lambda: self._by_secret(value))
        if scheme == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            name, sep, secret = decoded.partition(":")
            # No credential name holds a control character, and PostgreSQL cannot even
            # compare text with NUL in it: such a name proves nothing, without a query.
            if not sep or not secret or has_control_character(name):
                return None
            key = hash_secret(secret) + "|" + name
            return self._cached(key, lambda: self._by_name(name, secret))
        return None

    def check_password(self, name: str, secret: str) -> Principal | None:
        """The principal a credential name and secret prove, or None."""
        return self._cached(hash_secret(secret) + "|" + name, lambda: self._by_name(name, secret))

    def _cached(self, key: str, load: Callable[[], Principal | None]) -> Principal | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        principal: Principal | None = load()
        if principal is None:
            self._cache.pop(key, None)
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now, principal)
        return principal

    def _by_secret(self, secret: str) -> Principal | None:
        with self.store.read() as conn:
            repo = CredentialRepository(conn)
            record = repo.by_hash(hash_secret(secret))
            # A salted hash cannot be looked up: compare with each (only operator-chosen
            # secrets are salted, normally just admin's VMTA_API_TOKEN).
            candidates = [record] if record is not None else repo.slow_hashed()
        return _matching(secret, candidates)

    def _by_name(self, name: str, secret: str) -> Principal | None:
        with self.store.read() as conn:
            record = CredentialRepository(conn).by_name(name)
        return _matching(secret, [] if record is None else [record])


def _matching(secret: str, records: list[CredentialRecord]) -> Principal | None:
    for record in records:
        if secret_matches(secret, record.secret_sha256):
            return Principal(record.name, record.scope)
    return None
