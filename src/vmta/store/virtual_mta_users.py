"""What sends through a VirtualMTA (contract §2.9 ``used_by``), and the default
VirtualMTA setting, which is one of those users: the VirtualMTAs that redirect to it,
the routing rules with an entry for it, and the setting when it names it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, func, insert, select, update

from vmta.domain.config.virtual_mta import DEFAULT_VIRTUAL_MTA, Ref, UsedBy, VirtualMtaType
from vmta.store.tables import control_settings, routing_rule_targets, virtual_mtas

T = virtual_mtas.c


def default_virtual_mta(conn: Connection) -> Ref | None:
    """The VirtualMTA the default setting names, or None when it names none."""
    row = conn.execute(
        select(T.id, T.type, T.name)
        .join(control_settings, control_settings.c.default_virtual_mta_id == T.id)
        .where(control_settings.c.id == 1)
    ).first()
    return None if row is None else Ref(id=row.id, name=row.name, type=VirtualMtaType(row.type))


def store_default_virtual_mta(conn: Connection, vmta_id: int | None) -> None:
    """Make ``vmta_id`` (an existing VirtualMTA, or None) the default setting."""
    exists = conn.execute(select(control_settings.c.id).where(control_settings.c.id == 1)).first()
    if exists is None:
        conn.execute(insert(control_settings).values(id=1, default_virtual_mta_id=vmta_id))
    else:
        conn.execute(
            update(control_settings)
            .where(control_settings.c.id == 1)
            .values(default_virtual_mta_id=vmta_id)
        )


class VirtualMtaUsers:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self, vmta_id: int) -> list[UsedBy]:
        """Every record that sends through ``vmta_id``, in the form of contract §2.9."""
        return self.page(vmta_id, after_id=None, offset=0, limit=None)

    def page(
        self, vmta_id: int, *, after_id: int | None, offset: int, limit: int | None
    ) -> list[UsedBy]:
        """One page of ``used_by`` in ascending id, the default VirtualMTA setting (which
        has no id) last. ``after_id`` is the keyset cursor; ``limit`` None: all."""
        query = self._user_ids(vmta_id)
        if after_id is not None:
            query = query.where(T.id > after_id)
        elif offset:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        users = [UsedBy(type=r.type, id=r.id, name=r.name) for r in self.conn.execute(query)]
        reached_end = limit is None or len(users) < limit
        if reached_end and (after_id is not None or offset <= self._user_count(vmta_id)):
            default = default_virtual_mta(self.conn)
            if default is not None and default.id == vmta_id:
                users.append(UsedBy(type=DEFAULT_VIRTUAL_MTA))
        return users

    def count(self, vmta_id: int) -> int:
        default = default_virtual_mta(self.conn)
        is_default = default is not None and default.id == vmta_id
        return self._user_count(vmta_id) + (1 if is_default else 0)

    def _user_ids(self, vmta_id: int) -> Select[Any]:
        """Ids of the VirtualMTAs that redirect to ``vmta_id`` or route through it. A
        routing rule has no redirect, so the two sets never share an id."""
        redirecting = select(T.id.label("id")).where(T.redirect_id == vmta_id)
        routing = select(routing_rule_targets.c.rule_id.label("id")).where(
            routing_rule_targets.c.target_id == vmta_id
        )
        both = redirecting.union_all(routing).subquery()
        return select(T.id, T.type, T.name).join(both, both.c.id == T.id).order_by(T.id)

    def _user_count(self, vmta_id: int) -> int:
        counted = select(func.count()).select_from(self._user_ids(vmta_id).subquery())
        return int(self.conn.execute(counted).scalar_one())


def in_use_message(user: UsedBy) -> str:
    """Why a VirtualMTA that ``user`` sends through cannot be deleted (contract §2.4)."""
    if user.type == DEFAULT_VIRTUAL_MTA:
        return "it is the default VirtualMTA; set another default first"
    return f"it is used by {user.type} '{user.name}' (id {user.id})"
