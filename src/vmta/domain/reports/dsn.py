"""Delivery status notifications: the bounce sent when recipients fail (RFC 3464, RFC 6522).

When a recipient fails permanently, or its message expires in the queue, the envelope
sender gets one ``multipart/report; report-type=delivery-status`` message per message
(covering every recipient that failed together) with three parts (RFC 6522 §3):

1. ``text/plain``: what happened, for people;
2. ``message/delivery-status`` (RFC 3464 §2): one per-message group (Reporting-MTA,
   Arrival-Date) and one group per recipient (Final-Recipient, Action: failed, Status,
   Remote-MTA, Diagnostic-Code, Last-Attempt-Date);
3. ``text/rfc822-headers``: the header section of the original message.

No notification goes to a null sender ``<>`` (``dsn_wanted``), and the notification itself
is sent with a null envelope sender (RFC 5321 §4.5.5, ``DSN_ENVELOPE_SENDER``), so a
notification can never cause another. It is marked ``Auto-Submitted: auto-replied``
(RFC 3834 §5).

The result is bytes with CRLF line endings, ready for the queue.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid

DSN_ENVELOPE_SENDER = ""  # RFC 5321 §4.5.5: MAIL FROM:<> for notifications
DEFAULT_STATUS = "5.0.0"  # RFC 3463: permanent failure, no more detail known
MAX_HEADER_BYTES = 64 * 1024  # more of the original's headers than this is not returned
MAX_DIAGNOSTIC = 900  # Diagnostic-Code text; a field line must stay under 998 octets

# RFC 3463 §2: class "." subject "." detail.
_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
# A reply as the engine records it: "550 5.1.1 text", "550-5.1.1 text" or "550 text".
_REPLY = re.compile(r"\s*([245])[0-9]{2}(?:[ -]+|$)(?:([245]\.[0-9]{1,3}\.[0-9]{1,3})(?:\s|$))?")


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient to report.

    ``reply``: the remote server's reply that failed it (``550 5.1.1 No such user``), or
    None when no server said anything (null MX, expiry after connection failures); then
    ``reason`` says what happened. ``status`` overrides the RFC 3463 code; otherwise it is
    the reply's enhanced code, or its class with ``.0.0``, or ``5.0.0``. ``remote_mta`` is
    the host that gave the reply. ``original_recipient`` is the ORCPT value (RFC 3461
    §4.2), given as ``type;address``.
    """

    address: str
    reply: str | None = None
    reason: str | None = None
    status: str | None = None
    remote_mta: str | None = None
    last_attempt: float | None = None
    original_recipient: str | None = None

    def effective_status(self) -> str:
        if self.status is not None and _STATUS.fullmatch(self.status):
            return self.status
        if self.reply is not None:
            match = _REPLY.match(self.reply)
            if match is not None:
                reply_class, enhanced = match.groups()
                # RFC 3463 §2: an enhanced code whose class differs from the reply's is
                # not one.
                if enhanced is not None and enhanced[0] == reply_class:
                    return enhanced
                return f"{reply_class}.0.0"
        return DEFAULT_STATUS


def dsn_wanted(envelope_sender: str) -> bool:
    """Whether a failure notification goes to this sender: never to ``<>`` (RFC 5321
    §4.5.5, RFC 3464 §1)."""
    return envelope_sender.strip().removeprefix("<").removesuffix(">").strip() != ""


def build_dsn(
    *,
    reporting_mta: str,
    envelope_sender: str,
    recipients: Sequence[FailedRecipient],
    original: bytes,
    arrival: float,
    now: float,
    envelope_id: str | None = None,
    queue_id: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """The notification for ``recipients`` of one message, as bytes with CRLF endings.

    ``reporting_mta``: our host name (Reporting-MTA, and the From address's domain).
    ``original``: the message as queued (only its header section is returned).
    ``arrival``, ``now`` and each ``last_attempt``: seconds since the epoch.
    ``envelope_id``: the ENVID of RFC 3461 §4.4, if the sender gave one.
    """
    if not recipients:
        raise ValueError("a delivery status notification needs at least one recipient")
    host = _ascii_text(reporting_mta)
    headers_of_original = original_header_section(original)
    parts = [
        _part("text/plain; charset=utf-8", _human_text(host, recipients)),
        _part(
            "message/delivery-status",
            _delivery_status(host, recipients, arrival, envelope_id, queue_id).encode("ascii"),
        ),
        _part("text/rfc822-headers", headers_of_original),
    ]
    boundary = _boundary(parts, now)
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    body += b"--" + boundary.encode() + b"--\r\n"

    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{_header_text(_bare(envelope_sender))}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {_date(now)}",
        f"Message-ID: {message_id or make_msgid(domain=host)}",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
    ]
    original_id = _original_message_id(headers_of_original)
    if original_id is not None:
        # RFC 3834 §3.1.4: a response refers to the message it answers.
        head += [f"In-Reply-To: {original_id}", f"References: {original_id}"]
    head += [
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f' boundary="{boundary}"',
    ]
    return "\r\n".join(head).encode("utf-8") + b"\r\n\r\n" + body


def original_header_section(message: bytes) -> bytes:
    """The header section of ``message`` with CRLF endings, without the blank line, cut at
    a line boundary after ``MAX_HEADER_BYTES``."""
    text = message.replace(b"\r\n", b"\n")
    head, _, _ = text.partition(b"\n\n")
    lines = head.split(b"\n")
    kept: list[bytes] = []
    size = 0
    for line in lines:
        size += len(line) + 2
        if size > MAX_HEADER_BYTES:
            break
        kept.append(line.rstrip(b"\r"))
    return b"".join(line + b"\r\n" for line in kept if line)


# ---- the parts --------------------------------------------------------------------------------


