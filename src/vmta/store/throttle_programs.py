"""Throttle programs and which templates and IP addresses use them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Select, and_, delete, func, insert, or_, select, update

from vmta.domain.config.bounds import MAX_INTEGER, is_stored_integer
from vmta.domain.config.names import name_key
from vmta.domain.config.virtual_mta import Ref, UsedBy
from vmta.domain.errors import NotFound, PartialRecord, ValidationFailed
from vmta.domain.limits.throttle_program import (
    BackoffLimits,
    BackoffMode,
    BackoffValue,
    ThrottleProgram,
)
from vmta.store.control_writes import refused_on_conflict, serialise_if_write
from vmta.store.named_rows import name_count, name_page, named_ref, taken_name_problems
from vmta.store.tables import (
    throttle_program_users,
    throttle_programs,
    throttling_templates,
    virtual_mtas,
)

C = throttle_programs.c
U = throttle_program_users.c
IP_ADDRESS = "ip_address"
TEMPLATE = "throttling_template"
# used_by is ordered by (type, id); its keyset cursor packs both in one integer.
_TYPE_RANK = {IP_ADDRESS: 0, TEMPLATE: 1}
_SHIFT = 32
USED_BY_CURSOR_MAX = (_TYPE_RANK[TEMPLATE] << _SHIFT) | MAX_INTEGER  # a page_token's bound


def used_by_cursor(user: UsedBy) -> int:
    return (_TYPE_RANK[user.type] << _SHIFT) | int(user.id or 0)


class ThrottleProgramRepository:
    """On a write connection (``Store.write``) it holds the control plane's write lock
    before anything else (control_writes.serialise_if_write): a free name, or a program
    no rule uses, is still so when the write happens."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        serialise_if_write(conn)

    # ---- reading ---------------------------------------------------------------------

    def get(self, program_id: int) -> ThrottleProgram | None:
        if not is_stored_integer(program_id):
            return None
        row = self.conn.execute(select(throttle_programs).where(C.id == program_id)).first()
        return None if row is None else _from_row(row._mapping)

    def resolve(self, ref: Ref) -> Ref | None:
        """The program a reference names (id wins over name), or None."""
        return named_ref(self.conn, throttle_programs, ref)

    def names(self, ids: Iterable[int]) -> dict[int, Ref]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = self.conn.execute(select(C.id, C.name).where(C.id.in_(wanted)))
        return {r.id: Ref(id=r.id, name=r.name) for r in rows}

    def page(
        self, *, after_id: int | None, offset: int, limit: int, name: str | None = None
    ) -> list[Ref]:
        return name_page(
            self.conn, throttle_programs, after_id=after_id, offset=offset, limit=limit, name=name
        )

    def count(self, name: str | None = None) -> int:
        return name_count(self.conn, throttle_programs, name)

    def _users(self, program_id: int) -> Select[Any]:
        v, t = virtual_mtas.c, throttling_templates.c
        name = func.coalesce(v.name, t.name).label("name")
        return (
            select(U.user_type, U.user_id, name)
            .outerjoin(virtual_mtas, and_(U.user_type == IP_ADDRESS, v.id == U.user_id))
            .outerjoin(throttling_templates, and_(U.user_type == TEMPLATE, t.id == U.user_id))
            .where(U.program_id == program_id)
            .order_by(U.user_type, U.user_id)
        )

    def users_page(
        self, program_id: int, *, after: int | None, offset: int, limit: int | None
    ) -> list[UsedBy]:
        """The templates and IP addresses whose rules name the program: IP addresses
        first, each kind by id. ``after`` is a cursor from ``used_by_cursor``."""
        query = self._users(program_id)
        if after is not None:
            kind = IP_ADDRESS if after >> _SHIFT == 0 else TEMPLATE
            last = min(after & ((1 << _SHIFT) - 1), MAX_INTEGER)  # binds on any database
            query = query.where(
                or_(U.user_type > kind, and_(U.user_type == kind, U.user_id > last))
            )
        elif offset:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return [
            UsedBy(type=r.user_type, id=r.user_id, name=r.name) for r in self.conn.execute(query)
        ]

    def users_count(self, program_id: int) -> int:
        query = select(func.count()).select_from(throttle_program_users)
        return int(self.conn.execute(query.where(U.program_id == program_id)).scalar_one())

    # ---- writing -----------------------------------------------------------------------

    def name_problems(self, name: str, *, own_id: int | None) -> list[str]:
        return taken_name_problems(
            self.conn, throttle_programs, name, own_id=own_id, what="throttle program"
        )

    def partial_problems(self, partial: PartialRecord, *, own_id: int | None) -> list[str]:
        return [] if partial.name is None else self.name_problems(partial.name, own_id=own_id)

    def insert(self, program: ThrottleProgram) -> int:
        problems = self.name_problems(program.name, own_id=None)
        if problems:
            raise ValidationFailed(problems)
        with refused_on_conflict(self.conn, lambda: self.name_problems(program.name, own_id=None)):
            result = self.conn.execute(insert(throttle_programs).values(**_values(program)))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def update(self, program_id: int, program: ThrottleProgram) -> None:
        current = self.get(program_id)
        if current is None:
            raise NotFound(f"No throttle program with id {program_id}.")
        if current.builtin:
            raise ValidationFailed("it is built in; a built-in throttle program cannot be changed")
        problems = self.name_problems(program.name, own_id=program_id)
        if problems:
            raise ValidationFailed(problems)
        values = _values(program) | {"updated_at": func.now()}
        with refused_on_conflict(
            self.conn, lambda: self.name_problems(program.name, own_id=program_id)
        ):
            self.conn.execute(update(throttle_programs).where(C.id == program_id).values(**values))

    def delete(self, program_id: int) -> None:
        """Delete, unless it is built in or a rule names it."""
        current = self.get(program_id)
        if current is None:
            raise NotFound(f"No throttle program with id {program_id}.")
        if current.builtin:
            raise ValidationFailed("it is built in; a built-in throttle program cannot be deleted")
        users = self.users_page(program_id, after=None, offset=0, limit=None)
        if users:
            raise ValidationFailed(
                [f"it is used by {u.type} '{u.name}' (id {u.id})" for u in users]
            )
        self.conn.execute(delete(throttle_programs).where(C.id == program_id))

    def reference_problems(self, references: dict[str, Ref]) -> tuple[dict[str, Ref], list[str]]:
        """Each program reference resolved, by field path, and a sentence per unknown one."""
        resolved: dict[str, Ref] = {}
        problems: list[str] = []
        for path, ref in references.items():
            found = self.resolve(ref)
            if found is None:
                shown = f"id {ref.id}" if ref.id is not None else f"name '{ref.name}'"
                problems.append(f"{path} does not refer to an existing throttle program ({shown})")
            else:
                resolved[path] = found
        return resolved, problems

    def set_users(self, user_type: str, user_id: int, program_ids: Iterable[int]) -> None:
        """Record that ``user_id`` (a template or an IP address) names exactly these."""
        self.conn.execute(
            delete(throttle_program_users).where(U.user_type == user_type, U.user_id == user_id)
        )
        rows = [
            {"program_id": p, "user_type": user_type, "user_id": user_id}
            for p in sorted(set(program_ids))
        ]
        if rows:
            self.conn.execute(insert(throttle_program_users), rows)


