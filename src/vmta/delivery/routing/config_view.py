"""The delivery engine's view of the control plane's configuration.

Reads go to the store (in a worker thread, never on the event loop) and are cached for a
second, so that a busy queue does not cost one query per message. A change made through
the API of this process drops the cache at once (api/app.py), and applies to the next
message routed here; the engines of other processes (workers, other nodes) see it within
their second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vmta.delivery.routing.suppression_keys import SuppressionKeys
from vmta.domain.clock import Clock
from vmta.domain.config.external_mta import ExternalMta
from vmta.domain.config.virtual_mta import IpAddress, Ref, ThrottlingTemplate, VirtualMta
from vmta.domain.limits.throttle_program import ThrottleProgram
from vmta.domain.paths.delivery_controls import ForcedError, Pause
from vmta.domain.paths.mta_selector import selector_target
from vmta.domain.paths.suppression import Suppression, SuppressionIndex, lookup_keys
from vmta.store.delivery_controls import ForcedErrorRepository, PauseRepository
from vmta.store.external_mtas import ExternalMtaRepository
from vmta.store.ip_pools import IpPoolRepository
from vmta.store.store import Store
from vmta.store.suppressions import SuppressionRepository
from vmta.store.throttle_programs import ThrottleProgramRepository
from vmta.store.throttling_templates import ThrottlingTemplateRepository
from vmta.store.virtual_mtas import VirtualMtaRepository

T = TypeVar("T")
_MISSING = object()
# Suppression lists up to this long are read whole with the other controls each second
# and looked up in memory. A longer one (MailerQ lists reach millions of entries) is never
# read whole again: its keys are kept as a filter refreshed with what was added
# (delivery/routing/suppression_keys.py), and a recipient the filter may hold is looked up by its
# indexed key (cached like everything here). Neither the memory of entries nor the cost
# per recipient grows with the list.
SUPPRESSIONS_IN_MEMORY = 1000


@dataclass(frozen=True)
class DeliveryControls:
    """MailerQ's delivery controls as one snapshot: read together, so that one attempt
    sees one consistent state (contract §3.3-3.5)."""

    pauses: tuple[Pause, ...] = ()
    errors: tuple[ForcedError, ...] = ()
    suppressions: SuppressionIndex = field(default_factory=SuppressionIndex)
    # False: the list is longer than SUPPRESSIONS_IN_MEMORY and ``suppressions`` holds
    # none of it; ``ConfigView.suppression`` asks the store.
    all_suppressions: bool = True
    pool_of_ip: Mapping[str, str] = field(default_factory=dict)  # address -> pool name

    def members(self, pool: str) -> list[str]:
        """The pool's addresses, in the order they were added."""
        return [ip for ip, name in self.pool_of_ip.items() if name == pool]


