"""DKIM key documents (GreenArrow's DKIM Keys page): request bodies to a plan, records
to responses.

A create names a key to generate (``key.bits``, or ``key.type: "ed25519"``) or one to
import (``key.private``, PEM). Every field is checked before a key is generated, so a
refused request costs no key generation and stores nothing. ``bits`` is a JSON number or
a numeric string (a PHP client sends ``"1024"``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from vmta.api.greenarrow.fields import Fields, JsonObject, kind_of
from vmta.domain.config.dkim_key import (
    ED25519,
    ED25519_BITS,
    KEY_TYPES,
    MAX_RSA_BITS,
    MIN_RSA_BITS,
    RSA,
    DkimKey,
    DkimKeyRow,
    KeyMaterial,
    domain_problems,
    selector_problems,
)
from vmta.signing.keys import KeyRefused, generate, imported

SINGULAR = "dkim_key"
PLURAL = "dkim_keys"
FIELDS = ("id", "domain", "selector", "default_for_domain", "key", "dns")
READ_ONLY = ("id", "dns")
KEY_FIELDS = ("bits", "private", "public", "type")
_MISSING = object()


@dataclass(frozen=True)
class KeyPlan:
    """A request read and checked: the record, with its key imported or still to be
    generated (``material`` None)."""

    domain: str
    selector: str
    default_for_domain: bool
    key_type: str
    bits: int | None
    material: KeyMaterial | None

    def realize(self) -> DkimKey:
        """The record, generating its key when the request asked for one."""
        material = self.material or generate(self.key_type, self.bits)
        return DkimKey(self.domain, self.selector, self.default_for_domain, material)


def strip_read_only(doc: JsonObject) -> JsonObject:
    return {k: v for k, v in doc.items() if k not in READ_ONLY}


def _bits(f: Fields, key: JsonObject) -> int | None:
    value = key.get("bits", _MISSING)
    if value is _MISSING:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        number = int(value)
    if number is None or not MIN_RSA_BITS <= number <= MAX_RSA_BITS:
        shown = kind_of(value) if not isinstance(value, int | str) else repr(value)[:20]
        f.problem(
            "key.bits",
            f"must be an integer from {MIN_RSA_BITS} to {MAX_RSA_BITS}"
            f" (a number or a numeric string), not {shown}",
        )
        return None
    return number


def _public(f: Fields, key: JsonObject) -> None:
    """``key.public`` is read-only (derived from the private key); a GET's record sent back
    carries it, so a string is accepted and ignored."""
    value = key.get("public", _MISSING)
    if value is not _MISSING and not isinstance(value, str):
        f.problem("key.public", f"must be a string (it is read-only), not {kind_of(value)}")


def _private(f: Fields, key: JsonObject) -> str | None:
    """``key.private``: PEM text has line breaks, which other text fields refuse."""
    value = key.get("private", _MISSING)
    if value is _MISSING:
        return None
    if not isinstance(value, str):
        f.problem("key.private", f"must be a PEM private key, not {kind_of(value)}")
        return None
    return value


def _key_type(f: Fields, key: JsonObject) -> str | None:
    value = key.get("type", _MISSING)
    if value is _MISSING:
        return None
    if value not in KEY_TYPES:
        f.problem("key.type", f"must be one of {', '.join(KEY_TYPES)}")
        return None
    return str(value)


def parse_create(doc: JsonObject) -> KeyPlan:
    """A create request, or ValidationFailed naming every problem."""
    f = Fields()
    f.known(doc, "", FIELDS)
    domain = f.string(doc, "domain", "", rules=domain_problems)
    selector = f.string(doc, "selector", "", rules=selector_problems)
    default = f.boolean(doc, "default_for_domain", "", default=False)
    key = f.hash(doc, "key", "")
    key_type: str | None = None
    bits: int | None = None
    material: KeyMaterial | None = None
    if key is not None:
        f.known(key, "key", KEY_FIELDS)
        _public(f, key)
        key_type = _key_type(f, key)
        bits = _bits(f, key)
        private = _private(f, key)
        if private is not None:
            try:
                material = imported(private, key_type)
            except KeyRefused as refused:
                f.problem("key.private", str(refused))
            else:
                key_type = material.type
                if bits is not None and bits != material.bits:
                    f.problem(
                        "key.bits", f"is {bits}, but the imported key has {material.bits} bits"
                    )
        elif key_type == ED25519:
            if bits is not None:
                f.problem("key.bits", "must be absent for an ed25519 key (it has no size)")
        elif "bits" not in key and "private" not in key:
            f.problem("key", "must give bits (to generate a key) or private (to import one)")
    f.check()
    assert domain is not None and selector is not None and key is not None
    return KeyPlan(domain, selector, default, key_type or RSA, bits, material)


def parse_update(current: DkimKey, doc: JsonObject) -> DkimKey:
    """A PUT applied to ``current``: ``domain``, ``selector``, ``default_for_domain`` and
    ``key.private`` change; ``key.bits`` and ``key.type``, when given, must be the key's."""
    f = Fields()
    f.known(doc, "", FIELDS)
    domain = current.domain
    selector = current.selector
    if "domain" in doc:
        domain = f.string(doc, "domain", "", rules=domain_problems) or domain
    if "selector" in doc:
        selector = f.string(doc, "selector", "", rules=selector_problems) or selector
    default = f.boolean(doc, "default_for_domain", "", default=current.default_for_domain)
    material = current.material
    key = f.hash(doc, "key", "", required=False)
    if key is not None:
        f.known(key, "key", KEY_FIELDS)
        _public(f, key)
        key_type = _key_type(f, key)
        # A GET's record sent back whole: an Ed25519 key shows bits 256.
        echoed = material.type == ED25519 and key.get("bits") in (ED25519_BITS, str(ED25519_BITS))
        bits = None if echoed else _bits(f, key)
        private = _private(f, key)
        if private is not None and private.strip() != material.private_pem.strip():
            try:
                material = imported(private, key_type)
            except KeyRefused as refused:
                f.problem("key.private", str(refused))
        elif key_type is not None and key_type != material.type:
            f.problem("key.type", f"cannot change without a new key.private ({material.type})")
        size = material.bits if material.type != ED25519 else None
        if bits is not None and bits != size:
            f.problem("key.bits", f"cannot change: the key has {material.bits} bits")
    f.check()
    return replace(
        current, domain=domain, selector=selector, default_for_domain=default, material=material
    )


def render(key: DkimKey) -> dict[str, Any]:
    """The whole record (single-record answers only: it holds the private key)."""
    return {
        "id": key.id,
        "domain": key.domain,
        "selector": key.selector,
        "default_for_domain": key.default_for_domain,
        "key": {
            "type": key.material.type,
            "bits": key.material.bits if key.material.type != ED25519 else ED25519_BITS,
            "private": key.material.private_pem,
            "public": key.material.public,
        },
        "dns": {"public_key": {"name": key.dns_name, "type": "TXT", "value": key.dns_value}},
    }


def render_row(row: DkimKeyRow) -> dict[str, Any]:
    """A list row: never the private key."""
    return {
        "id": row.id,
        "domain": row.domain,
        "selector": row.selector,
        "default_for_domain": row.default_for_domain,
        "key_bits": row.key_bits,
    }
