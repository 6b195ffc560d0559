"""VirtualMTAs (ip addresses, relay servers, routing rules) and the default VirtualMTA:
the repository the API and the delivery engine use. What it needs of its own lives
beside it: the row of a record (virtual_mta_rows), the checks a write must pass
(virtual_mta_checks) and what sends through a VirtualMTA (virtual_mta_users)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, delete, func, insert, select, update

from vmta.domain.config.bounds import is_stored_integer
from vmta.domain.config.names import name_key
from vmta.domain.config.virtual_mta import (
    IpAddress,
    Ref,
    RoutingRule,
    UsedBy,
    VirtualMta,
    VirtualMtaType,
)
from vmta.domain.errors import NotFound, PartialRecord, ValidationFailed
from vmta.store.control_writes import refused_on_conflict, serialise_if_write
from vmta.store.item_ids import allocate_item_id
from vmta.store.tables import routing_rule_targets, virtual_mtas
from vmta.store.throttle_programs import IP_ADDRESS as IP_ADDRESS_USER
from vmta.store.throttle_programs import ThrottleProgramRepository
from vmta.store.throttle_rule_rows import program_ids
from vmta.store.throttling_templates import template_ref
from vmta.store.virtual_mta_checks import VirtualMtaChecks, shown
from vmta.store.virtual_mta_rows import record_from_row, row_values, target_ids
from vmta.store.virtual_mta_users import (
    VirtualMtaUsers,
    default_virtual_mta,
    in_use_message,
    store_default_virtual_mta,
)

T = virtual_mtas.c


@dataclass(frozen=True)
class ListFilter:
    """Exact-match filters of a list request; ``name`` compares ignoring case."""

    name: str | None = None
    ip: str | None = None
    hostname: str | None = None


class VirtualMtaRepository:
    """On a write connection (``Store.write``) it holds the control plane's write lock
    before anything else (control_writes.serialise_if_write)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        serialise_if_write(conn)
        self._checks = VirtualMtaChecks(conn)
        self._users = VirtualMtaUsers(conn)

    # ---- reading ---------------------------------------------------------------------

    def get(self, vmta_id: int, expected: VirtualMtaType | None = None) -> VirtualMta | None:
        if not is_stored_integer(vmta_id):
            return None  # no row has it, and SQLite cannot even bind one past 2**63
        query = select(virtual_mtas).where(T.id == vmta_id)
        if expected is not None:
            query = query.where(T.type == expected.value)
        row = self.conn.execute(query).first()
        return None if row is None else record_from_row(self.conn, row._mapping)

    def get_by_name(self, name: str) -> VirtualMta | None:
        row = self.conn.execute(select(virtual_mtas).where(T.name_key == name_key(name))).first()
        return None if row is None else record_from_row(self.conn, row._mapping)

    def page(
        self,
        kind: VirtualMtaType | None,
        *,
        after_id: int | None,
        offset: int,
        limit: int,
        filters: ListFilter = ListFilter(),
    ) -> list[Ref]:
        """One page of ``{type, id, name}`` in ascending id. ``after_id`` is the keyset
        cursor: with it the page costs one index range scan wherever it starts."""
        query: Select[Any] = select(T.id, T.type, T.name).order_by(T.id).limit(limit)
        query = self._filtered(query, kind, filters)
        if after_id is not None:
            query = query.where(T.id > after_id)
        elif offset:
            query = query.offset(offset)
        return [
            Ref(id=row.id, name=row.name, type=VirtualMtaType(row.type))
            for row in self.conn.execute(query)
        ]

    def count(self, kind: VirtualMtaType | None, filters: ListFilter = ListFilter()) -> int:
        query: Select[Any] = select(func.count()).select_from(virtual_mtas)
        return int(self.conn.execute(self._filtered(query, kind, filters)).scalar_one())

    @staticmethod
    def _filtered(
        query: Select[Any], kind: VirtualMtaType | None, filters: ListFilter
    ) -> Select[Any]:
        if kind is not None:
            query = query.where(T.type == kind.value)
        if filters.name is not None:
            query = query.where(T.name_key == name_key(filters.name))
        if filters.ip is not None:
            query = query.where(T.ip == filters.ip)
        if filters.hostname is not None:
            # Host names compare ignoring case (RFC 4343), as GreenArrow's filter does.
            query = query.where(func.lower(T.hostname) == filters.hostname.lower())
        return query

    def ids_by_source_ip(self, ip: str) -> list[int]:
        return [r.id for r in self.conn.execute(select(T.id).where(T.ip == ip).order_by(T.id))]

    def used_by(self, vmta_id: int) -> list[UsedBy]:
        """Every record that sends through ``vmta_id``, in the form of contract §2.9."""
        return self._users.all(vmta_id)

    def used_by_page(
        self, vmta_id: int, *, after_id: int | None, offset: int, limit: int | None
    ) -> list[UsedBy]:
        """One page of ``used_by`` in ascending id, the default VirtualMTA setting (which
        has no id) last. ``after_id`` is the keyset cursor; ``limit`` None: all."""
        return self._users.page(vmta_id, after_id=after_id, offset=offset, limit=limit)

    def used_by_count(self, vmta_id: int) -> int:
        return self._users.count(vmta_id)

    def default(self) -> Ref | None:
        return default_virtual_mta(self.conn)

    # ---- resolving references ----------------------------------------------------------

    def resolve(self, ref: Ref) -> Ref | None:
        """The VirtualMTA a reference names (id wins over name), fully resolved, or None."""
        return self._checks.resolve(ref)

    def resolve_template(self, ref: Ref) -> Ref | None:
        return template_ref(self.conn, ref)

    def prepare(self, vmta: VirtualMta, *, own_id: int | None) -> VirtualMta:
        """Check the rules that need the store (unique name, references that exist, no
        cycle) and return ``vmta`` with every reference resolved. Raises ValidationFailed
        listing every problem at once."""
        return self._checks.prepare(vmta, own_id=own_id)

    def partial_problems(self, partial: PartialRecord, *, own_id: int | None) -> list[str]:
        """What ``prepare`` would say of the name and references of a record whose
        document was refused; cycles need the whole record and are not looked for."""
        return self._checks.partial_problems(partial, own_id=own_id)

    # ---- writing -----------------------------------------------------------------------

    def insert(self, vmta: VirtualMta) -> int:
        """Insert a prepared VirtualMTA; returns its id from the shared sequence."""
        values = self._values(vmta)
        with refused_on_conflict(self.conn, lambda: self._checks.write_problems(vmta, None)):
            result = self.conn.execute(insert(virtual_mtas).values(**values))
            key = result.inserted_primary_key
            assert key is not None
            new_id = int(key[0])
            self._write_targets(new_id, vmta)
            self._write_program_users(new_id, vmta)
        return new_id

    def update(self, vmta_id: int, vmta: VirtualMta) -> None:
        values = self._values(vmta)
        values["updated_at"] = func.now()
        with refused_on_conflict(self.conn, lambda: self._checks.write_problems(vmta, vmta_id)):
            self.conn.execute(update(virtual_mtas).where(T.id == vmta_id).values(**values))
            self._write_targets(vmta_id, vmta)
            self._write_program_users(vmta_id, vmta)

    def delete(self, vmta_id: int, expected: VirtualMtaType) -> None:
        """Delete, unless something sends through it (contract §2.4)."""
        if self.get(vmta_id, expected) is None:
            raise NotFound(f"No {expected.value} with id {vmta_id}.")
        users = self.used_by(vmta_id)
        if users:
            raise ValidationFailed([in_use_message(user) for user in users])

        def in_use() -> list[str]:
            return [in_use_message(user) for user in self.used_by(vmta_id)]

        with refused_on_conflict(self.conn, in_use):
            self.conn.execute(
                delete(routing_rule_targets).where(routing_rule_targets.c.rule_id == vmta_id)
            )
            ThrottleProgramRepository(self.conn).set_users(IP_ADDRESS_USER, vmta_id, ())
            self.conn.execute(delete(virtual_mtas).where(T.id == vmta_id))

    def set_default(self, ref: Ref | None) -> Ref | None:
        resolved: Ref | None = None
        if ref is not None:
            resolved = self.resolve(ref)
            if resolved is None:
                raise ValidationFailed(
                    f"virtual_mta does not refer to an existing VirtualMTA ({shown(ref)})"
                )
        store_default_virtual_mta(self.conn, None if resolved is None else resolved.id)
        return resolved

    def _values(self, vmta: VirtualMta) -> dict[str, Any]:
        return row_values(vmta, lambda: allocate_item_id(self.conn))

    def _write_targets(self, vmta_id: int, vmta: VirtualMta) -> None:
        if not isinstance(vmta, RoutingRule):
            return
        self.conn.execute(
            delete(routing_rule_targets).where(routing_rule_targets.c.rule_id == vmta_id)
        )
        targets = sorted(set(target_ids(vmta)))
        if targets:
            self.conn.execute(
                insert(routing_rule_targets),
                [{"rule_id": vmta_id, "target_id": t} for t in targets],
            )

    def _write_program_users(self, vmta_id: int, vmta: VirtualMta) -> None:
        rules = vmta.rules if isinstance(vmta, IpAddress) else []
        ThrottleProgramRepository(self.conn).set_users(IP_ADDRESS_USER, vmta_id, program_ids(rules))