class ConfigView:
    def __init__(self, store: Store, clock: Clock, ttl: float = 1.0) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[tuple[str, object], tuple[float, Any]] = {}
        # Loads under way: when an entry expires, the messages that ask for it meanwhile
        # wait for the one load instead of each starting its own (at hundreds of messages
        # a second, an expiry would otherwise start dozens of identical queries).
        self._loading: dict[tuple[str, object], asyncio.Future[Any]] = {}
        self._suppression_keys = SuppressionKeys()  # of a long list (SUPPRESSIONS_IN_MEMORY)

    async def _cached(self, key: tuple[str, object], load: Callable[[], T]) -> T:
        now = self._clock.now()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            value: T = hit[1]
            return value
        pending = self._loading.get(key)
        if pending is not None:
            try:
                shared: T = await asyncio.shield(pending)
                return shared
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this caller was cancelled
                # The caller that was loading was cancelled: load here instead.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await asyncio.to_thread(load)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            if self._loading.get(key) is future:
                del self._loading[key]
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = (now + self._ttl, value)
        future.set_result(value)
        return value

    def invalidate(self) -> None:
        self._cache.clear()

    async def virtual_mta(self, vmta_id: int) -> VirtualMta | None:
        def load() -> VirtualMta | None:
            with self._store.read() as conn:
                return VirtualMtaRepository(conn).get(vmta_id)

        return await self._cached(("id", vmta_id), load)

    async def by_selector(self, selector: str) -> VirtualMta | None:
        """The VirtualMTA a header names: its name (ignoring case) or its id; None when
        the value names nothing (``selector_target``: the caller then takes the default)."""
        target = selector_target(selector)
        if target.names_nothing:
            return None

        def load() -> VirtualMta | None:
            with self._store.read() as conn:
                repo = VirtualMtaRepository(conn)
                if target.id is not None:
                    return repo.get(target.id)
                assert target.name is not None
                return repo.get_by_name(target.name)

        return await self._cached(("selector", selector.lower()), load)

    async def default(self) -> VirtualMta | None:
        def load() -> VirtualMta | None:
            with self._store.read() as conn:
                repo = VirtualMtaRepository(conn)
                ref: Ref | None = repo.default()
                return None if ref is None or ref.id is None else repo.get(ref.id)

        return await self._cached(("default", None), load)

    async def external_mtas(self) -> list[ExternalMta]:
        """Every external MTA (contract §3.2); a change applies within the cache's second."""

        def load() -> list[ExternalMta]:
            with self._store.read() as conn:
                return ExternalMtaRepository(conn).all()

        return await self._cached(("external_mtas", None), load)

    async def lookup(self, ref: Ref) -> VirtualMta | None:
        """The VirtualMTA a reference names (id wins over name)."""
        if ref.id is not None:
            return await self.virtual_mta(ref.id)
        if ref.name is not None:
            return await self.by_selector(ref.name)
        return None

    async def throttle_program(self, program_id: int) -> ThrottleProgram | None:
        """A throttle program (Dynamic Delivery); a change applies within the cache's second."""

        def load() -> ThrottleProgram | None:
            with self._store.read() as conn:
                return ThrottleProgramRepository(conn).get(program_id)

        return await self._cached(("throttle_program", program_id), load)

    async def template(self, template_id: int) -> ThrottlingTemplate | None:
        def load() -> ThrottlingTemplate | None:
            with self._store.read() as conn:
                return ThrottlingTemplateRepository(conn).get(template_id)

        return await self._cached(("template", template_id), load)

    async def delivery_controls(self) -> DeliveryControls:
        """Pauses, forced errors, suppressions and pool members; a change applies within
        the cache's second, so to the next attempt."""

        now = self._clock.now()

        def load() -> DeliveryControls:
            with self._store.read() as conn:
                suppressions = SuppressionRepository(conn)
                short = suppressions.first(SUPPRESSIONS_IN_MEMORY + 1)
                whole = len(short) <= SUPPRESSIONS_IN_MEMORY
                if not whole:
                    self._suppression_keys.refresh(suppressions.keys_from, now)
                return DeliveryControls(
                    pauses=tuple(PauseRepository(conn).all()),
                    errors=tuple(ForcedErrorRepository(conn).all()),
                    suppressions=SuppressionIndex(short if whole else ()),
                    all_suppressions=whole,
                    pool_of_ip=IpPoolRepository(conn).membership(),
                )

        return await self._cached(("delivery_controls", None), load)

    async def suppression(self, address: str, controls: DeliveryControls) -> Suppression | None:
        """The suppression entry of ``address`` (MailerQ's suppressions), None when it has
        none: in memory for a short list; for a long one, None at once when the key filter
        holds neither of its keys, else one query by the indexed key, cached for the
        second like every read here (a change applies within it)."""
        if controls.all_suppressions:
            return controls.suppressions.find(address)
        keys = lookup_keys(address)
        if not self._suppression_keys.may_hold(keys):
            return None  # certain: no entry has either key

        def load() -> Suppression | None:
            with self._store.read() as conn:
                entries = SuppressionRepository(conn).matching(keys)
            return SuppressionIndex(entries).find(address)

        return await self._cached(("suppression", keys[0]), load)

    async def ip_address_with(self, ip: str) -> IpAddress | None:
        """The IP address VirtualMTA whose ``ip`` is ``ip`` (the lowest id when several),
        for the EHLO name and throttles of mail that chose its sending IP (contract §3.6)."""

        def load() -> IpAddress | None:
            with self._store.read() as conn:
                repo = VirtualMtaRepository(conn)
                for vmta_id in repo.ids_by_source_ip(ip):
                    found = repo.get(vmta_id)
                    if isinstance(found, IpAddress):
                        return found
                return None

        return await self._cached(("ip_address_with", ip), load)
