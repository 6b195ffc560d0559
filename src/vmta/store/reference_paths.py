"""Where the references of a VirtualMTA sit, named by field path as request documents
name them (``redirect``, ``throttling_template``,
``domain_overrides[0].deliver_through[1].virtual_mta``; see api/greenarrow/fields.py), so
that the store's messages about a reference point at the field that holds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from vmta.domain.config.virtual_mta import Distribution, IpAddress, Ref, RelayServer, VirtualMta

# The one reference field that names a throttling template rather than a VirtualMTA.
TEMPLATE_FIELD = "throttling_template"
# The reference of a throttling rule to a throttle program: rules[0].throttle_program.
PROGRAM_FIELD = "throttle_program"


def names_virtual_mta(path: str) -> bool:
    """Whether the reference at ``path`` names a VirtualMTA (and so may close a loop)."""
    return path != TEMPLATE_FIELD and not path.endswith("." + PROGRAM_FIELD)


def with_references(vmta: VirtualMta, change: Callable[[str, Ref], Ref]) -> VirtualMta:
    """``vmta`` with each reference replaced by ``change(field path, reference)``, called
    in the order a document gives them. The one place that knows where references sit
    and writes their paths as request documents do (fields.Fields.ref)."""
    if isinstance(vmta, RelayServer):
        return replace(vmta, redirect=_changed(change, "redirect", vmta.redirect))
    if isinstance(vmta, IpAddress):
        return replace(
            vmta,
            redirect=_changed(change, "redirect", vmta.redirect),
            throttling_template=_changed(change, TEMPLATE_FIELD, vmta.throttling_template),
            rules=[
                replace(
                    rule,
                    throttle_program=_changed(
                        change, f"rules[{i}].{PROGRAM_FIELD}", rule.throttle_program
                    ),
                )
                for i, rule in enumerate(vmta.rules)
            ],
        )
    return replace(
        vmta,
        default=_with_targets(vmta.default, "default", change),
        domain_overrides=[
            replace(
                override,
                distribution=_with_targets(override.distribution, f"domain_overrides[{i}]", change),
            )
            for i, override in enumerate(vmta.domain_overrides)
        ],
    )


def _changed(change: Callable[[str, Ref], Ref], path: str, ref: Ref | None) -> Ref | None:
    return None if ref is None else change(path, ref)


def _with_targets(dist: Distribution, path: str, change: Callable[[str, Ref], Ref]) -> Distribution:
    return replace(
        dist,
        deliver_through=[
            replace(
                entry,
                virtual_mta=change(f"{path}.deliver_through[{i}].virtual_mta", entry.virtual_mta),
            )
            for i, entry in enumerate(dist.deliver_through)
        ],
    )


def references_of(vmta: VirtualMta) -> dict[str, Ref]:
    """Every reference of ``vmta`` by field path."""
    found: dict[str, Ref] = {}

    def note(path: str, ref: Ref) -> Ref:
        found[path] = ref
        return ref

    with_references(vmta, note)
    return found
