"""The incoming domains and mailboxes as the inbound listener and VERP read them: a
snapshot of the database at most ``MAX_AGE`` seconds old, so that a change made through
the API applies within it (under five seconds) without a query per command."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from vmta.domain.config.incoming_domain import BOUNCE, FORWARDING, Mailbox, MailboxDirectory
from vmta.domain.reports.verp import (
    GreenArrowVerp,
    VerpTarget,
    decode_token,
    greenarrow_form,
    split_address,
    token_of,
)
from vmta.store.incoming_domains import IncomingDomainRepository
from vmta.store.store import Store

MAX_AGE = 2.0


@dataclass(frozen=True)
class Addressed:
    """What an address at an incoming domain names."""

    domain_status: str  # normal, defer, disabled
    mailbox: Mailbox | None  # None: no mailbox has this address
    mailbox_address: str = ""  # the mailbox's plain address
    target: VerpTarget | None = None  # a VERP token that verified
    greenarrow: GreenArrowVerp | None = None  # GreenArrow's VERP form
    forged: bool = False  # a VERP-shaped address whose token does not verify


class MailboxBook:
    def __init__(
        self,
        store: Store,
        secret: bytes,
        *,
        now: Callable[[], float] = time.monotonic,
        max_age: float = MAX_AGE,
    ) -> None:
        self.store = store
        self.secret = secret
        self._now = now
        self._max_age = max_age
        self._snapshot = MailboxDirectory()
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> MailboxDirectory:
        with self.store.read() as conn:
            return IncomingDomainRepository(conn).directory()

    async def current(self) -> MailboxDirectory:
        if self._loaded_at is not None and self._now() - self._loaded_at < self._max_age:
            return self._snapshot
        async with self._lock:
            if self._loaded_at is None or self._now() - self._loaded_at >= self._max_age:
                self._snapshot = await asyncio.to_thread(self._load)
                self._loaded_at = self._now()
        return self._snapshot

    def current_blocking(self) -> MailboxDirectory:
        """For the processor's thread: a fresh read."""
        return self._load()

    async def lookup(self, address: str) -> Addressed | None:
        return resolve(await self.current(), self.secret, address)


def resolve(directory: MailboxDirectory, secret: bytes, address: str) -> Addressed | None:
    """What ``address`` names; None when its domain is not an incoming domain."""
    parts = split_address(address)
    if parts is None:
        return None
    local, domain_name = parts
    domain = directory.domains.get(domain_name)
    if domain is None:
        return None
    box = directory.mailboxes.get((domain.id, local.lower()))
    if box is not None:
        return Addressed(domain.email_status, box, f"{box.localpart}@{domain.domain}")
    # VERP: <bounce mailbox>-<token> or GreenArrow's <mailbox>-<list>-<send>-<user>=<dom>.
    for (domain_id, key), candidate in directory.mailboxes.items():
        if domain_id != domain.id or candidate.kind != BOUNCE:
            continue
        if not local.lower().startswith(key + "-"):
            continue
        plain = f"{candidate.localpart}@{domain.domain}"
        token = token_of(local, candidate.localpart)
        if token is not None:
            target = decode_token(secret, token)
            if target is not None:
                return Addressed(domain.email_status, candidate, plain, target=target)
        form = greenarrow_form(local, candidate.localpart)
        if form is not None:
            return Addressed(domain.email_status, candidate, plain, greenarrow=form)
        return Addressed(domain.email_status, None, plain, forged=True)
    wildcard = directory.wildcards.get(domain.id)
    if wildcard is not None and wildcard.kind == FORWARDING:
        return Addressed(domain.email_status, wildcard, f"{local}@{domain.domain}")
    return Addressed(domain.email_status, None)
