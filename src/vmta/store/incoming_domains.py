"""Incoming email domains and their mailboxes (tables ``incoming_email_domains`` and
``incoming_mailboxes``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from vmta.domain.config.bounds import is_stored_integer
from vmta.domain.config.incoming_domain import IncomingDomain, Mailbox, MailboxDirectory
from vmta.domain.errors import NotFound, ValidationFailed
from vmta.store.control_writes import refused_on_conflict, serialise_if_write
from vmta.store.tables import incoming_email_domains, incoming_mailboxes

D = incoming_email_domains.c
B = incoming_mailboxes.c


def _domain(row: Any) -> IncomingDomain:
    return IncomingDomain(id=row.id, domain=row.domain, email_status=row.email_status)


def _mailbox(row: Any) -> Mailbox:
    return Mailbox(
        id=row.id,
        domain_id=row.domain_id,
        kind=row.kind,
        localpart=row.localpart,
        forward_to=tuple(row.forward_to or ()),
        is_wildcard=bool(row.is_wildcard),
    )


class IncomingDomainRepository:
    """On a write connection it takes the control plane's write lock first, so that a
    free domain or local part is still free when it is written."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        serialise_if_write(conn)

    # ---- domains ---------------------------------------------------------------------

    def get(self, domain_id: int) -> IncomingDomain | None:
        if not is_stored_integer(domain_id):
            return None
        row = self.conn.execute(select(incoming_email_domains).where(D.id == domain_id)).first()
        return None if row is None else _domain(row)

    def page(
        self, *, after_id: int | None, offset: int, limit: int, domain: str | None = None
    ) -> list[IncomingDomain]:
        query = select(incoming_email_domains).order_by(D.id).limit(limit)
        if domain is not None:
            query = query.where(D.domain_key == domain.lower())
        if after_id is not None:
            query = query.where(D.id > after_id)
        elif offset:
            query = query.offset(offset)
        return [_domain(row) for row in self.conn.execute(query)]

    def count(self, domain: str | None = None) -> int:
        query = select(func.count()).select_from(incoming_email_domains)
        if domain is not None:
            query = query.where(D.domain_key == domain.lower())
        return int(self.conn.execute(query).scalar_one())

    def _taken(self, domain: str, own_id: int | None) -> list[str]:
        clash = self.conn.execute(select(D.id).where(D.domain_key == domain.lower())).scalar()
        if clash is None or clash == own_id:
            return []
        return [
            f"domain '{domain}' is already used by another incoming email domain (id {clash});"
            " domains are unique ignoring case"
        ]

    def insert(self, domain: str, email_status: str) -> int:
        problems = self._taken(domain, None)
        if problems:
            raise ValidationFailed(problems)
        values = {"domain": domain, "domain_key": domain.lower(), "email_status": email_status}
        with refused_on_conflict(self.conn, lambda: self._taken(domain, None)):
            result = self.conn.execute(insert(incoming_email_domains).values(**values))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def update(self, domain_id: int, domain: str, email_status: str) -> None:
        if self.get(domain_id) is None:
            raise NotFound(f"No incoming email domain with id {domain_id}.")
        problems = self._taken(domain, domain_id)
        if problems:
            raise ValidationFailed(problems)
        values = {"domain": domain, "domain_key": domain.lower(), "email_status": email_status}
        with refused_on_conflict(self.conn, lambda: self._taken(domain, domain_id)):
            self.conn.execute(
                update(incoming_email_domains).where(D.id == domain_id).values(**values)
            )

    def delete(self, domain_id: int) -> None:
        if self.get(domain_id) is None:
            raise NotFound(f"No incoming email domain with id {domain_id}.")
        # Not every SQLite connection enforces ON DELETE CASCADE: the mailboxes go first.
        self.conn.execute(delete(incoming_mailboxes).where(B.domain_id == domain_id))
        self.conn.execute(delete(incoming_email_domains).where(D.id == domain_id))

    # ---- mailboxes -------------------------------------------------------------------

    def mailbox(self, domain_id: int, kind: str, mailbox_id: int) -> Mailbox | None:
        if not is_stored_integer(mailbox_id):
            return None
        row = self.conn.execute(
            select(incoming_mailboxes).where(
                B.id == mailbox_id, B.domain_id == domain_id, B.kind == kind
            )
        ).first()
        return None if row is None else _mailbox(row)

    def mailbox_page(
        self, domain_id: int, kind: str, *, after_id: int | None, offset: int, limit: int
    ) -> list[Mailbox]:
        query = (
            select(incoming_mailboxes)
            .where(B.domain_id == domain_id, B.kind == kind)
            .order_by(B.id)
            .limit(limit)
        )
        if after_id is not None:
            query = query.where(B.id > after_id)
        elif offset:
            query = query.offset(offset)
        return [_mailbox(row) for row in self.conn.execute(query)]

    def mailbox_count(self, domain_id: int, kind: str) -> int:
        query = select(func.count()).select_from(incoming_mailboxes)
        query = query.where(B.domain_id == domain_id, B.kind == kind)
        return int(self.conn.execute(query).scalar_one())

    def _mailbox_problems(self, box: Mailbox) -> list[str]:
        problems = []
        clash = self.conn.execute(
            select(B.id, B.kind).where(
                B.domain_id == box.domain_id, B.localpart_key == box.localpart.lower()
            )
        ).first()
        if clash is not None:
            problems.append(
                f"mailbox.localpart '{box.localpart}' is already used by another mailbox of"
                f" this domain (id {clash.id}); local parts are unique ignoring case"
            )
        if box.is_wildcard:
            wild = self.conn.execute(
                select(B.id).where(B.domain_id == box.domain_id, B.is_wildcard.is_(True))
            ).scalar()
            if wild is not None:
                problems.append(
                    f"mailbox.is_wildcard: the domain already has a wildcard mailbox (id {wild})"
                )
        return problems

    def insert_mailbox(self, box: Mailbox) -> int:
        if self.get(box.domain_id) is None:
            raise NotFound(f"No incoming email domain with id {box.domain_id}.")
        problems = self._mailbox_problems(box)
        if problems:
            raise ValidationFailed(problems)
        values = {
            "domain_id": box.domain_id,
            "kind": box.kind,
            "localpart": box.localpart,
            "localpart_key": box.localpart.lower(),
            "forward_to": list(box.forward_to) or None,
            "is_wildcard": box.is_wildcard,
        }
        with refused_on_conflict(self.conn, lambda: self._mailbox_problems(box)):
            result = self.conn.execute(insert(incoming_mailboxes).values(**values))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def delete_mailbox(self, domain_id: int, kind: str, mailbox_id: int) -> None:
        if self.mailbox(domain_id, kind, mailbox_id) is None:
            raise NotFound(f"No such mailbox with id {mailbox_id}.")
        self.conn.execute(delete(incoming_mailboxes).where(B.id == mailbox_id))

    # ---- the whole, for the listener and VERP ----------------------------------------

    def directory(self) -> MailboxDirectory:
        domains = [_domain(row) for row in self.conn.execute(select(incoming_email_domains))]
        boxes = [_mailbox(row) for row in self.conn.execute(select(incoming_mailboxes))]
        return MailboxDirectory.of(domains, boxes)
