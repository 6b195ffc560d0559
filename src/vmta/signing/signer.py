"""The DKIM signer (RFC 6376 §3.4, §3.5, §3.7, §5), with RSA in OpenSSL through
``cryptography`` (chosen by measurement: docs/PERFORMANCE.md, "DKIM signing: choice of
implementation") and Ed25519-SHA256 of RFC 8463.

``sign`` returns the message with one ``DKIM-Signature`` field per signature on top, its
line endings made CRLF first (RFC 5321 §2.3.8), exactly as the SMTP client puts it on the
wire, so that what is signed is what is delivered. ``sign_wire`` does the same for a
message in wire form (dot-stuffed, domain/message/wire_form.py), the form the intake and the
spool hold: what it signs is the message the receiver gets after removing the stuffed
dots, hashed from the wire form without un-stuffing a copy of it. The body hash of each
body canonicalization is computed once per message.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vmta.domain.message.dkim_request import SIGNED_HEADERS
from vmta.domain.message.message_headers import field_name, split_headers
from vmta.signing.keys import PrivateKey

RELAXED = "relaxed"
SIMPLE = "simple"
_WSP_RUN = re.compile(rb"[ \t]+")
# Only what relaxed canonicalization changes: a tab, or two or more WSP in a row (a lone
# space stays as it is, and replacing each one would cost most of the signing time).
_WSP_CHANGED = re.compile(rb"\t[ \t]*| [ \t]+")
_WSP_AT_EOL = re.compile(rb"[ \t]+\r\n")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_B64_LINE = 72  # b= value folded in lines of this many characters


@dataclass(frozen=True)
class Signature:
    """One signature to add: ``d=``, ``s=``, the key and the options."""

    domain: str
    selector: str
    key: PrivateKey
    header_canon: str = RELAXED
    body_canon: str = RELAXED
    extra_headers: tuple[str, ...] = ()  # lower-case names signed beyond SIGNED_HEADERS
    oversign_all: bool = False  # every signed name once more than present (else From only)
    expire: int | None = None  # x=
    report: bool = False  # r=y (RFC 6651)

    def __repr__(self) -> str:  # never the key
        return f"Signature(d={self.domain!r}, s={self.selector!r})"

    @property
    def algorithm(self) -> str:
        from cryptography.hazmat.primitives.asymmetric import ed25519  # signing/keys.py: why here

        return "ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "rsa-sha256"


def normalized(data: bytes) -> bytes:
    """CRLF line endings and a final CRLF, as the SMTP client sends the message."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def canonical_body(body: bytes, how: str) -> bytes:
    """RFC 6376 §3.4.3 (simple) and §3.4.4 (relaxed); ``body`` has CRLF line endings."""
    body, end = _canonical_lines(body, how)
    if end == 0:
        return b"" if how == RELAXED else b"\r\n"
    return body[:end] + b"\r\n"


def _canonical_lines(body: bytes, how: str) -> tuple[bytes, int]:
    """The canonical body (RFC 6376 §3.4.3, §3.4.4) as ``body[:end]`` and CRLF, without
    copying ``body`` when canonicalization only drops its trailing empty lines; ``end``
    0 is the empty body."""
    if how == RELAXED:
        # Each step only when needed: one C-speed search each for the common clean body.
        if b" \r\n" in body or b"\t\r\n" in body:
            body = _WSP_AT_EOL.sub(b"\r\n", body)
        if b"\t" in body or b"  " in body:
            body = _WSP_CHANGED.sub(b" ", body)
    if body.endswith(b"\r\n") and not body.endswith(b"\r\n\r\n"):
        return body, len(body) - 2  # the common case: nothing else to strip
    return body, len(body.rstrip(b"\r\n"))


def body_hash(body: bytes, how: str, *, stuffed: bool = False) -> str:
    """The ``bh=`` value (RFC 6376 §3.7) of ``body`` (CRLF line endings). ``stuffed``:
    ``body`` is in wire form, and the hash is that of the body without the stuffed dots.
    Canonicalization and un-stuffing commute (neither touches what the other changes:
    un-stuffing only a line's first character, and only when it is a "."), so the dots
    are skipped while hashing the canonical wire form, one ``update`` per stuffed line,
    without building an un-stuffed copy."""
    body, end = _canonical_lines(body, how)
    digest = hashlib.sha256()
    if end == 0:
        digest.update(b"" if how == RELAXED else b"\r\n")
        return base64.b64encode(digest.digest()).decode("ascii")
    view = memoryview(body)[:end]
    start = 0
    if stuffed:
        if body.startswith(b"."):
            start = 1
        dot = body.find(b"\r\n.", start, end)
        while dot >= 0:
            digest.update(view[start : dot + 2])
            start = dot + 3
            dot = body.find(b"\r\n.", start, end)
    digest.update(view[start:])
    digest.update(b"\r\n")
    return base64.b64encode(digest.digest()).decode("ascii")


