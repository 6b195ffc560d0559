"""Throttling templates (API.md §2.8). They are not VirtualMTAs: they have their own id
sequence and name space, and IP addresses refer to them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, delete, func, insert, select, update

from vmta.domain.bounds import is_stored_integer
from vmta.domain.errors import NotFound, PartialRecord, ValidationFailed
from vmta.domain.names import name_key
from vmta.domain.virtual_mta import Limits, Ref, ThrottleRule, ThrottlingTemplate, VirtualMtaType
from vmta.store.control_writes import is_write, refused_on_conflict, serialise_control_writes
from vmta.store.tables import throttling_templates, virtual_mtas
from vmta.store.virtual_mtas import allocate_item_id

C = throttling_templates.c


class ThrottlingTemplateRepository:
    """On a write connection (``Store.write``) the repository takes the control plane's
    write lock before anything else (see control_writes), so that what it checks (free names,
    existing references, no loop, unused before delete) still holds when it writes."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        if is_write(conn):
            serialise_control_writes(conn)

    # ---- reading ---------------------------------------------------------------------

    def get(self, template_id: int) -> ThrottlingTemplate | None:
        if not is_stored_integer(template_id):
            return None
        row = self.conn.execute(select(throttling_templates).where(C.id == template_id)).first()
        return None if row is None else _from_row(row._mapping)

    def page(self, *, after_id: int | None, offset: int, limit: int) -> list[Ref]:
        """One page of ``{id, name}`` in ascending id; ``after_id`` is the keyset cursor."""
        query: Select[Any] = select(C.id, C.name).order_by(C.id).limit(limit)
        if after_id is not None:
            query = query.where(C.id > after_id)
        elif offset:
            query = query.offset(offset)
        return [Ref(id=row.id, name=row.name) for row in self.conn.execute(query)]

    def count(self) -> int:
        query = select(func.count()).select_from(throttling_templates)
        return int(self.conn.execute(query).scalar_one())

    def users(self, template_id: int) -> list[Ref]:
        """The IP addresses whose throttles come from this template."""
        v = virtual_mtas.c
        rows = self.conn.execute(
            select(v.id, v.name)
            .where(v.throttling_template_id == template_id)
            .where(v.type == VirtualMtaType.IP_ADDRESS.value)
            .order_by(v.id)
        )
        return [Ref(id=r.id, name=r.name, type=VirtualMtaType.IP_ADDRESS) for r in rows]

    # ---- writing -----------------------------------------------------------------------

    def check_name(self, template: ThrottlingTemplate, *, own_id: int | None) -> None:
        problems = self.name_problems(template.name, own_id=own_id)
        if problems:
            raise ValidationFailed(problems)

    def name_problems(self, name: str, *, own_id: int | None) -> list[str]:
        """Names are unique ignoring case among templates (not across VirtualMTAs)."""
        clash = self.conn.execute(select(C.id).where(C.name_key == name_key(name))).scalar()
        if clash is None or clash == own_id:
            return []
        return [
            f"name '{name}' is already used by another throttling template"
            f" (id {clash}); names are unique ignoring case"
        ]

    def partial_problems(self, partial: PartialRecord, *, own_id: int | None) -> list[str]:
        """What the store would say of a template whose document was refused: templates
        refer to nothing, so only whether its name is taken."""
        return [] if partial.name is None else self.name_problems(partial.name, own_id=own_id)

    def insert(self, template: ThrottlingTemplate) -> int:
        self.check_name(template, own_id=None)
        values = self._values(template)
        with refused_on_conflict(self.conn, lambda: self.name_problems(template.name, own_id=None)):
            result = self.conn.execute(insert(throttling_templates).values(**values))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def update(self, template_id: int, template: ThrottlingTemplate) -> None:
        """Replace the stored template. Rules without an id get a fresh one."""
        self.check_name(template, own_id=template_id)
        values = self._values(template)
        values["updated_at"] = func.now()

        def taken() -> list[str]:
            return self.name_problems(template.name, own_id=template_id)

        with refused_on_conflict(self.conn, taken):
            self.conn.execute(
                update(throttling_templates).where(C.id == template_id).values(**values)
            )

    def delete(self, template_id: int) -> None:
        """Delete, unless an IP address uses it (API.md §2.8)."""
        if self.get(template_id) is None:
            raise NotFound(f"No throttling template with id {template_id}.")
        users = self.users(template_id)
        if users:
            raise ValidationFailed(
                [f"it is used by ip_address '{user.name}' (id {user.id})" for user in users]
            )

        def in_use() -> list[str]:
            return [
                f"it is used by ip_address '{u.name}' (id {u.id})" for u in self.users(template_id)
            ]

        with refused_on_conflict(self.conn, in_use):
            self.conn.execute(delete(throttling_templates).where(C.id == template_id))

    def _values(self, template: ThrottlingTemplate) -> dict[str, Any]:
        rules = [
            {
                "id": rule.id if rule.id is not None else allocate_item_id(self.conn),
                "domains": list(rule.domains),
                "max_concurrent_connections": rule.limits.max_concurrent_connections,
                "max_messages_per_hour": rule.limits.max_messages_per_hour,
            }
            for rule in template.rules
        ]
        return {
            "name": template.name,
            "name_key": name_key(template.name),
            "rules": rules,
            "default_max_concurrent_connections": template.default.max_concurrent_connections,
            "default_max_messages_per_hour": template.default.max_messages_per_hour,
        }


def _from_row(row: Any) -> ThrottlingTemplate:
    return ThrottlingTemplate(
        id=row["id"],
        name=row["name"],
        default=Limits(
            row["default_max_concurrent_connections"], row["default_max_messages_per_hour"]
        ),
        rules=[
            ThrottleRule(
                id=r["id"],
                domains=list(r["domains"]),
                limits=Limits(r["max_concurrent_connections"], r["max_messages_per_hour"]),
            )
            for r in row["rules"]
        ],
    )