def _values(program: ThrottleProgram) -> dict[str, Any]:
    backoff = program.backoff
    return {
        "name": program.name,
        "name_key": name_key(program.name),
        "backoff": {
            "max_concurrent_connections": _value_json(backoff.max_concurrent_connections),
            "max_messages_per_hour": _value_json(backoff.max_messages_per_hour),
        },
        "return_after": program.return_after,
        "notify": program.notify,
        "failure_rate": program.failure_rate,
        "deferral_rate": program.deferral_rate,
    }


def _value_json(value: BackoffValue) -> dict[str, Any]:
    return {"mode": value.mode.value, "value": value.value}


def _value_from(data: dict[str, Any]) -> BackoffValue:
    return BackoffValue(BackoffMode(data["mode"]), int(data["value"]))


def _from_row(row: Any) -> ThrottleProgram:
    backoff = row["backoff"]
    return ThrottleProgram(
        id=row["id"],
        name=row["name"],
        builtin=bool(row["builtin"]),
        backoff=BackoffLimits(
            _value_from(backoff["max_concurrent_connections"]),
            _value_from(backoff["max_messages_per_hour"]),
        ),
        return_after=row["return_after"],
        notify=row["notify"],
        failure_rate=row["failure_rate"],
        deferral_rate=row["deferral_rate"],
    )
