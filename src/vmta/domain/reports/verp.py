"""VERP: the envelope sender that names the message and recipient a bounce is about.

A message whose envelope sender is a bounce mailbox ``<localpart>@<domain>`` leaves with
``<localpart>-<token>@<domain>``. The token carries the queue id and the recipient's row
id and an HMAC-SHA256 over both under a per-installation secret, so that a bounce
addressed to a token vmta did not write matches nothing. The token is lower-case
base32 (RFC 4648 §6, without padding): receivers may change the case of a local part
(RFC 5321 §2.4 allows it), and base32 survives that. With ``return`` as the mailbox's
local part the address is 7 + 36 characters, well inside RFC 5321's 64 (§4.5.3.1.1).

GreenArrow's own VERP form, ``<mailbox>-<ListID>-<SendID>-<local>=<domain>@<dom>``, is
recognised too, for senders that build it themselves; it carries no HMAC and names the
recipient, list and send, not a queue id.

Pure: standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

_QUEUE_ID = re.compile(r"[0-9A-F]{20}")
_MAC_BYTES = 8  # 64 bits: a forger needs 2**63 tries on average per address
_TOKEN_BYTES = 10 + 4 + _MAC_BYTES
_TOKEN_LENGTH = 36  # base32 of 22 bytes, unpadded
_TOKEN = re.compile(r"[a-z2-7]{36}")


@dataclass(frozen=True)
class VerpTarget:
    """What a VERP token names: a message and one of its recipients."""

    queue_id: str
    recipient_id: int


@dataclass(frozen=True)
class GreenArrowVerp:
    """GreenArrow's form: the list, the send and the recipient's address."""

    listid: str
    sendid: str
    recipient: str


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"vmta-verp-1|" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def can_encode(queue_id: str, recipient_id: int) -> bool:
    """Queue ids vmta makes (20 hex digits) and row ids that fit four bytes."""
    return bool(_QUEUE_ID.fullmatch(queue_id)) and 0 <= recipient_id < 2**32


def encode_token(secret: bytes, target: VerpTarget) -> str:
    payload = bytes.fromhex(target.queue_id) + target.recipient_id.to_bytes(4, "big")
    raw = payload + _mac(secret, payload)
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def decode_token(secret: bytes, token: str) -> VerpTarget | None:
    """The target of a token vmta wrote under ``secret``; None for anything else."""
    token = token.lower()
    if not _TOKEN.fullmatch(token):
        return None
    try:
        raw = base64.b32decode(token.upper() + "=" * (-_TOKEN_LENGTH % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _TOKEN_BYTES:
        return None
    # The last character carries four padding bits: only the canonical spelling counts,
    # so that one token has one address.
    if base64.b32encode(raw).decode("ascii").rstrip("=").lower() != token:
        return None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    return VerpTarget(payload[:10].hex().upper(), int.from_bytes(payload[10:], "big"))


def verp_address(secret: bytes, mailbox: str, target: VerpTarget) -> str:
    """``<localpart>-<token>@<domain>`` for the bounce mailbox ``mailbox``."""
    local, _, domain = mailbox.rpartition("@")
    return f"{local}-{encode_token(secret, target)}@{domain}"


def split_address(address: str) -> tuple[str, str] | None:
    """(local part, lower-cased domain) of ``local@domain``; None without both."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not local or not domain:
        return None
    return local, domain.lower().rstrip(".")


def token_of(local: str, mailbox_local: str) -> str | None:
    """The token of ``local`` if it is ``<mailbox_local>-<token>`` (ignoring case)."""
    prefix = mailbox_local.lower() + "-"
    if not local.lower().startswith(prefix):
        return None
    rest = local[len(prefix) :]
    return rest if len(rest) == _TOKEN_LENGTH else None


def greenarrow_form(local: str, mailbox_local: str) -> GreenArrowVerp | None:
    """GreenArrow's ``<mailbox>-<ListID>-<SendID>-<local>=<domain>`` local part.

    The recipient's own local part may hold dashes, so the list and send ids are the
    first two dash-separated fields after the mailbox, and the address is the rest with
    its last ``=`` read as the ``@``."""
    prefix = mailbox_local.lower() + "-"
    if not local.lower().startswith(prefix):
        return None
    fields = local[len(prefix) :].split("-", 2)
    if len(fields) != 3 or not fields[0] or not fields[1]:
        return None
    listid, sendid, encoded = fields
    user, eq, domain = encoded.rpartition("=")
    if not eq or not user or not domain or "." not in domain:
        return None
    return GreenArrowVerp(listid=listid, sendid=sendid, recipient=f"{user}@{domain}")
