"""API credentials (API.md §1): a name plus a random secret of 256 bits; only a hash is kept."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

SECRET_PREFIX = "vmta_"  # noqa: S105 - a marker prefix, not a secret
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def new_secret() -> str:
    """A fresh secret: 32 random bytes, URL-safe, with a prefix that secret scanners spot."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """SHA-256 of the secret, hex. The secret carries 256 random bits, so there is nothing a
    slow password hash would protect; a fast hash keeps every API request cheap."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def credential_name_problem(name: str) -> str | None:
    if not _NAME.match(name):
        return (
            "a credential name is 1-200 characters of letters, digits, '.', '_' and '-',"
            " starting with a letter or digit"
        )
    return None
