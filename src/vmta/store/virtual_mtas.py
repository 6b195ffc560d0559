"""VirtualMTAs (ip addresses, relay servers, routing rules) and the default VirtualMTA."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, delete, func, insert, select, update

from vmta.domain.bounds import is_stored_integer
from vmta.domain.errors import NotFound, PartialRecord, ValidationFailed
from vmta.domain.reference_graph import path_back
from vmta.domain.virtual_mta import (
    DEFAULT_VIRTUAL_MTA,
    DeliverThrough,
    Distribution,
    DomainOverride,
    IpAddress,
    Limits,
    RandomizationType,
    Ref,
    RelayServer,
    RoutingRule,
    UsedBy,
    VirtualMta,
    VirtualMtaType,
    type_of,
)
from vmta.store.control_writes import is_write, refused_on_conflict, serialise_control_writes
from vmta.store.reference_paths import (
    TEMPLATE_FIELD,
    names_virtual_mta,
    references_of,
    with_references,
)
from vmta.store.tables import (
    control_settings,
    item_ids,
    routing_rule_targets,
    throttling_templates,
    virtual_mtas,
)
from vmta.store.throttle_programs import IP_ADDRESS as IP_ADDRESS_USER
from vmta.store.throttle_programs import ThrottleProgramRepository
from vmta.store.throttle_rule_rows import program_ids, program_path, rules_from_json, rules_json

T = virtual_mtas.c


@dataclass(frozen=True)
class ListFilter:
    """Exact-match filters of a list request; ``name`` compares ignoring case."""

    name: str | None = None
    ip: str | None = None
    hostname: str | None = None


def allocate_item_id(conn: Connection) -> int:
    """A fresh id for an item inside a record (domain override, throttle rule)."""
    result = conn.execute(insert(item_ids).values())
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


class VirtualMtaRepository:
    """On a write connection (``Store.write``) the repository takes the control plane's
    write lock before anything else (see control_writes), so that what it checks (free names,
    existing references, no loop, unused before delete) still holds when it writes."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        if is_write(conn):
            serialise_control_writes(conn)

    # ---- reading ---------------------------------------------------------------------

    def get(self, vmta_id: int, expected: VirtualMtaType | None = None) -> VirtualMta | None:
        if not is_stored_integer(vmta_id):
            return None  # no row has it, and SQLite cannot even bind one past 2**63
        query = select(virtual_mtas).where(T.id == vmta_id)
        if expected is not None:
            query = query.where(T.type == expected.value)
        row = self.conn.execute(query).first()
        return None if row is None else self._from_row(row._mapping)

    def get_by_name(self, name: str) -> VirtualMta | None:
        row = self.conn.execute(select(virtual_mtas).where(T.name_key == name.lower())).first()
        return None if row is None else self._from_row(row._mapping)

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
            query = query.where(T.name_key == filters.name.lower())
        if filters.ip is not None:
            query = query.where(T.ip == filters.ip)
        if filters.hostname is not None:
            # Host names compare ignoring case (RFC 4343), as GreenArrow's filter does.
            query = query.where(func.lower(T.hostname) == filters.hostname.lower())
        return query

    def used_by(self, vmta_id: int) -> list[UsedBy]:
        """Every record that sends through ``vmta_id``, in the form of contract §2.9."""
        return self.used_by_page(vmta_id, after_id=None, offset=0, limit=None)

    def _user_ids(self, vmta_id: int) -> Select[Any]:
        """Ids of the VirtualMTAs that redirect to ``vmta_id`` or route through it. A
        routing rule has no redirect, so the two sets never share an id."""
        redirecting = select(T.id.label("id")).where(T.redirect_id == vmta_id)
        routing = select(routing_rule_targets.c.rule_id.label("id")).where(
            routing_rule_targets.c.target_id == vmta_id
        )
        both = redirecting.union_all(routing).subquery()
        return select(T.id, T.type, T.name).join(both, both.c.id == T.id).order_by(T.id)

    def used_by_page(
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
            default = self.default()
            if default is not None and default.id == vmta_id:
                users.append(UsedBy(type=DEFAULT_VIRTUAL_MTA))
        return users

    def _user_count(self, vmta_id: int) -> int:
        counted = select(func.count()).select_from(self._user_ids(vmta_id).subquery())
        return int(self.conn.execute(counted).scalar_one())

    def used_by_count(self, vmta_id: int) -> int:
        default = self.default()
        is_default = default is not None and default.id == vmta_id
        return self._user_count(vmta_id) + (1 if is_default else 0)

    def default(self) -> Ref | None:
        row = self.conn.execute(
            select(T.id, T.type, T.name)
            .join(control_settings, control_settings.c.default_virtual_mta_id == T.id)
            .where(control_settings.c.id == 1)
        ).first()
        return None if row is None else Ref(id=row.id, name=row.name, type=VirtualMtaType(row.type))

    def ids_by_source_ip(self, ip: str) -> list[int]:
        return [r.id for r in self.conn.execute(select(T.id).where(T.ip == ip).order_by(T.id))]

    # ---- resolving references ----------------------------------------------------------

    def resolve(self, ref: Ref) -> Ref | None:
        """The VirtualMTA a reference names (id wins over name), fully resolved, or None."""
        query = select(T.id, T.type, T.name)
        if ref.id is not None:
            if not is_stored_integer(ref.id):
                return None  # an id past every stored one names nothing
            query = query.where(T.id == ref.id)
        elif ref.name is not None:
            query = query.where(T.name_key == ref.name.lower())
        else:
            return None
        row = self.conn.execute(query).first()
        return None if row is None else Ref(id=row.id, name=row.name, type=VirtualMtaType(row.type))

    def resolve_template(self, ref: Ref) -> Ref | None:
        c = throttling_templates.c
        query = select(c.id, c.name)
        if ref.id is not None:
            if not is_stored_integer(ref.id):
                return None
            query = query.where(c.id == ref.id)
        elif ref.name is not None:
            query = query.where(c.name_key == ref.name.lower())
        else:
            return None
        row = self.conn.execute(query).first()
        return None if row is None else Ref(id=row.id, name=row.name)

    def prepare(self, vmta: VirtualMta, *, own_id: int | None) -> VirtualMta:
        """Check the rules that need the store (unique name, references that exist, no
        cycle) and return ``vmta`` with every reference resolved. Raises ValidationFailed
        listing every problem at once."""
        problems = self._name_problems(vmta.name, own_id)
        resolved = with_references(vmta, lambda path, ref: self._resolve_field(path, ref, problems))
        if not problems and own_id is not None:
            problems.extend(self._cycle_problems(resolved, own_id))
        if problems:
            raise ValidationFailed(problems)
        return resolved

    def partial_problems(self, partial: PartialRecord, *, own_id: int | None) -> list[str]:
        """What ``prepare`` would say of the name and references of a record whose
        document was refused; cycles need the whole record and are not looked for."""
        problems = [] if partial.name is None else self._name_problems(partial.name, own_id)
        for path, ref in partial.references.items():
            self._resolve_field(path, ref, problems)
        return problems

    def _name_problems(self, name: str, own_id: int | None) -> list[str]:
        clash = self.conn.execute(select(T.id, T.type).where(T.name_key == name.lower())).first()
        if clash is None or clash.id == own_id:
            return []
        return [
            f"name '{name}' is already used by another VirtualMTA"
            f" ({clash.type} {clash.id}); names are unique ignoring case"
        ]

    def _resolve_field(self, path: str, ref: Ref, problems: list[str]) -> Ref:
        """The record ``ref`` names, or ``ref`` itself with a sentence added to
        ``problems``. The IP address field ``throttling_template`` names a template;
        every other reference names a VirtualMTA."""
        if path == TEMPLATE_FIELD:
            found, what = self.resolve_template(ref), "throttling template"
        elif program_path(path):
            found, what = ThrottleProgramRepository(self.conn).resolve(ref), "throttle program"
        else:
            found, what = self.resolve(ref), "VirtualMTA"
        if found is None:
            problems.append(f"{path} does not refer to an existing {what} ({_show(ref)})")
            return ref
        return found

    def _edges_of(self, node: int) -> list[int]:
        edges: list[int] = []
        redirect = self.conn.execute(select(T.redirect_id).where(T.id == node)).scalar()
        if redirect is not None:
            edges.append(int(redirect))
        edges.extend(
            int(r.target_id)
            for r in self.conn.execute(
                select(routing_rule_targets.c.target_id).where(
                    routing_rule_targets.c.rule_id == node
                )
            )
        )
        return edges

    def _cycle_problems(self, vmta: VirtualMta, own_id: int) -> list[str]:
        targets = _outgoing(vmta)
        if not targets:
            return []
        cycle = path_back(self._edges_of, own_id, targets)
        if cycle is None:
            return []
        names = {
            r.id: r.name
            for r in self.conn.execute(select(T.id, T.name).where(T.id.in_(set(cycle))))
        }
        names[own_id] = vmta.name
        shown = " -> ".join(str(names.get(i, i)) for i in cycle)
        # Name the field that starts the loop: redirect, or the first routing rule entry
        # such as default.deliver_through[0].virtual_mta.
        field = next(
            path
            for path, ref in references_of(vmta).items()
            if names_virtual_mta(path) and ref.id == cycle[1]
        )
        return [f"{field} would make mail loop ({shown})"]

    # ---- writing -----------------------------------------------------------------------

    def insert(self, vmta: VirtualMta) -> int:
        """Insert a prepared VirtualMTA; returns its id from the shared sequence."""
        values = self._values(vmta)
        with refused_on_conflict(self.conn, lambda: self._write_problems(vmta, None)):
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
        with refused_on_conflict(self.conn, lambda: self._write_problems(vmta, vmta_id)):
            self.conn.execute(update(virtual_mtas).where(T.id == vmta_id).values(**values))
            self._write_targets(vmta_id, vmta)
            self._write_program_users(vmta_id, vmta)

    def _write_problems(self, vmta: VirtualMta, own_id: int | None) -> list[str]:
        """Why the database refused to write ``vmta``: its name is taken, or a reference
        names a record that is gone."""
        problems = self._name_problems(vmta.name, own_id)
        with_references(vmta, lambda path, ref: self._resolve_field(path, ref, problems))
        return problems

    def delete(self, vmta_id: int, expected: VirtualMtaType) -> None:
        """Delete, unless something sends through it (contract §2.4)."""
        if self.get(vmta_id, expected) is None:
            raise NotFound(f"No {expected.value} with id {vmta_id}.")
        users = self.used_by(vmta_id)
        if users:
            raise ValidationFailed([_in_use_message(user) for user in users])

        def in_use() -> list[str]:
            return [_in_use_message(user) for user in self.used_by(vmta_id)]

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
                    f"virtual_mta does not refer to an existing VirtualMTA ({_show(ref)})"
                )
        target = None if resolved is None else resolved.id
        exists = self.conn.execute(
            select(control_settings.c.id).where(control_settings.c.id == 1)
        ).first()
        if exists is None:
            self.conn.execute(insert(control_settings).values(id=1, default_virtual_mta_id=target))
        else:
            self.conn.execute(
                update(control_settings)
                .where(control_settings.c.id == 1)
                .values(default_virtual_mta_id=target)
            )
        return resolved

    def _write_targets(self, vmta_id: int, vmta: VirtualMta) -> None:
        if not isinstance(vmta, RoutingRule):
            return
        self.conn.execute(
            delete(routing_rule_targets).where(routing_rule_targets.c.rule_id == vmta_id)
        )
        targets = sorted(set(_outgoing(vmta)))
        if targets:
            self.conn.execute(
                insert(routing_rule_targets),
                [{"rule_id": vmta_id, "target_id": t} for t in targets],
            )

    def _write_program_users(self, vmta_id: int, vmta: VirtualMta) -> None:
        rules = vmta.rules if isinstance(vmta, IpAddress) else []
        ThrottleProgramRepository(self.conn).set_users(IP_ADDRESS_USER, vmta_id, program_ids(rules))

    def _values(self, vmta: VirtualMta) -> dict[str, Any]:
        values: dict[str, Any] = {
            "type": type_of(vmta).value,
            "name": vmta.name,
            "name_key": vmta.name.lower(),
            "redirect_id": None,
            "ip": None,
            "hostname": None,
            "destination_hostname": None,
            "destination_port": None,
            "username": None,
            "password": None,
            "max_concurrent_connections": None,
            "max_messages_per_hour": None,
            "delivery_paused": False,
            "throttling_template_id": None,
            "routing": None,
            "throttle_rules": None,
        }
        if isinstance(vmta, RelayServer):
            values.update(
                redirect_id=_id_of(vmta.redirect),
                ip=vmta.source_ip,
                hostname=vmta.source_hostname,
                destination_hostname=vmta.destination_hostname,
                destination_port=vmta.destination_port,
                username=vmta.username,
                password=vmta.password,
                max_concurrent_connections=vmta.throttle_limits.max_concurrent_connections,
                max_messages_per_hour=vmta.throttle_limits.max_messages_per_hour,
            )
        elif isinstance(vmta, IpAddress):
            values.update(
                redirect_id=_id_of(vmta.redirect),
                ip=vmta.ip,
                hostname=vmta.hostname,
                delivery_paused=vmta.delivery_paused,
                throttling_template_id=_id_of(vmta.throttling_template),
                throttle_rules=rules_json(vmta.rules, lambda: allocate_item_id(self.conn)),
            )
            if vmta.default is not None:
                values.update(
                    max_concurrent_connections=vmta.default.max_concurrent_connections,
                    max_messages_per_hour=vmta.default.max_messages_per_hour,
                )
        else:
            overrides = []
            for override in vmta.domain_overrides:
                override_id = override.id or allocate_item_id(self.conn)
                overrides.append(
                    {"id": override_id, "domains": list(override.domains)}
                    | _distribution_json(override.distribution)
                )
            values["routing"] = {
                "default": _distribution_json(vmta.default),
                "domain_overrides": overrides,
            }
        return values

    # ---- rows to records ---------------------------------------------------------------

    def _names(self, ids: Iterable[int]) -> dict[int, Ref]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = self.conn.execute(select(T.id, T.type, T.name).where(T.id.in_(wanted)))
        return {r.id: Ref(id=r.id, name=r.name, type=VirtualMtaType(r.type)) for r in rows}

    def _from_row(self, row: Any) -> VirtualMta:
        kind = VirtualMtaType(row["type"])
        redirect = None
        if row["redirect_id"] is not None:
            redirect = self._names([row["redirect_id"]]).get(row["redirect_id"])
        if kind is VirtualMtaType.RELAY_SERVER:
            return RelayServer(
                id=row["id"],
                name=row["name"],
                source_ip=row["ip"],
                source_hostname=row["hostname"],
                destination_hostname=row["destination_hostname"],
                destination_port=row["destination_port"],
                username=row["username"],
                password=row["password"],
                throttle_limits=Limits(
                    row["max_concurrent_connections"], row["max_messages_per_hour"]
                ),
                redirect=redirect,
            )
        if kind is VirtualMtaType.IP_ADDRESS:
            template = None
            if row["throttling_template_id"] is not None:
                template = self.resolve_template(Ref(id=row["throttling_template_id"]))
            default = None
            if row["max_concurrent_connections"] is not None:
                default = Limits(row["max_concurrent_connections"], row["max_messages_per_hour"])
            return IpAddress(
                id=row["id"],
                name=row["name"],
                ip=row["ip"],
                hostname=row["hostname"],
                delivery_paused=bool(row["delivery_paused"]),
                redirect=redirect,
                throttling_template=template,
                default=default,
                rules=rules_from_json(self.conn, row["throttle_rules"]),
            )
        routing = row["routing"]
        entries = [routing["default"], *routing["domain_overrides"]]
        names = self._names(
            e["virtual_mta_id"] for dist in entries for e in dist["deliver_through"]
        )
        return RoutingRule(
            id=row["id"],
            name=row["name"],
            default=_distribution_from_json(routing["default"], names),
            domain_overrides=[
                DomainOverride(
                    id=o["id"],
                    domains=list(o["domains"]),
                    distribution=_distribution_from_json(o, names),
                )
                for o in routing["domain_overrides"]
            ],
        )


