"""Reading what comes back: delivery status notifications (RFC 3464 in an RFC 6522
multipart/report), the common non-standard bounces (through flufl.bounce), automatic
replies (RFC 3834), and complaints (ARF, RFC 5965; Microsoft's JMRP).

Only ``Action: failed`` makes a bounce (RFC 3464 §2.3.3): ``delayed``, ``relayed``,
``delivered`` and ``expanded`` report no failure. A bounce is read whatever its
``Auto-Submitted`` header says (Postfix's DSNs carry ``auto-replied``); anything else
with ``Auto-Submitted`` other than ``no``, or a vacation reply, is an automatic reply.
"""

from __future__ import annotations

import re
from email import message_from_bytes
from email.message import Message
from email.utils import parseaddr

from vmta.feedback.report import (
    AUTO_REPLY,
    BOUNCE,
    COMPLAINT,
    NOTICE,
    UNKNOWN,
    ParsedReport,
    RecipientFailure,
)

_STATUS = re.compile(r"\b([45]\.[0-9]{1,3}\.[0-9]{1,3})\b")
_MAX_TEXT = 1000
# Vacation and out-of-office replies that do not say Auto-Submitted (RFC 3834 came late).
_VACATION_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response)|out of (the )?office|vacation|away from)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|has failed)|failure notice"
    r"|returned mail|mail delivery failed|could not be delivered",
    re.IGNORECASE,
)
_PERMANENT = re.compile(r"\b(5\.[0-9]{1,3}\.[0-9]{1,3})\b")
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# Where a bounce's own words end and the returned message begins.
_ORIGINAL_FOLLOWS = re.compile(
    r"^.*(below this line is a copy|original message|returned message|message headers follow)",
    re.IGNORECASE | re.MULTILINE,
)
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response-suppress")


def parse_message(raw: bytes) -> ParsedReport:
    message = message_from_bytes(raw)
    subject = _text(message.get("Subject"))
    if message.get_content_type() == "multipart/report":
        report_type = (message.get_param("report-type") or "").lower()  # type: ignore[union-attr]
        if report_type == "feedback-report" or _part(message, "message/feedback-report"):
            return _arf(message, subject)
    status_part = _part(message, "message/delivery-status")
    if status_part is not None:
        return _dsn(message, status_part, subject)
    jmrp = _jmrp(message, subject)
    if jmrp is not None:
        return jmrp
    flufl = _non_standard(message, subject)
    if flufl is not None:
        return flufl
    said = _said_in_text(message, subject)
    if said is not None:
        return said
    if _is_auto_reply(message, subject):
        source = "auto_submitted" if _auto_submitted(message) else "vacation"
        return ParsedReport(kind=AUTO_REPLY, source=source, subject=subject)
    return ParsedReport(kind=UNKNOWN, source="none", subject=subject)


# ---- RFC 3464 ---------------------------------------------------------------------------


def _dsn(message: Message, status_part: Message, subject: str | None) -> ParsedReport:
    blocks = _status_blocks(status_part)
    per_message = blocks[0] if blocks else Message()
    failures = []
    actions = []
    for block in blocks[1:]:
        action = (_text(block.get("Action")) or "").lower()
        actions.append(action)
        if action != "failed":
            continue
        diagnostic = _typed_value(block.get("Diagnostic-Code"))
        failures.append(
            RecipientFailure(
                final_recipient=_typed_value(block.get("Final-Recipient")),
                status=_status(block.get("Status")) or _status(diagnostic),
                diagnostic=_clip(diagnostic),
                original_recipient=_typed_value(block.get("Original-Recipient")),
                remote_mta=_typed_value(block.get("Remote-MTA")),
            )
        )
    original = _original_headers(message)
    return ParsedReport(
        kind=BOUNCE if failures else NOTICE,
        source="dsn",
        failures=tuple(failures),
        envelope_id=_text(per_message.get("Original-Envelope-Id")),
        vmta_queue_id=_text(per_message.get("X-Vmta-Queue-ID")),
        reporting_mta=_typed_value(per_message.get("Reporting-MTA")),
        original_message_id=_message_id(original),
        original_return_path=_return_path(original),
        subject=subject,
        actions=tuple(actions),
    )


