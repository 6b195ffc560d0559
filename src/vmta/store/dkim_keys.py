"""DKIM keys: the records of ``/dkim_keys`` and what signers load.

``page``/``list`` return ``DkimKeyRow`` (no private key): for lists, the console and
anything that shows keys. Only ``get`` (one record, for the API's single-record answers)
and ``signing_keys`` (for the signer) read the private key.
"""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import Connection, Select, delete, func, insert, select, update

from vmta.domain.config.bounds import is_stored_integer
from vmta.domain.config.dkim_key import DkimKey, DkimKeyRow, KeyMaterial, key_of
from vmta.domain.errors import NotFound, ValidationFailed
from vmta.store.control_writes import refused_on_conflict, serialise_if_write
from vmta.store.item_ids import allocate_item_id
from vmta.store.tables import dkim_keys

C = dkim_keys.c
_ROW_COLUMNS = (
    C.id,
    C.domain,
    C.selector,
    C.default_for_domain,
    C.key_type,
    C.key_bits,
    C.public_key,
)


def _row(row: Any) -> DkimKeyRow:
    return DkimKeyRow(
        id=row.id,
        domain=row.domain,
        selector=row.selector,
        default_for_domain=bool(row.default_for_domain),
        key_type=row.key_type,
        key_bits=row.key_bits,
        public=row.public_key,
    )


def _key(row: Any) -> DkimKey:
    return DkimKey(
        id=row.id,
        domain=row.domain,
        selector=row.selector,
        default_for_domain=bool(row.default_for_domain),
        material=KeyMaterial(row.key_type, row.key_bits, row.private_pem, row.public_key),
    )


class DkimKeyRepository:
    """On a write connection it holds the control plane's write lock first, so that a free
    selector, or the one default of a domain, is still so when the write happens."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        serialise_if_write(conn)

    # ---- reading (no private key) ---------------------------------------------------

    def _filtered(self, query: Select[Any], domain: str | None) -> Select[Any]:
        return query if domain is None else query.where(C.domain_key == domain.lower())

    def page(
        self, *, after_id: int | None, offset: int, limit: int, domain: str | None = None
    ) -> builtins.list[DkimKeyRow]:
        query = self._filtered(select(*_ROW_COLUMNS), domain).order_by(C.id).limit(limit)
        if after_id is not None:
            query = query.where(C.id > after_id)
        elif offset:
            query = query.offset(offset)
        return [_row(r) for r in self.conn.execute(query)]

    def count(self, domain: str | None = None) -> int:
        query = self._filtered(select(func.count()).select_from(dkim_keys), domain)
        return int(self.conn.execute(query).scalar_one())

    def list(self, domain: str | None = None) -> builtins.list[DkimKeyRow]:
        """Every key (of ``domain``, ignoring case) in id order, without private keys."""
        query = self._filtered(select(*_ROW_COLUMNS), domain).order_by(C.id)
        return [_row(r) for r in self.conn.execute(query)]

    # ---- reading (with the private key) ---------------------------------------------

    def get(self, key_id: int) -> DkimKey | None:
        if not is_stored_integer(key_id):
            return None
        row = self.conn.execute(select(dkim_keys).where(C.id == key_id)).first()
        return None if row is None else _key(row)

    def signing_keys(self) -> builtins.list[DkimKey]:
        """Every key, private key included: for the signer's keyring only."""
        return [_key(r) for r in self.conn.execute(select(dkim_keys).order_by(C.id))]

    def fingerprint(self) -> tuple[int, int, int]:
        """Changes whenever a key is created, changed or deleted (each write takes a fresh
        ``revision``): what a keyring compares before reloading."""
        query = select(
            func.count(),
            func.coalesce(func.max(C.revision), 0),
            func.coalesce(func.sum(C.revision), 0),
        )
        count, highest, total = self.conn.execute(query).one()
        return int(count), int(highest), int(total)

    # ---- writing ---------------------------------------------------------------------

    def selector_problems(
        self, domain: str, selector: str, *, own_id: int | None
    ) -> builtins.list[str]:
        domain_key, selector_key = key_of(domain, selector)
        clash = self.conn.execute(
            select(C.id).where(C.domain_key == domain_key, C.selector_key == selector_key)
        ).scalar()
        if clash is None or clash == own_id:
            return []
        return [
            f"selector '{selector}' is already used for domain '{domain}' by another key"
            f" (id {clash}); selectors are unique per domain ignoring case"
        ]

    def create(self, key: DkimKey) -> int:
        problems = self.selector_problems(key.domain, key.selector, own_id=None)
        if problems:
            raise ValidationFailed(problems)
        with refused_on_conflict(
            self.conn, lambda: self.selector_problems(key.domain, key.selector, own_id=None)
        ):
            result = self.conn.execute(insert(dkim_keys).values(**self._values(key)))
        primary = result.inserted_primary_key
        assert primary is not None
        new_id = int(primary[0])
        if key.default_for_domain:
            self._clear_other_defaults(key.domain, new_id)
        return new_id

    def update(self, key_id: int, key: DkimKey) -> None:
        if self.get(key_id) is None:
            raise NotFound(f"No DKIM key with id {key_id}.")
        problems = self.selector_problems(key.domain, key.selector, own_id=key_id)
        if problems:
            raise ValidationFailed(problems)
        values = self._values(key) | {"updated_at": func.now()}
        with refused_on_conflict(
            self.conn, lambda: self.selector_problems(key.domain, key.selector, own_id=key_id)
        ):
            self.conn.execute(update(dkim_keys).where(C.id == key_id).values(**values))
        if key.default_for_domain:
            self._clear_other_defaults(key.domain, key_id)

    def delete(self, key_id: int) -> None:
        if self.get(key_id) is None:
            raise NotFound(f"No DKIM key with id {key_id}.")
        self.conn.execute(delete(dkim_keys).where(C.id == key_id))

    def _values(self, key: DkimKey) -> dict[str, Any]:
        domain_key, selector_key = key_of(key.domain, key.selector)
        return {
            "domain": key.domain,
            "domain_key": domain_key,
            "selector": key.selector,
            "selector_key": selector_key,
            "default_for_domain": key.default_for_domain,
            "key_type": key.material.type,
            "key_bits": key.material.bits,
            "private_pem": key.material.private_pem,
            "public_key": key.material.public,
            "revision": allocate_item_id(self.conn),
        }

    def _clear_other_defaults(self, domain: str, own_id: int) -> None:
        """One default per domain: setting it on one key clears it on the others."""
        others = (C.domain_key == domain.lower()) & (C.id != own_id) & C.default_for_domain
        changed = self.conn.execute(select(C.id).where(others)).scalars().all()
        for other in changed:
            self.conn.execute(
                update(dkim_keys)
                .where(C.id == other)
                .values(
                    default_for_domain=False,
                    revision=allocate_item_id(self.conn),
                    updated_at=func.now(),
                )
            )