def _outgoing(vmta: VirtualMta) -> list[int]:
    if isinstance(vmta, RoutingRule):
        return [r.id for r in vmta.targets() if r.id is not None]
    return [] if vmta.redirect is None or vmta.redirect.id is None else [vmta.redirect.id]


def _id_of(ref: Ref | None) -> int | None:
    return None if ref is None else ref.id


def _show(ref: Ref) -> str:
    return f"id {ref.id}" if ref.id is not None else f"name '{ref.name}'"


def _in_use_message(user: UsedBy) -> str:
    if user.type == DEFAULT_VIRTUAL_MTA:
        return "it is the default VirtualMTA; set another default first"
    return f"it is used by {user.type} '{user.name}' (id {user.id})"


def _distribution_json(dist: Distribution) -> dict[str, Any]:
    return {
        "randomization_type": dist.randomization_type.value,
        "deliver_through": [
            {"virtual_mta_id": e.virtual_mta.id, "portion_of_mail": e.portion_of_mail}
            for e in dist.deliver_through
        ],
    }


def _distribution_from_json(data: dict[str, Any], names: dict[int, Ref]) -> Distribution:
    return Distribution(
        randomization_type=RandomizationType(data["randomization_type"]),
        deliver_through=[
            DeliverThrough(
                virtual_mta=names.get(e["virtual_mta_id"], Ref(id=e["virtual_mta_id"])),
                portion_of_mail=float(e["portion_of_mail"]),
            )
            for e in data["deliver_through"]
        ],
    )
