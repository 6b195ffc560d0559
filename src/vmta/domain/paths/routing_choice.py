"""Which VirtualMTA a routing rule sends a recipient through (contract §2.7).

A rule first picks a *distribution*: the domain override whose pattern matches the
recipient domain most specifically, else its ``default``. The distribution then picks one
of its ``deliver_through`` entries, with ``portion_of_mail`` as relative weights, in one of
three ways:

- ``random``: a fresh weighted draw for every delivery attempt, from the caller's source of
  randomness (a ``random.Random``, or anything with ``random() -> float``).
- ``message_constant``: a draw once per message, remembered in the message's routing
  memory (a JSON-serialisable dict the spool keeps with the message) and reused on every
  retry while the chosen entry still exists in the distribution.
- ``email_address_constant``: no draw at all. Each entry gets a score computed from a
  keyed hash of (lower-cased address, entry) and the highest score wins: weighted
  rendezvous hashing. ``score = -weight / ln(u)`` with ``u`` uniform in (0, 1) makes an
  entry win with probability ``weight / total``, so weights hold across many addresses,
  while one address always gets the same entry as long as the entries are unchanged. When
  an entry is added, removed or reweighted, only addresses that move to or from that entry
  change path. The hash is BLAKE2b, so the choice is the same in every process (Python's
  ``hash()`` is salted per process).

A chosen entry may itself be a routing rule; ``resolve_nested`` follows rules (and
redirects) down to an IP address or relay server.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vmta.domain.config.domain_pattern import DomainPattern, most_specific, parse_domain_pattern
from vmta.domain.config.virtual_mta import (
    DeliverThrough,
    Distribution,
    IpAddress,
    RandomizationType,
    Ref,
    RelayServer,
    RoutingRule,
    VirtualMta,
)
from vmta.domain.errors import TemporaryError

# Rules may nest (contract §2.7 forbids only cycles); a chain longer than this is treated
# as broken configuration rather than followed forever.
MAX_NESTING = 32

DEFAULT_DISTRIBUTION = "default"


class RandomSource(Protocol):
    def random(self) -> float:
        """A float uniformly distributed in [0, 1)."""
        ...


class RoutingUnresolved(TemporaryError):
    """A routing chain cannot be followed to a deliverable VirtualMTA right now (a target
    was deleted, or the chain loops or is too deep). Temporary: it waits for the
    configuration to be fixed."""


@dataclass(frozen=True)
class Selected:
    """The distribution of a rule that applies to a domain, and a stable name for it
    (``default`` or ``override:<id or position>``), used as a routing-memory key."""

    key: str
    distribution: Distribution


# ---- which distribution ----------------------------------------------------------------


def select_distribution(rule: RoutingRule, domain: str) -> Selected:
    """The override whose pattern matches ``domain`` most specifically, else the default.

    Patterns that do not parse (they cannot come through the API) are ignored.
    """
    candidates: list[tuple[DomainPattern, Selected]] = []
    for position, override in enumerate(rule.domain_overrides):
        ident = override.id if override.id is not None else f"#{position}"
        selected = Selected(key=f"override:{ident}", distribution=override.distribution)
        for text in override.domains:
            pattern = parse_domain_pattern(text)
            if isinstance(pattern, DomainPattern):
                candidates.append((pattern, selected))
    found = most_specific(candidates, domain)
    return found if found is not None else Selected(DEFAULT_DISTRIBUTION, rule.default)


# ---- which entry ------------------------------------------------------------------------


def choose(
    rule: RoutingRule,
    recipient: str,
    *,
    rng: RandomSource,
    memory: dict[str, Any],
) -> Ref:
    """The VirtualMTA ``rule`` sends ``recipient`` (``local@domain``) through.

    ``memory`` is the message's routing memory; ``message_constant`` distributions read and
    write it (under ``memory[rule_key(rule)][distribution key]``), the others leave it
    alone. The caller stores it with the message so retries see it.
    """
    domain = recipient_domain(recipient)
    selected = select_distribution(rule, domain)
    entries = selected.distribution.deliver_through
    if not entries:
        # The API requires at least one entry; a rule without one routes nowhere.
        raise RoutingUnresolved(f"Routing rule {rule.name!r} has no deliver_through entries.")
    kind = selected.distribution.randomization_type
    if kind == RandomizationType.EMAIL_ADDRESS_CONSTANT:
        return address_constant_entry(entries, recipient).virtual_mta
    if kind == RandomizationType.MESSAGE_CONSTANT:
        return _remembered_entry(rule, selected, entries, rng, memory).virtual_mta
    return weighted_entry(entries, rng).virtual_mta


def weighted_entry(entries: list[DeliverThrough], rng: RandomSource) -> DeliverThrough:
    """One entry, each with probability ``portion_of_mail / total``."""
    weights = [_weight(entry) for entry in entries]
    point = rng.random() * sum(weights)
    for entry, weight in zip(entries, weights, strict=True):
        if point < weight:
            return entry
        point -= weight
    return entries[-1]  # rounding left ``point`` a hair above the last boundary


def address_constant_entry(entries: list[DeliverThrough], address: str) -> DeliverThrough:
    """The entry with the highest weighted rendezvous score for ``address``."""
    normalized = address.strip().lower()
    best: tuple[float, int] | None = None
    for index, (entry, ident) in enumerate(zip(entries, entry_identities(entries), strict=True)):
        score = -_weight(entry) / math.log(_unit_hash(ident, normalized))
        if best is None or score > best[0]:
            best = (score, index)
    assert best is not None  # entries is never empty here
    return entries[best[1]]


def entry_identities(entries: list[DeliverThrough]) -> list[str]:
    """A stable text per entry: the VirtualMTA's id (or name), plus an occurrence number so
    that an entry listed twice still gets two independent scores."""
    seen: dict[str, int] = {}
    identities: list[str] = []
    for entry in entries:
        base = ref_key(entry.virtual_mta)
        count = seen.get(base, 0)
        seen[base] = count + 1
        identities.append(base if count == 0 else f"{base}#{count}")
    return identities


def ref_key(ref: Ref) -> str:
    """``id:<n>`` when the reference has an id, else ``name:<lower-cased name>``."""
    if ref.id is not None:
        return f"id:{ref.id}"
    return f"name:{(ref.name or '').lower()}"


def rule_key(rule: RoutingRule) -> str:
    """The routing-memory key of a rule: its id as text (JSON keys are strings)."""
    return str(rule.id) if rule.id is not None else f"name:{rule.name.lower()}"


def _remembered_entry(
    rule: RoutingRule,
    selected: Selected,
    entries: list[DeliverThrough],
    rng: RandomSource,
    memory: dict[str, Any],
) -> DeliverThrough:
    # Keyed by distribution as well as rule: one message may have recipients in domains
    # that select different overrides of the same rule, and each keeps its own choice.
    per_rule = memory.get(rule_key(rule))
    if not isinstance(per_rule, dict):
        per_rule = {}
        memory[rule_key(rule)] = per_rule
    remembered = per_rule.get(selected.key)
    if isinstance(remembered, str):
        for entry in entries:
            if ref_key(entry.virtual_mta) == remembered:
                return entry
    entry = weighted_entry(entries, rng)
    per_rule[selected.key] = ref_key(entry.virtual_mta)
    return entry


def _weight(entry: DeliverThrough) -> float:
    weight = float(entry.portion_of_mail)
    # The API only accepts weights > 0; anything else (NaN too) never wins a draw.
    return weight if weight > 0 else 0.0


def _unit_hash(ident: str, address: str) -> float:
    """A number uniformly spread in the open interval (0, 1), fixed by its inputs."""
    # Length-prefixed so that no (entry, address) pair can spell the same input as another.
    text = f"{len(ident)}:{ident}{address}"
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def recipient_domain(recipient: str) -> str:
    """The domain part of ``local@domain``, lower-cased (the text after the last ``@``)."""
    return recipient.rpartition("@")[2].strip().lower().rstrip(".")


# ---- nesting -----------------------------------------------------------------------------


Lookup = Callable[[Ref], Awaitable[VirtualMta | None]]


@dataclass(frozen=True)
class Resolution:
    """Where a recipient's routing ends: an IP address or relay server (possibly a paused
    IP address: the caller defers, since a pause beats a redirect, contract §2.6), and the
    names of the VirtualMTAs passed on the way, first to last."""

    target: IpAddress | RelayServer
    trail: tuple[str, ...]


async def resolve_nested(
    start: VirtualMta,
    recipient: str,
    lookup: Lookup,
    *,
    rng: RandomSource,
    memory: dict[str, Any],
    max_depth: int = MAX_NESTING,
) -> Resolution:
    """Follow redirects and routing-rule choices from ``start`` to an IP address or relay
    server. ``lookup`` loads a VirtualMTA by reference (id wins over name), or None when it
    does not exist. Raises ``RoutingUnresolved`` for a missing target, a loop, or a chain
    longer than ``max_depth`` steps."""
    current: VirtualMta = start
    trail: list[str] = [current.name]
    visited: set[str] = set()
    for _ in range(max_depth + 1):
        if isinstance(current, IpAddress) and current.delivery_paused:
            return Resolution(current, tuple(trail))
        step: Ref | None
        if isinstance(current, RoutingRule):
            step = choose(current, recipient, rng=rng, memory=memory)
        else:
            step = current.redirect
            if step is None or (step.id is None and step.name is None):
                return Resolution(current, tuple(trail))
        # Reaching the same VirtualMTA twice is a cycle (of redirects, or of rules, which
        # the API refuses to create): stop instead of going round.
        identity = _identity(current)
        if identity in visited:
            raise RoutingUnresolved(f"Routing from {start.name!r} loops back to {current.name!r}.")
        visited.add(identity)
        found = await lookup(step)
        if found is None:
            named = repr(step.name) if step.name is not None else f"with id {step.id}"
            raise RoutingUnresolved(
                f"{current.name!r} sends mail through VirtualMTA {named}, which does not exist."
            )
        current = found
        trail.append(current.name)
    raise RoutingUnresolved(
        f"Routing from {start.name!r} passes through more than {max_depth} VirtualMTAs"
        " (a loop of routing rules or redirects)."
    )


def _identity(vmta: VirtualMta) -> str:
    ident = str(vmta.id) if vmta.id is not None else vmta.name.lower()
    return f"{type(vmta).__name__}:{ident}"
