"""DKIM signing keys (RFC 6376 §3.6) as records: which domain and selector a key signs
for, whether it is the domain's default, and the DNS record an operator publishes.

Pure rules; the key material itself (generating, reading PEM) is ``vmta.signing.keys``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RSA = "rsa"
ED25519 = "ed25519"  # RFC 8463
KEY_TYPES = (RSA, ED25519)
MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers must refuse smaller keys
MAX_RSA_BITS = 8192
ED25519_BITS = 256  # what lists report as key_bits for an Ed25519 key
MAX_NAME_LENGTH = 200
# A DNS label (RFC 1035 §2.3.1, letters, digits and dashes; no dash at either end).
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")
# A selector is one or more labels (RFC 6376 §3.1); dots and dashes allowed, as GreenArrow.
_SELECTOR = re.compile(r"^[A-Za-z0-9.-]+$")


def domain_problems(text: str) -> list[str]:
    if not 1 <= len(text) <= MAX_NAME_LENGTH:
        return [f"must be from 1 to {MAX_NAME_LENGTH} characters"]
    if not all(_LABEL.match(label) for label in text.split(".")):
        return [
            "must be dot-separated labels of letters, digits and dashes"
            " (no empty label, no label starting or ending with a dash)"
        ]
    return []


def selector_problems(text: str) -> list[str]:
    if not 1 <= len(text) <= MAX_NAME_LENGTH:
        return [f"must be from 1 to {MAX_NAME_LENGTH} characters"]
    if not _SELECTOR.match(text):
        return ["may hold only letters, digits, dashes and dots"]
    if any(not part for part in text.split(".")):
        return ["must not start or end with a dot, nor hold two dots in a row"]
    return []


def key_of(domain: str, selector: str) -> tuple[str, str]:
    """How keys are compared and looked up: domain and selector ignoring case."""
    return domain.lower(), selector.lower()


@dataclass(frozen=True)
class KeyMaterial:
    """A private key as vmta stores it, and what is derived from it."""

    type: str  # RSA or ED25519
    bits: int
    private_pem: str  # PKCS#8 for Ed25519; as imported (PKCS#1 or #8) or PKCS#8 for RSA
    public: str  # base64 of the DER SubjectPublicKeyInfo (RSA) or of the raw 32 bytes

    def __repr__(self) -> str:  # never the private key, should a record be logged
        return f"KeyMaterial(type={self.type!r}, bits={self.bits})"


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    default_for_domain: bool
    material: KeyMaterial
    id: int | None = None

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def dns_value(self) -> str:
        """The TXT value to publish (RFC 6376 §3.6.1), without ``v=DKIM1;``: GreenArrow
        clients prepend that themselves."""
        return f"k={self.material.type}; p={self.material.public}"


@dataclass(frozen=True)
class DkimKeyRow:
    """A key as lists show it: never the private key."""

    id: int
    domain: str
    selector: str
    default_for_domain: bool
    key_type: str
    key_bits: int
    public: str

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def dns_value(self) -> str:
        return f"k={self.key_type}; p={self.public}"
