"""Throttling templates (contract §2.8). They are not VirtualMTAs: they have their own id
sequence and name space, and IP addresses refer to them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from vmta.domain.config.bounds import is_stored_integer
from vmta.domain.config.names import name_key
from vmta.domain.config.virtual_mta import Limits, Ref, ThrottlingTemplate, VirtualMtaType
from vmta.domain.errors import NotFound, PartialRecord, ValidationFailed
from vmta.store.control_writes import refused_on_conflict, serialise_if_write
from vmta.store.item_ids import allocate_item_id
from vmta.store.named_rows import name_count, name_page, named_ref, taken_name_problems
from vmta.store.tables import throttling_templates, virtual_mtas
from vmta.store.throttle_programs import TEMPLATE, ThrottleProgramRepository
from vmta.store.throttle_rule_rows import program_ids, program_path, rules_from_json, rules_json

C = throttling_templates.c


def template_ref(conn: Connection, ref: Ref) -> Ref | None:
    """``{id, name}`` of the template a reference names (id wins over name), or None."""
    return named_ref(conn, throttling_templates, ref)


class ThrottlingTemplateRepository:
    """On a write connection (``Store.write``) it holds the control plane's write lock
    before anything else (control_writes.serialise_if_write)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        serialise_if_write(conn)

    # ---- reading ---------------------------------------------------------------------

    def get(self, template_id: int) -> ThrottlingTemplate | None:
        if not is_stored_integer(template_id):
            return None
        row = self.conn.execute(select(throttling_templates).where(C.id == template_id)).first()
        return None if row is None else _from_row(self.conn, row._mapping)

    def page(
        self, *, after_id: int | None, offset: int, limit: int, name: str | None = None
    ) -> list[Ref]:
        """One page of ``{id, name}`` in ascending id; ``after_id`` is the keyset cursor;
        ``name`` filters exactly, ignoring case."""
        return name_page(
            self.conn,
            throttling_templates,
            after_id=after_id,
            offset=offset,
            limit=limit,
            name=name,
        )

    def count(self, name: str | None = None) -> int:
        return name_count(self.conn, throttling_templates, name)

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

    def prepared(self, template: ThrottlingTemplate, *, own_id: int | None) -> ThrottlingTemplate:
        """``template`` with its rules' program references resolved, or ValidationFailed
        naming a taken name and every reference to nothing at once."""
        problems = self.name_problems(template.name, own_id=own_id)
        references = {
            f"rules[{i}].throttle_program": rule.throttle_program
            for i, rule in enumerate(template.rules)
            if rule.throttle_program is not None
        }
        resolved, missing = ThrottleProgramRepository(self.conn).reference_problems(references)
        problems.extend(missing)
        if problems:
            raise ValidationFailed(problems)
        rules = [
            replace(rule, throttle_program=resolved.get(f"rules[{i}].throttle_program"))
            for i, rule in enumerate(template.rules)
        ]
        return replace(template, rules=rules)

    def name_problems(self, name: str, *, own_id: int | None) -> list[str]:
        """Names are unique ignoring case among templates (not across VirtualMTAs)."""
        return taken_name_problems(
            self.conn, throttling_templates, name, own_id=own_id, what="throttling template"
        )

    def partial_problems(self, partial: PartialRecord, *, own_id: int | None) -> list[str]:
        """What the store would say of a template whose document was refused: whether its
        name is taken and which of the program references read well name nothing."""
        problems = [] if partial.name is None else self.name_problems(partial.name, own_id=own_id)
        programs = {p: r for p, r in partial.references.items() if program_path(p)}
        problems.extend(ThrottleProgramRepository(self.conn).reference_problems(programs)[1])
        return problems

    def insert(self, template: ThrottlingTemplate) -> int:
        template = self.prepared(template, own_id=None)
        values = self._values(template)
        with refused_on_conflict(self.conn, lambda: self.name_problems(template.name, own_id=None)):
            result = self.conn.execute(insert(throttling_templates).values(**values))
        key = result.inserted_primary_key
        assert key is not None
        new_id = int(key[0])
        ThrottleProgramRepository(self.conn).set_users(
            TEMPLATE, new_id, program_ids(template.rules)
        )
        return new_id

    def update(self, template_id: int, template: ThrottlingTemplate) -> None:
        """Replace the stored template. Rules without an id get a fresh one."""
        template = self.prepared(template, own_id=template_id)
        values = self._values(template)
        values["updated_at"] = func.now()

        def taken() -> list[str]:
            return self.name_problems(template.name, own_id=template_id)

        with refused_on_conflict(self.conn, taken):
            self.conn.execute(
                update(throttling_templates).where(C.id == template_id).values(**values)
            )
        programs = ThrottleProgramRepository(self.conn)
        programs.set_users(TEMPLATE, template_id, program_ids(template.rules))

    def delete(self, template_id: int) -> None:
        """Delete, unless an IP address uses it (contract §2.8)."""
        if self.get(template_id) is None:
            raise NotFound(f"No throttling template with id {template_id}.")
        users = self.users(template_id)
        if users:
            raise ValidationFailed(
                [f"it is used by ip_address '{user.name}' (id {user.id})" for user in users]
            )
        ThrottleProgramRepository(self.conn).set_users(TEMPLATE, template_id, ())

        def in_use() -> list[str]:
            return [
                f"it is used by ip_address '{u.name}' (id {u.id})" for u in self.users(template_id)
            ]

        with refused_on_conflict(self.conn, in_use):
            self.conn.execute(delete(throttling_templates).where(C.id == template_id))

    def _values(self, template: ThrottlingTemplate) -> dict[str, Any]:
        rules = rules_json(template.rules, lambda: allocate_item_id(self.conn))
        return {
            "name": template.name,
            "name_key": name_key(template.name),
            "rules": rules,
            "default_max_concurrent_connections": template.default.max_concurrent_connections,
            "default_max_messages_per_hour": template.default.max_messages_per_hour,
        }


def _from_row(conn: Connection, row: Any) -> ThrottlingTemplate:
    return ThrottlingTemplate(
        id=row["id"],
        name=row["name"],
        default=Limits(
            row["default_max_concurrent_connections"], row["default_max_messages_per_hour"]
        ),
        rules=rules_from_json(conn, row["rules"]),
    )
