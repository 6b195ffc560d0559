"""The feedback processor: takes what the inbound listener committed, parses it, matches
it and stores its reports and events in one transaction (store/inbound_mail.py).

It claims messages under a lease, as the engine claims recipients, so that two nodes
never make two reports of one message and a node that dies mid-way leaves its messages
to the next claim. Each message is finished in one transaction (report rows, events,
the message deleted): a crash before it commits leaves the message to be processed
again, never half of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from vmta.domain.config.incoming_domain import BOUNCE, SPAM_COMPLAINT
from vmta.domain.reports.bad_address import BadAddressPolicy
from vmta.domain.reports.delivery_event import Event, EventSubscription
from vmta.feedback import report as kinds
from vmta.feedback.directory import MailboxBook, resolve
from vmta.feedback.matching import (
    bounce_event,
    complaint_event,
    match_bounce,
    match_complaint,
    report_event,
    stored,
)
from vmta.feedback.parser import parse_message
from vmta.store.inbound_mail import (
    CountedBounce,
    Findings,
    InboundMessage,
    StoredReport,
    claim_inbound,
    finish_inbound,
    load_inbound,
    purge_reports,
)
from vmta.store.store import Store

log = logging.getLogger(__name__)

BATCH = 50
LEASE = 300.0
PURGE_EVERY = 3600.0


class FeedbackProcessor:
    def __init__(
        self,
        store: Store,
        book: MailboxBook,
        owner: str,
        subscriptions: Sequence[EventSubscription],
        *,
        poll: float = 1.0,
        now: Callable[[], float] = time.time,
        predecessors: Sequence[str] = (),
        policy: BadAddressPolicy | None = None,
        hostname: str = "",
    ) -> None:
        self.store = store
        self.book = book
        self.owner = owner
        self.subscriptions = list(subscriptions)
        self.poll = poll
        self.predecessors = tuple(predecessors)  # gone processes: their claims are void
        # The bad-address threshold received bounces count towards (None: not counted).
        self.policy = policy
        # DSNs this node wrote itself (Reporting-MTA: this host name) report refusals it
        # has already given a synchronous bounce_all for: they are not counted twice.
        self.hostname = hostname.lower()
        self._now = now
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_purge = 0.0
        self.processed = 0

    def wake(self) -> None:
        """Something was accepted: look now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="feedback-processor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                done = await asyncio.to_thread(self.run_once)
            except Exception:
                log.exception("feedback processing failed; trying again")
                done = 0
            if done == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)

    def run_once(self) -> int:
        """Claim and process one batch (blocking); the number processed."""
        now = self._now()
        if now - self._last_purge >= PURGE_EVERY:
            purge_reports(self.store, now)
            self._last_purge = now
        ids = claim_inbound(self.store, self.owner, now, LEASE, BATCH, self.predecessors)
        for message_id in ids:
            message = load_inbound(self.store, message_id)
            if message is None:
                continue
            findings = self.findings_of(message)
            if finish_inbound(
                self.store, message_id, self.owner, findings, self.subscriptions, self.policy
            ):
                self.processed += 1
        return len(ids)

    def findings_of(self, message: InboundMessage) -> Findings:
        directory = self.book.current_blocking()
        secret = self.book.secret
        at = self._now()
        parsed = None
        reports: list[StoredReport] = []
        events: list[Event] = []
        bounces: list[CountedBounce] = []
        complained: list[str] = []
        for rcpt in message.recipients:
            addressed = resolve(directory, secret, rcpt)
            if addressed is None or addressed.mailbox is None:
                continue
            box_kind = addressed.mailbox.kind
            if box_kind not in (BOUNCE, SPAM_COMPLAINT):
                continue  # forwarding: sent on at DATA
            if parsed is None:
                parsed = parse_message(message.body)
            own = bool(self.hostname) and (parsed.reporting_mta or "").lower() == self.hostname
            if box_kind == BOUNCE and parsed.kind == kinds.BOUNCE and not own:
                for failure, match in match_bounce(self.store, addressed, parsed):
                    if match is not None:
                        event = bounce_event(match, failure, at)
                        events.append(event)
                        fields = event.payload["greenarrow"]
                        bounces.append(
                            CountedBounce(
                                recipient=match.email,
                                listid=fields.get("listid"),
                                bounce_type=str(fields["bounce_type"]),
                                at=at,
                                fields=match.common(at),
                            )
                        )
                    _keep(
                        reports,
                        events,
                        message.mail_from,
                        at=at,
                        kind=kinds.BOUNCE,
                        mailbox=rcpt,
                        parsed=parsed,
                        match=match,
                        failure=failure,
                    )
            elif box_kind == SPAM_COMPLAINT and parsed.kind == kinds.COMPLAINT:
                match = match_complaint(self.store, directory, secret, parsed)
                if match is not None:
                    events.append(complaint_event(match, at))
                    complained.append(match.email)
                _keep(
                    reports,
                    events,
                    message.mail_from,
                    at=at,
                    kind=kinds.COMPLAINT,
                    mailbox=rcpt,
                    parsed=parsed,
                    match=match,
                    failure=None,
                )
            else:
                log.info(
                    "inbound message %s to %s: %s (%s), no report",
                    message.id,
                    rcpt,
                    parsed.kind,
                    parsed.source,
                )
        return Findings(reports, events, bounces, complained)


def _keep(reports: list[StoredReport], events: list[Event], mail_from: str, **report: Any) -> None:
    """A report kept (``GET /api/reports``) and the event that publishes it (RabbitMQ's
    reports queue): the same fields for both."""
    reports.append(stored(**report))
    events.append(report_event(mail_from=mail_from, **report))
