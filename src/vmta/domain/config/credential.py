"""API credentials (contract §1): a name, a secret, a scope; only a hash of the secret is kept.

Two kinds of secret, two hashes. A secret vmta generates carries 256 random bits: nothing a
slow hash could protect, so it is kept as SHA-256 and every request stays cheap. A secret
an operator chose (``VMTA_API_TOKEN``) may be guessable, so it is kept as a salted scrypt
hash (RFC 7914) that makes each guess against a stolen database costly. Callers cache
positive answers, so the slow hash is paid once per client and cache period.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Literal

SECRET_PREFIX = "vmta_"  # noqa: S105 - a marker prefix, not a secret
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

Scope = Literal["admin", "submit"]
SCOPES: tuple[Scope, ...] = ("admin", "submit")
# admin: every endpoint (and SMTP AUTH only when the operator allows it); submit: message
# injection only (SMTP AUTH and the injection endpoints), 403 elsewhere.
DEFAULT_SCOPE: Scope = "admin"

# scrypt cost: N=2**14, r=8, p=1 (RFC 7914 §2's interactive example; 16 MiB, tens of ms).
SCRYPT_PREFIX = "scrypt$"
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_LENGTH = 32
_SCRYPT_MAX_N = 2**20  # a stored hash asking for more is refused, not computed


def new_secret() -> str:
    """A fresh secret: 32 random bytes, URL-safe, with a prefix that secret scanners spot."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """SHA-256 of a generated secret, hex (see the module's docstring for why fast)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hash_chosen_secret(secret: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of an operator-chosen secret:
    ``scrypt$N$r$p$<salt, base64>$<hash, base64>``."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)]
    )


def is_slow_hash(stored_hash: str) -> bool:
    """True for a salted hash: it cannot be found by hashing a presented secret."""
    return stored_hash.startswith(SCRYPT_PREFIX)


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash of either kind."""
    if not is_slow_hash(stored_hash):
        return hmac.compare_digest(hash_secret(secret), stored_hash)
    try:
        _, n, r, p, salt, digest = stored_hash.split("$")
        cost = (int(n), int(r), int(p))
        expected = base64.b64decode(digest, validate=True)
        salt_bytes = base64.b64decode(salt, validate=True)
    except ValueError:
        return False  # a damaged row never matches
    if not (1 < cost[0] <= _SCRYPT_MAX_N and 0 < cost[1] <= 32 and 0 < cost[2] <= 16):
        return False
    return hmac.compare_digest(_scrypt(secret, salt_bytes, *cost), expected)


def credential_name_problem(name: str) -> str | None:
    if not _NAME.match(name):
        return (
            "a credential name is 1-200 characters of letters, digits, '.', '_' and '-',"
            " starting with a letter or digit"
        )
    return None


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    data = secret.encode("utf-8", "surrogatepass")
    return hashlib.scrypt(data, salt=salt, n=n, r=r, p=p, maxmem=0x7FFFFFFF, dklen=_SCRYPT_LENGTH)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