def _status_blocks(part: Message) -> list[Message]:
    """The field groups of a message/delivery-status part: the standard library parses
    each group as a Message (RFC 3464 §2.1)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    return [message_from_bytes(group.encode()) for group in re.split(r"\r?\n\r?\n", text)]


# ---- ARF and JMRP -----------------------------------------------------------------------


def _arf(message: Message, subject: str | None) -> ParsedReport:
    feedback = _part(message, "message/feedback-report")
    fields = Message()
    if feedback is not None:
        blocks = _status_blocks(feedback)
        fields = blocks[0] if blocks else fields
    original = _original_headers(message)
    rcpt = _text(fields.get("Original-Rcpt-To")) or _text(fields.get("Removal-Recipient"))
    return ParsedReport(
        kind=COMPLAINT,
        source="arf",
        original_message_id=_message_id(original),
        original_return_path=_return_path(original)
        or _address(_text(fields.get("Original-Mail-From"))),
        original_rcpt_to=_address(rcpt),
        feedback_type=(_text(fields.get("Feedback-Type")) or "").lower() or None,
        user_agent=_text(fields.get("User-Agent")),
        subject=subject,
    )


def _jmrp(message: Message, subject: str | None) -> ParsedReport | None:
    """Microsoft's Junk Mail Reporting Program: the complained-of message attached as
    message/rfc822, its recipient in ``X-HmXmrOriginalRecipient``."""
    original = _original_headers(message)
    if original is None:
        return None
    rcpt = _text(original.get("X-HmXmrOriginalRecipient"))
    if rcpt is None:
        return None
    return ParsedReport(
        kind=COMPLAINT,
        source="jmrp",
        original_message_id=_message_id(original),
        original_return_path=_return_path(original),
        original_rcpt_to=_address(rcpt),
        feedback_type="abuse",
        subject=subject,
    )


# ---- the rest -----------------------------------------------------------------------------


def _non_standard(message: Message, subject: str | None) -> ParsedReport | None:
    """The formats flufl.bounce knows (qmail, Exim, Exchange, Yahoo, ...): the permanent
    failures only; the status and the words around it from the text, when it says one."""
    # Imported at the first report in a format of its own, not with the module: its
    # detectors are megabytes in every process (docs/PERFORMANCE.md, "Round 5: memory").
    from flufl.bounce import all_failures

    try:
        _temporary, permanent = all_failures(message)
    except Exception:  # a detector meeting a format it half-knows: no verdict
        return None
    if not permanent:
        return None
    text = _body_text(message)
    failures = []
    for raw in sorted(permanent):
        address = raw.decode("utf-8", "replace")
        status, said = _status_near(text, address)
        failures.append(RecipientFailure(final_recipient=address, status=status, diagnostic=said))
    original = _original_headers(message)
    return ParsedReport(
        kind=BOUNCE,
        source="flufl",
        failures=tuple(failures),
        original_message_id=_message_id(original),
        original_return_path=_return_path(original),
        subject=subject,
    )


def _said_in_text(message: Message, subject: str | None) -> ParsedReport | None:
    """A bounce no detector knows, when it says it is one (from MAILER-DAEMON or
    postmaster, an RFC 6522 delivery-status report, or a bounce's subject) and its text
    names a permanent RFC 3463 status: the address last named before that status."""
    sender = (_address(_text(message.get("From"))) or "").lower()
    report = (message.get_param("report-type") or "") if message.is_multipart() else ""
    if not (
        sender.split("@")[0] in ("mailer-daemon", "postmaster")
        or str(report).lower() == "delivery-status"
        or (subject and _BOUNCE_SUBJECT.search(subject))
    ):
        return None
    text = _ORIGINAL_FOLLOWS.split(_body_text(message), 1)[0]
    match = _PERMANENT.search(text)
    if match is None:
        return None
    named = _ADDRESS.findall(text[: match.end()])
    if not named:
        return None
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    line = text[start : end if end >= 0 else None].strip()
    failure = RecipientFailure(
        final_recipient=named[-1], status=match.group(1), diagnostic=_clip(line)
    )
    original = _original_headers(message)
    return ParsedReport(
        kind=BOUNCE,
        source="text",
        failures=(failure,),
        original_message_id=_message_id(original),
        original_return_path=_return_path(original),
        subject=subject,
    )


def _status_near(text: str, address: str) -> tuple[str | None, str | None]:
    """The first RFC 3463 code after the address in the text (else anywhere), with the
    line that says it."""
    at = text.lower().find(address.lower())
    for window in (text[at:] if at >= 0 else "", text):
        match = _STATUS.search(window)
        if match is not None:
            start = window.rfind("\n", 0, match.start()) + 1
            end = window.find("\n", match.end())
            return match.group(1), _clip(window[start : end if end >= 0 else None].strip())
    return None, None


def _auto_submitted(message: Message) -> bool:
    value = (_text(message.get("Auto-Submitted")) or "no").lower()
    return value.split(";")[0].strip() != "no"


def _is_auto_reply(message: Message, subject: str | None) -> bool:
    if _auto_submitted(message):
        return True
    if any(message.get(h) is not None for h in _AUTO_HEADERS):
        return True
    precedence = (_text(message.get("Precedence")) or "").lower()
    if precedence in ("auto_reply", "bulk", "junk", "list"):
        return True
    return bool(subject and _VACATION_SUBJECT.match(subject))


def _part(message: Message, content_type: str) -> Message | None:
    for part in message.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _original_headers(message: Message) -> Message | None:
    """The returned or reported message (message/rfc822) or its header section
    (text/rfc822-headers), whichever the report carries."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                return message_from_bytes(data)
    return None


def _message_id(original: Message | None) -> str | None:
    if original is None:
        return None
    value = _text(original.get("Message-ID"))
    return value.strip().strip("<>") if value else None


def _return_path(original: Message | None) -> str | None:
    if original is None:
        return None
    return _address(_text(original.get("Return-Path")))


def _address(value: str | None) -> str | None:
    if not value:
        return None
    address = parseaddr(value)[1] or value.strip().strip("<>")
    return address or None


def _typed_value(value: object) -> str | None:
    """``rfc822; user@example.com`` -> ``user@example.com`` (RFC 3464 typed fields)."""
    text = _text(value)
    if text is None:
        return None
    kind, sep, rest = text.partition(";")
    return (rest if sep else kind).strip() or None


def _status(value: object) -> str | None:
    match = _STATUS.search(_text(value) or "")
    return match.group(1) if match else None


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:_MAX_TEXT]


def _body_text(message: Message) -> str:
    chunks = []
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            charset = part.get_content_charset() or "utf-8"
            try:
                chunks.append(data.decode(charset, "replace"))
            except LookupError:
                chunks.append(data.decode("utf-8", "replace"))
    return "\n".join(chunks)
