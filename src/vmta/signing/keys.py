"""DKIM key material: generating keys, reading imported PEM, deriving what DNS publishes.

Errors never quote the key: a refused import says what is wrong with it, not what it was.

`cryptography` is imported when a key is first generated or read, not with this module:
it is about 7 MB in every process, and a node with no DKIM key never needs it
(docs/PERFORMANCE.md, "Round 5: memory").
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, TypeAlias

from vmta.domain.config.dkim_key import ED25519, MAX_RSA_BITS, MIN_RSA_BITS, RSA, KeyMaterial

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

PrivateKey: TypeAlias = "rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey"
# RFC 8017 A.1.1 / RFC 5958: what a PEM import may be.
_PEM_KINDS = (b"-----BEGIN RSA PRIVATE KEY-----", b"-----BEGIN PRIVATE KEY-----")
MAX_PEM_LENGTH = 16_384  # an 8192-bit PKCS#8 key is about 6.4 KB


class KeyRefused(ValueError):
    """A key that cannot be used; the message never holds key material."""


def generate(key_type: str, bits: int | None) -> KeyMaterial:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if key_type == ED25519:
        return material(ed25519.Ed25519PrivateKey.generate())
    assert bits is not None and MIN_RSA_BITS <= bits <= MAX_RSA_BITS
    # RFC 8301 §3.2 and common practice: exponent 65537.
    return material(rsa.generate_private_key(public_exponent=65537, key_size=bits))


def load(pem: str, key_type: str | None = None) -> PrivateKey:
    """The private key of a PEM text (PKCS#1 RSA or PKCS#8 RSA/Ed25519); ``key_type``,
    when given, is the type it must be."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    data = pem.strip().encode("ascii", "replace")
    if len(data) > MAX_PEM_LENGTH:
        raise KeyRefused(f"must be at most {MAX_PEM_LENGTH} characters")
    if not data.startswith(_PEM_KINDS):
        raise KeyRefused(
            "must be a PEM private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY),"
            " without a password"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyRefused("is not a readable PEM private key (or is encrypted)") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise KeyRefused(
                f"must be an RSA key of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, not {key.key_size}"
            )
        found = RSA
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        found = ED25519
    else:
        raise KeyRefused("must be an RSA or an Ed25519 private key")
    if key_type is not None and found != key_type:
        raise KeyRefused(f"is an {found} key, but key.type is {key_type}")
    return key


def material(key: PrivateKey, pem: str | None = None) -> KeyMaterial:
    """What vmta stores of a key: type, bits, the PEM (as imported, or PKCS#8) and the
    public key as DNS publishes it (RFC 6376 §3.6.1 p=; RFC 8463 §4 for Ed25519)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if pem is None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return KeyMaterial(ED25519, 256, pem, base64.b64encode(raw).decode("ascii"))
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyMaterial(RSA, key.key_size, pem, base64.b64encode(der).decode("ascii"))


def imported(pem: str, key_type: str | None = None) -> KeyMaterial:
    """The material of an imported PEM key; raises KeyRefused."""
    text = pem.strip().replace("\r\n", "\n") + "\n"
    return material(load(text, key_type), text)
