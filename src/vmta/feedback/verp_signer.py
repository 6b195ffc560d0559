"""VERP at delivery time: a message whose envelope sender is a bounce mailbox of an
incoming email domain leaves once per recipient, each time with the sender
``<localpart>-<token>@<domain>`` naming that recipient (vmta.domain.reports.verp)."""

from __future__ import annotations

from vmta.domain.attempts.spool_records import Job
from vmta.domain.reports.verp import VerpTarget, can_encode, verp_address
from vmta.feedback.directory import MailboxBook


class VerpSigner:
    def __init__(self, book: MailboxBook) -> None:
        self.book = book

    async def per_recipient(self, mail_from: str) -> bool:
        if not mail_from:
            return False
        return (await self.book.current()).bounce_mailbox(mail_from) is not None

    async def sender_for(self, job: Job) -> str:
        if not job.mail_from:
            return job.mail_from
        mailbox = (await self.book.current()).bounce_mailbox(job.mail_from)
        if mailbox is None or not can_encode(job.message_id, job.recipient_id):
            return job.mail_from
        target = VerpTarget(job.message_id, job.recipient_id)
        return verp_address(self.book.secret, mailbox, target)
