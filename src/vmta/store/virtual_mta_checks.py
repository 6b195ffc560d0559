"""The rules of a VirtualMTA write that need the store: its name is free (ignoring case,
across the three types), every reference names an existing record, and no redirect or
routing rule entry makes mail loop. Each check lists every problem at once, in the
sentences the API answers with.

The checks take no lock: ``VirtualMtaRepository`` holds the control plane's write lock
on a write connection before it runs them (see control_writes)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from vmta.domain.config.names import name_key
from vmta.domain.config.reference_graph import path_back
from vmta.domain.config.virtual_mta import Ref, VirtualMta, VirtualMtaType
from vmta.domain.errors import PartialRecord, ValidationFailed
from vmta.store.named_rows import referenced_row
from vmta.store.reference_paths import (
    TEMPLATE_FIELD,
    names_virtual_mta,
    references_of,
    with_references,
)
from vmta.store.tables import routing_rule_targets, virtual_mtas
from vmta.store.throttle_programs import ThrottleProgramRepository
from vmta.store.throttle_rule_rows import program_path
from vmta.store.throttling_templates import template_ref
from vmta.store.virtual_mta_rows import target_ids

T = virtual_mtas.c


def shown(ref: Ref) -> str:
    """How a message names what a reference gave: its id, else its name."""
    return f"id {ref.id}" if ref.id is not None else f"name '{ref.name}'"


class VirtualMtaChecks:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def resolve(self, ref: Ref) -> Ref | None:
        """The VirtualMTA a reference names (id wins over name), fully resolved, or None."""
        row = referenced_row(self.conn, select(T.id, T.type, T.name), virtual_mtas, ref)
        return None if row is None else Ref(id=row.id, name=row.name, type=VirtualMtaType(row.type))

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

    def write_problems(self, vmta: VirtualMta, own_id: int | None) -> list[str]:
        """Why the database refused to write ``vmta``: its name is taken, or a reference
        names a record that is gone."""
        problems = self._name_problems(vmta.name, own_id)
        with_references(vmta, lambda path, ref: self._resolve_field(path, ref, problems))
        return problems

    def _name_problems(self, name: str, own_id: int | None) -> list[str]:
        clash = self.conn.execute(select(T.id, T.type).where(T.name_key == name_key(name))).first()
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
            found, what = template_ref(self.conn, ref), "throttling template"
        elif program_path(path):
            found, what = ThrottleProgramRepository(self.conn).resolve(ref), "throttle program"
        else:
            found, what = self.resolve(ref), "VirtualMTA"
        if found is None:
            problems.append(f"{path} does not refer to an existing {what} ({shown(ref)})")
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
        targets = target_ids(vmta)
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
        loop = " -> ".join(str(names.get(i, i)) for i in cycle)
        # Name the field that starts the loop: redirect, or the first routing rule entry
        # such as default.deliver_through[0].virtual_mta.
        field = next(
            path
            for path, ref in references_of(vmta).items()
            if names_virtual_mta(path) and ref.id == cycle[1]
        )
        return [f"{field} would make mail loop ({loop})"]