def canonical_header(field: bytes, how: str) -> bytes:
    """RFC 6376 §3.4.1 (simple: unchanged) and §3.4.2 (relaxed); ``field`` ends in CRLF."""
    if how == SIMPLE:
        return field
    name, _, value = field.partition(b":")
    value = _WSP_RUN.sub(b" ", _FOLD.sub(b"", value.rstrip(b"\r\n"))).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def _header_list(fields: Sequence[bytes], signature: Signature) -> list[str]:
    """The ``h=`` names: each wanted name as often as present (RFC 6376 §5.4.2), From
    (or every name with ``oversign_all``) once more (§8.15)."""
    present: dict[str, int] = {}
    for field in fields:
        name = field_name(field)
        present[name] = present.get(name, 0) + 1
    wanted = list(SIGNED_HEADERS)
    wanted += [n for n in signature.extra_headers if n not in wanted]
    names: list[str] = []
    for name in wanted:
        count = present.get(name, 0)
        if name == "from" or (signature.oversign_all and count):
            count += 1
        names += [name] * count
    return names


def _selected(fields: Sequence[bytes], names: Sequence[str], how: str) -> bytes:
    """The header fields ``names`` select, each instance from the bottom up (§5.4.2);
    a name asked for more often than present selects nothing more."""
    by_name: dict[str, list[bytes]] = {}
    for field in fields:
        by_name.setdefault(field_name(field), []).append(field)
    out: list[bytes] = []
    for name in names:
        instances = by_name.get(name)
        if instances:
            out.append(canonical_header(instances.pop(), how))
    return b"".join(out)


def _sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    # Imported here, not with the module: a node with no key never loads it (signing/keys).
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

    if isinstance(key, ed25519.Ed25519PrivateKey):
        # RFC 8463 §3: Ed25519 (PureEdDSA) over the SHA-256 hash of the data.
        return key.sign(hashlib.sha256(data).digest())
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())  # RFC 6376 §3.3.1


def _folded_names(names: Sequence[str]) -> str:
    """The ``h=`` value, folded before a colon when a line would pass 72 characters
    (RFC 6376 §3.5 allows FWS there), so no line nears SMTP's 998-character limit."""
    lines = [""]
    for name in names:
        piece = name if not lines[-1] else ":" + name
        if lines[-1] and len(lines[-1]) + len(piece) > _B64_LINE:
            lines.append(piece)
        else:
            lines[-1] += piece
    return "\r\n\t".join(lines)


def _fold(value: str) -> str:
    return "\r\n\t".join(value[i : i + _B64_LINE] for i in range(0, len(value), _B64_LINE))


def signature_field(
    fields: Sequence[bytes],
    body: bytes,
    signature: Signature,
    now: int,
    body_hashes: dict[str, str],
    *,
    stuffed: bool = False,
) -> bytes:
    """One ``DKIM-Signature`` field (with CRLF) for the header ``fields`` and ``body``
    (``stuffed``: in wire form)."""
    canon = signature.body_canon
    if canon not in body_hashes:
        body_hashes[canon] = body_hash(body, canon, stuffed=stuffed)
    names = _header_list(fields, signature)
    tags = [
        "v=1",
        f"a={signature.algorithm}",
        f"c={signature.header_canon}/{signature.body_canon}",
        f"d={signature.domain}",
        f"s={signature.selector}",
        f"t={now}",
    ]
    if signature.expire is not None:
        tags.append(f"x={signature.expire}")
    if signature.report:
        tags.append("r=y")
    head = "DKIM-Signature: " + "; ".join(tags) + ";\r\n"
    head += "\th=" + _folded_names(names) + ";\r\n"
    head += f"\tbh={body_hashes[canon]};\r\n\tb="
    unsigned = head.encode("ascii")
    # §3.7: the selected fields, then this field without its b= value and without CRLF.
    data = _selected(fields, names, signature.header_canon)
    data += canonical_header(unsigned + b"\r\n", signature.header_canon)[:-2]
    value = base64.b64encode(_sign_bytes(signature.key, data)).decode("ascii")
    return unsigned + _fold(value).encode("ascii") + b"\r\n"


def sign(message: bytes, signatures: Sequence[Signature], now: int) -> bytes:
    """``message`` (line endings made CRLF) with a DKIM-Signature field on top for each
    of ``signatures``, in order; unchanged when there are none."""
    if not signatures:
        return message
    message = normalized(message)
    return signature_fields(message, signatures, now, stuffed=False) + message


def sign_wire(wire: bytes, signatures: Sequence[Signature], now: int) -> bytes:
    """``wire`` (a message in wire form, domain/message/wire_form.py) with a DKIM-Signature
    field on top for each of ``signatures``, in order, signing the message the receiver
    gets (without the stuffed dots); unchanged when there are none. The result is in
    wire form too: no field added starts with "."."""
    if not signatures:
        return wire
    return signature_fields(wire, signatures, now, stuffed=True) + wire


def signature_fields(
    message: bytes, signatures: Sequence[Signature], now: int, *, stuffed: bool
) -> bytes:
    """The DKIM-Signature fields for ``message`` (CRLF line endings; ``stuffed``: in wire
    form), the last signature's first, as signers in a chain would add them."""
    split = split_headers(message)
    fields = split.headers
    if stuffed:
        # Only a field's first line can start with "." (folded lines start with WSP).
        fields = [f[1:] if f.startswith(b".") else f for f in fields]
    rest = split.rest
    body = rest[2:] if rest.startswith(b"\r\n") else rest
    body_hashes: dict[str, str] = {}
    added = [
        signature_field(fields, body, s, now, body_hashes, stuffed=stuffed) for s in signatures
    ]
    return b"".join(reversed(added))
