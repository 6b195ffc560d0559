"""Tying a parsed report to what vmta sent, and the events and report rows it gives.

A bounce that came to a VERP address is matched by its token alone (the recipient the
token names); one to GreenArrow's VERP form by the recipient, list and send the address
spells. Only a bounce sent to a mailbox's plain address falls back to the DSN's
``Original-Envelope-Id`` (or the queue id vmta's own DSNs carry) with
``Final-Recipient``, and then to the returned message's ``Message-ID`` with
``Final-Recipient``. A complaint is matched by the VERP token of the reported message's
``Return-Path``, else by its ``Message-ID`` with ``Original-Rcpt-To``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmta.domain.config.incoming_domain import MailboxDirectory
from vmta.domain.reports.delivery_event import (
    SCOMP,
    Event,
    bounce_all_fields,
    common_fields,
    mailerq_time,
    tracking_values,
)
from vmta.domain.reports.feedback_events import REPORT
from vmta.domain.reports.verp import GreenArrowVerp
from vmta.feedback.directory import Addressed, resolve
from vmta.feedback.report import ParsedReport, RecipientFailure
from vmta.store.inbound_mail import (
    SentRecipient,
    StoredReport,
    sent_by_message_id,
    sent_recipient,
)
from vmta.store.store import Store


@dataclass(frozen=True)
class Match:
    """Who a report is about: a recipient vmta sent to, or one GreenArrow's VERP names."""

    email: str
    queue_id: str = ""
    kept_headers: Mapping[str, str] | None = None
    greenarrow: GreenArrowVerp | None = None

    def tracking(self) -> dict[str, str | None]:
        values = tracking_values(self.kept_headers)
        if self.greenarrow is not None:
            values["listid"] = self.greenarrow.listid.lower()
            values["sendid"] = self.greenarrow.sendid.lower()
        return values

    def common(self, at: float) -> dict[str, Any]:
        """The fields every GreenArrow event has (vmta.domain.reports.delivery_event)."""
        fields = common_fields(
            at=at, address=self.email, message_id=self.queue_id, kept_headers=self.kept_headers
        )
        fields.update(self.tracking())
        if not self.queue_id:
            fields["message_id"] = None  # GreenArrow's VERP form names no message
        return fields


def _from_sent(sent: SentRecipient | None) -> Match | None:
    if sent is None:
        return None
    return Match(email=sent.address, queue_id=sent.queue_id, kept_headers=sent.kept_headers)


def _failure_for(parsed: ParsedReport, address: str) -> RecipientFailure:
    for failure in parsed.failures:
        if (failure.final_recipient or "").lower() == address.lower():
            return failure
    return parsed.failures[0]


def match_bounce(
    store: Store, addressed: Addressed, parsed: ParsedReport
) -> list[tuple[RecipientFailure, Match | None]]:
    if addressed.target is not None:
        target = addressed.target
        found = _from_sent(sent_recipient(store, target.queue_id, recipient_id=target.recipient_id))
        failure = _failure_for(parsed, found.email if found else "")
        return [(failure, found)]
    if addressed.greenarrow is not None:
        form = addressed.greenarrow
        return [(_failure_for(parsed, form.recipient), Match(form.recipient, greenarrow=form))]
    queue_id = parsed.envelope_id or parsed.vmta_queue_id
    out: list[tuple[RecipientFailure, Match | None]] = []
    for failure in parsed.failures:
        address = failure.final_recipient or failure.original_recipient
        found = None
        if address and queue_id:
            found = _from_sent(sent_recipient(store, queue_id, address=address))
        if found is None and address and parsed.original_message_id:
            found = _from_sent(sent_by_message_id(store, address, parsed.original_message_id))
        out.append((failure, found))
    return out


def match_complaint(
    store: Store, directory: MailboxDirectory, secret: bytes, parsed: ParsedReport
) -> Match | None:
    if parsed.original_return_path:
        named = resolve(directory, secret, parsed.original_return_path)
        if named is not None and named.target is not None:
            found = _from_sent(
                sent_recipient(store, named.target.queue_id, recipient_id=named.target.recipient_id)
            )
            if found is not None:
                return found
        if named is not None and named.greenarrow is not None:
            return Match(named.greenarrow.recipient, greenarrow=named.greenarrow)
    if parsed.original_message_id and parsed.original_rcpt_to:
        return _from_sent(
            sent_by_message_id(store, parsed.original_rcpt_to, parsed.original_message_id)
        )
    return None


def bounce_event(match: Match, failure: RecipientFailure, at: float) -> Event:
    """``bounce_all`` with ``synchronous: false``, classified by the one table."""
    text = failure.diagnostic or (failure.status or "")
    payload = bounce_all_fields(
        match.common(at), status=failure.status or "5.0.0", text=text, synchronous=False
    )
    return Event(str(payload["event_type"]), at, match.queue_id, {"greenarrow": payload})


def complaint_event(match: Match, at: float) -> Event:
    payload = {"event_type": SCOMP, **match.common(at)}
    return Event(SCOMP, at, match.queue_id, {"greenarrow": payload})


def report_event(
    *,
    at: float,
    kind: str,
    mail_from: str,
    mailbox: str,
    parsed: ParsedReport,
    match: Match | None,
    failure: RecipientFailure | None,
) -> Event:
    """The parsed report as MailerQ-style JSON for the ``reports`` queue: the incoming
    message's envelope and recipient, the report, and what it matched."""
    document: dict[str, Any] = {
        "time": mailerq_time(at),
        "envelope": mail_from,
        "recipient": mailbox,
        "type": kind,
        "report": parsed.to_json(),
        "failure": None if failure is None else failure.__dict__.copy(),
        "matched": match is not None,
        "original": None
        if match is None
        else {"queue_id": match.queue_id or None, "recipient": match.email, **match.tracking()},
    }
    return Event(REPORT, at, match.queue_id if match else "", {"kind": REPORT, "mailerq": document})


def stored(
    *,
    at: float,
    kind: str,
    mailbox: str,
    parsed: ParsedReport,
    match: Match | None,
    failure: RecipientFailure | None,
) -> StoredReport:
    report = parsed.to_json()
    if failure is not None:
        report["failure"] = failure.__dict__.copy()
    return StoredReport(
        received_at=at,
        kind=kind,
        matched=match is not None,
        mailbox=mailbox,
        queue_id=(match.queue_id or None) if match else None,
        recipient=match.email if match else (failure.final_recipient if failure else None),
        report=report,
    )
