"""A message given to the HTTP Submission API as JSON (GreenArrow's ``/api/v1/send.json``
request document), checked and built into RFC 5322 bytes for the same intake as SMTP.

Pure: the standard library's ``email`` package builds the MIME structure (RFC 2045-2049);
nothing here stores or sends.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from typing import Any

FIELDS = (
    "id",
    "html",
    "text",
    "amp_html",
    "subject",
    "to",
    "cc",
    "bcc",
    "from_email",
    "from_name",
    "return_path",
    "mailclass",
    "mail_class",  # the Doppler .NET SDK's spelling of mailclass
    "mtaid",
    "message_id_domain",
    "headers",
    "attachments",
)
RECIPIENT_FIELDS = ("email", "name")
ATTACHMENT_FIELDS = ("file_name", "content_type", "content", "content_base64")
# A mailbox as RFC 5321 §4.1.2 writes one in MAIL FROM and RCPT TO, kept simple: no
# spaces, no angle brackets, no control characters, one @ with something either side.
_ADDRESS = re.compile(r"^[^\s<>@\x00-\x1f\x7f]+@[^\s<>@\x00-\x1f\x7f]+$")
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]{1,76}$")  # RFC 5322 §2.2 field-name
_DOMAIN = re.compile(
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")


class SubmissionRefused(Exception):
    """The document cannot be sent; ``str()`` is the sentence for the client."""


@dataclass(frozen=True)
class Attachment:
    file_name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class SubmittedMessage:
    subject: str
    from_email: str
    recipients: list[str]  # envelope: to, cc and bcc
    to: list[tuple[str, str]] = field(default_factory=list)  # (name, address)
    cc: list[tuple[str, str]] = field(default_factory=list)
    from_name: str | None = None
    return_path: str | None = None
    text: str | None = None
    html: str | None = None
    amp_html: str | None = None
    mailclass: str | None = None
    mtaid: str | None = None
    message_id_domain: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    client_id: Any = None  # the document's "id", returned as given

    @property
    def envelope_sender(self) -> str:
        return self.return_path or self.from_email


def _text(doc: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise SubmissionRefused(f"message.{key} is required")
        return None
    if not isinstance(value, str):
        raise SubmissionRefused(f"message.{key} must be a string")
    return value


def _one_line(value: str | None, key: str) -> str | None:
    if value is not None and any(ch in value for ch in "\r\n\x00"):
        raise SubmissionRefused(f"message.{key} must not contain line breaks")
    return value


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value) or len(value) > 254:
        raise SubmissionRefused(f"{where} must be an email address")
    return value


def _people(doc: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
    items = doc.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise SubmissionRefused(f"message.{key} must be an array")
    people = []
    for i, item in enumerate(items):
        where = f"message.{key}[{i}]"
        if not isinstance(item, dict):
            raise SubmissionRefused(f"{where} must be a hash with an email")
        unknown = sorted(set(item) - set(RECIPIENT_FIELDS))
        if unknown:
            raise SubmissionRefused(f"{where}.{unknown[0]} is not a known field")
        address = _address(item.get("email"), f"{where}.email")
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            raise SubmissionRefused(f"{where}.name must be a string")
        people.append((_one_line(name, f"{key}[{i}].name") or "", address))
    return people


def _headers(doc: Mapping[str, Any]) -> dict[str, str]:
    value = doc.get("headers")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SubmissionRefused("message.headers must be a hash of header name to value")
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not _HEADER_NAME.match(name):
            raise SubmissionRefused(f"message.headers has an invalid header name {name!r}")
        if not isinstance(text, str) or any(ch in text for ch in "\r\n\x00"):
            raise SubmissionRefused(f"message.headers.{name} must be a one-line string")
        headers[name] = text
    return headers


def _attachments(doc: Mapping[str, Any]) -> list[Attachment]:
    items = doc.get("attachments")
    if items is None:
        return []
    if not isinstance(items, list):
        raise SubmissionRefused("message.attachments must be an array")
    found = []
    for i, item in enumerate(items):
        where = f"message.attachments[{i}]"
        if not isinstance(item, dict):
            raise SubmissionRefused(f"{where} must be a hash")
        unknown = sorted(set(item) - set(ATTACHMENT_FIELDS))
        if unknown:
            raise SubmissionRefused(f"{where}.{unknown[0]} is not a known field")
        name = item.get("file_name")
        kind = item.get("content_type")
        if not isinstance(name, str) or not name or any(ch in name for ch in "\r\n\x00"):
            raise SubmissionRefused(f"{where}.file_name is required")
        if not isinstance(kind, str) or not _CONTENT_TYPE.match(kind):
            raise SubmissionRefused(
                f"{where}.content_type must be a MIME type such as application/pdf"
            )
        raw, encoded = item.get("content"), item.get("content_base64")
        if (raw is None) == (encoded is None):
            raise SubmissionRefused(f"{where} must give exactly one of content, content_base64")
        if raw is not None:
            if not isinstance(raw, str):
                raise SubmissionRefused(f"{where}.content must be a string")
            data = raw.encode("utf-8")
        else:
            try:
                data = base64.b64decode(str(encoded), validate=True)
            except (binascii.Error, ValueError):
                raise SubmissionRefused(f"{where}.content_base64 is not valid base64") from None
        found.append(Attachment(name, kind.lower(), data))
    return found


def _mailclass(doc: dict[str, Any]) -> str | None:
    """``mailclass``, or ``mail_class`` as the Doppler .NET SDK spells it; both may be
    given only with the same value."""
    plain = _one_line(_text(doc, "mailclass"), "mailclass")
    spelled = _one_line(_text(doc, "mail_class"), "mail_class")
    if plain is not None and spelled is not None and plain != spelled:
        raise SubmissionRefused("message.mailclass and message.mail_class differ")
    return plain if plain is not None else spelled


def parse_message(doc: Any) -> SubmittedMessage:
    """One message of a request document, or SubmissionRefused naming the first problem."""
    if not isinstance(doc, dict):
        raise SubmissionRefused("message must be a hash")
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise SubmissionRefused(f"message.{unknown[0]} is not a known field")
    subject = _one_line(_text(doc, "subject", required=True), "subject")
    from_email = _address(doc.get("from_email"), "message.from_email")
    text, html, amp = _text(doc, "text"), _text(doc, "html"), _text(doc, "amp_html")
    if text is None and html is None:
        raise SubmissionRefused("message needs html or text content (or both)")
    to, cc = _people(doc, "to"), _people(doc, "cc")
    bcc_items = doc.get("bcc") or []
    if not isinstance(bcc_items, list):
        raise SubmissionRefused("message.bcc must be an array of email addresses")
    bcc = [_address(a, f"message.bcc[{i}]") for i, a in enumerate(bcc_items)]
    recipients = [a for _, a in to] + [a for _, a in cc] + bcc
    if not recipients:
        raise SubmissionRefused("message needs at least one recipient in to, cc or bcc")
    return_path = doc.get("return_path")
    if return_path is not None:
        return_path = _address(return_path, "message.return_path")
    mtaid = doc.get("mtaid")
    if isinstance(mtaid, bool) or not isinstance(mtaid, str | int | None):
        raise SubmissionRefused("message.mtaid must be the name or id of a VirtualMTA")
    domain = _one_line(_text(doc, "message_id_domain"), "message_id_domain")
    if domain is not None and not _DOMAIN.match(domain):
        raise SubmissionRefused("message.message_id_domain must be a domain name")
    return SubmittedMessage(
        subject=subject or "",
        from_email=from_email,
        from_name=_one_line(_text(doc, "from_name"), "from_name"),
        recipients=recipients,
        to=to,
        cc=cc,
        return_path=return_path,
        text=text,
        html=html,
        amp_html=amp,
        mailclass=_mailclass(doc),
        mtaid=_one_line(None if mtaid is None else str(mtaid), "mtaid"),
        message_id_domain=domain,
        headers=_headers(doc),
        attachments=_attachments(doc),
        client_id=doc.get("id"),
    )


def build(message: SubmittedMessage, *, now: float, hostname: str) -> tuple[str, bytes]:
    """(Message-ID without brackets, the message as bytes with CRLF line ends).

    ``mtaid`` and ``mailclass`` become ``X-GreenArrow-MtaID`` / ``-MailClass`` headers,
    which the intake reads and removes as for SMTP injection. A Date and a Message-ID
    are added unless ``headers`` gives them (RFC 5322 §3.6)."""
    mail = EmailMessage(policy=SMTP)
    given = {name.lower(): value for name, value in message.headers.items()}
    if message.mtaid is not None:
        mail["X-GreenArrow-MtaID"] = message.mtaid
    if message.mailclass is not None:
        mail["X-GreenArrow-MailClass"] = message.mailclass
    mail["From"] = formataddr((message.from_name or "", message.from_email))
    if message.to:
        mail["To"] = ", ".join(formataddr(p) for p in message.to)
    if message.cc:
        mail["Cc"] = ", ".join(formataddr(p) for p in message.cc)
    mail["Subject"] = message.subject
    if "date" not in given:
        mail["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    message_id = given.get("message-id", "").strip().strip("<>")
    if not message_id:
        domain = message.message_id_domain or hostname
        message_id = f"mid-{secrets.token_hex(16)}@{domain}"
        mail["Message-ID"] = f"<{message_id}>"
    for name, value in message.headers.items():
        mail[name] = value
    mail["MIME-Version"] = "1.0"
    if message.text is not None:
        mail.set_content(message.text)
        if message.amp_html is not None:
            mail.add_alternative(message.amp_html, subtype="x-amp-html")
        if message.html is not None:
            mail.add_alternative(message.html, subtype="html")
    else:
        assert message.html is not None
        mail.set_content(message.html, subtype="html")
    for attachment in message.attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        mail.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype, filename=attachment.file_name
        )
    return message_id, mail.as_bytes()