def _human_text(host: str, recipients: Sequence[FailedRecipient]) -> bytes:
    lines = [
        f"This is the mail system at host {host}.",
        "",
        "Your message could not be delivered to the recipients below. This is a",
        "permanent failure: the mail system will not try again. The headers of your",
        "message are attached.",
        "",
    ]
    for recipient in recipients:
        lines.append(f"<{_header_text(recipient.address)}>:")
        if recipient.reply is not None:
            said = _one_line(recipient.reply)
            if recipient.remote_mta:
                said = f"host {_one_line(recipient.remote_mta)} said: {said}"
            lines += textwrap.wrap(said, 76, initial_indent="    ", subsequent_indent="    ")
        if recipient.reason:
            lines += textwrap.wrap(
                _one_line(recipient.reason), 76, initial_indent="    ", subsequent_indent="    "
            )
        lines.append("")
    return "\r\n".join(lines).encode("utf-8")


def _delivery_status(
    host: str,
    recipients: Sequence[FailedRecipient],
    arrival: float,
    envelope_id: str | None,
    queue_id: str | None,
) -> str:
    # RFC 3464 §2.2: per-message fields, then §2.3: one group per recipient, each group
    # preceded by a blank line.
    groups = [[f"Reporting-MTA: dns; {host}"]]
    if queue_id:
        groups[0].append(f"X-Vmta-Queue-ID: {_ascii_text(queue_id)}")  # §2.2 extension field
    if envelope_id:
        groups[0].append(f"Original-Envelope-Id: {_ascii_text(envelope_id)}")  # §2.2.1
    groups[0].append(f"Arrival-Date: {_date(arrival)}")  # §2.2.5
    for recipient in recipients:
        group: list[str] = []
        if recipient.original_recipient:
            group.append(f"Original-Recipient: {_ascii_text(recipient.original_recipient)}")
        group += [
            f"Final-Recipient: {_address_field(recipient.address)}",  # §2.3.2
            "Action: failed",  # §2.3.3
            f"Status: {recipient.effective_status()}",  # §2.3.4
        ]
        if recipient.remote_mta:
            group.append(f"Remote-MTA: dns; {_mta_name(recipient.remote_mta)}")  # §2.3.5
        if recipient.reply is not None:
            diagnostic = _ascii_text(recipient.reply)[:MAX_DIAGNOSTIC]
            group.append(_fold(f"Diagnostic-Code: smtp; {diagnostic}"))  # §2.3.6
        if recipient.last_attempt is not None:
            group.append(f"Last-Attempt-Date: {_date(recipient.last_attempt)}")  # §2.3.7
        groups.append(group)
    return "\r\n\r\n".join("\r\n".join(group) for group in groups) + "\r\n"


def _part(content_type: str, content: bytes) -> bytes:
    # 8bit only when the content needs it (a UTF-8 address, headers in UTF-8);
    # message/delivery-status is always 7bit (RFC 3464 §2.1).
    encoding = "7bit" if content.isascii() else "8bit"
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    head = f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
    return head.encode() + content


def _boundary(parts: Sequence[bytes], now: float) -> str:
    """A boundary that occurs in no part (RFC 2046 §5.1.1), the same for the same input."""
    seed = hashlib.sha256(b"".join(parts) + repr(now).encode()).hexdigest()
    for length in range(24, 65, 8):
        boundary = f"=_vmta_dsn_{seed[:length]}"
        if not any(boundary.encode() in part for part in parts):
            return boundary
    raise ValueError("no boundary found that the content does not contain")  # not reached


# ---- field values -----------------------------------------------------------------------------


def _date(epoch: float) -> str:
    """RFC 5322 §3.3 date-time in UTC (``+0000``)."""
    return format_datetime(datetime.fromtimestamp(epoch, UTC))


def _address_field(address: str) -> str:
    """``rfc822; addr`` for an ASCII address, else ``utf-8; addr`` in the utf-8-addr-xtext
    form of RFC 6533 §3 (non-ASCII characters, ``\\``, ``+``, ``=`` as ``\\x{HEX}``)."""
    bare = _bare(address)
    if bare.isascii() and bare.isprintable():
        return f"rfc822; {bare}"
    escaped = "".join(
        f"\\x{{{ord(ch):X}}}" if ord(ch) > 126 or ord(ch) < 33 or ch in "\\+=" else ch
        for ch in bare
    )
    return f"utf-8; {escaped}"


def _mta_name(name: str) -> str:
    text = _ascii_text(name).strip()
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return text
    return f"[{address}]" if address.version == 4 else f"[IPv6:{address}]"


def _bare(address: str) -> str:
    return address.strip().removeprefix("<").removesuffix(">").strip()


def _one_line(text: str) -> str:
    """Lines joined by " / ", without control characters."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    return "".join(ch if ch.isprintable() else "?" for ch in " / ".join(lines))


def _header_text(text: str) -> str:
    # Never let a value end a header line early: that would inject fields.
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _ascii_text(text: str) -> str:
    """Printable US-ASCII only (delivery-status fields are 7bit), other characters as ?."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in _one_line(text))


def _fold(field: str, width: int = 78) -> str:
    """Fold a long field at spaces (RFC 5322 §2.2.3) so lines stay readable."""
    if len(field) <= width:
        return field
    lines = textwrap.wrap(
        field, width, subsequent_indent=" ", break_long_words=False, break_on_hyphens=False
    )
    return "\r\n".join(lines)


def _original_message_id(headers: bytes) -> str | None:
    value = BytesHeaderParser().parsebytes(headers).get("Message-ID")
    if value is None:
        return None
    text = _ascii_text(str(value)).strip()
    return text if re.fullmatch(r"<[^<>\s]+>", text) else None
