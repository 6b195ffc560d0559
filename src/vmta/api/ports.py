"""What the HTTP application is given: the store, the clock its answers are given at, the
throttle backoff registry, and, when a data plane runs in the same process, the hooks into
it (``DataPlaneHooks``). ``create_app`` takes one ``ApiPorts``; route handlers read it
through ``vmta.api.dependencies.ports_of``.

Typed fields rather than attributes looked up on ``app.state``: a misspelt hook is a
type error, not a silent "no data plane" 503. An API-only process (the tests' apps, a
control-plane node) says so explicitly with ``data_plane=None``; each endpoint that needs
a data plane then gives its documented answer:

- ``POST /api/v1/send.json``: 503 ``{"success": 0, "error": "this vmta process does not
  accept mail"}``;
- ``POST /v1/inject``: 400 "Injection is not available: no delivery is running.";
- ``GET /api/queue``: ``"engine": {"running": false}``; ``GET /api/events``: only the
  destinations that still hold events; ``GET /api/health``: no dependencies;
- retry and release actions change the spool; the engine finds the work at its next look.

This module imports no web framework: the data plane builds its hooks here
(``DataPlane.api_hooks``) in worker processes that serve no API.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from vmta.delivery.throttles.throttle_backoffs import ThrottleBackoffs
from vmta.domain.limits.throttle_identity import ThrottleKey, ThrottleOrigin, ThrottleState
from vmta.store.store import Store

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from vmta.domain.message.arrival import Arrival
    from vmta.domain.message.mq_message import MqMessage

# The HTTP Submission API's way in: returns the queue id once the message is committed.
Submit = Callable[["Arrival"], Awaitable[str]]
# This node's event destinations as /api/events describes them, and the events found in
# flight from its previous run.
EventDestinations = Callable[[], tuple[list[dict[str, Any]], int]]


class MqIntake(Protocol):
    """What the data plane offers for injection (``vmta.delivery.ingress.intake.Intake``)."""

    async def accept_mq(
        self, message: MqMessage, *, via: str, client_ip: str | None, auth_name: str | None
    ) -> str: ...


class ThrottleStates(Protocol):
    """What the API needs of the data plane's backoff registry
    (``vmta.delivery.throttles.throttle_backoffs.ThrottleBackoffs``)."""

    def in_backoff(self, now: float) -> list[ThrottleState]: ...

    def of_ip_address(self, ip_address_id: int, now: float) -> list[ThrottleState]: ...

    def state(
        self, key: ThrottleKey, now: float, origin: ThrottleOrigin | None = None
    ) -> ThrottleState: ...

    async def end_everywhere(self, key: ThrottleKey) -> bool: ...

    async def refresh(self) -> None: ...


@dataclass(frozen=True)
class DataPlaneHooks:
    """What the API uses of a data plane running in the same process."""

    submit: Submit  # POST /api/v1/send.json
    intake: MqIntake  # POST /v1/inject
    wake_engine: Callable[[], None]  # after a retry, a release, a pause removed
    # After the API changed something: the engine's cached view of the configuration
    # is dropped, so the next message routes by the change (other processes and nodes
    # see it within their cache's second).
    config_changed: Callable[[], None]
    engine_state: Callable[[], dict[str, Any]]  # "engine" of GET /api/queue
    event_destinations: EventDestinations  # GET /api/events and the console
    dependencies: Callable[[], dict[str, Any]]  # RabbitMQ and Redis links, /api/health
    hostname: str  # Message-ID and Received of HTTP submissions


@dataclass(frozen=True)
class ApiPorts:
    """Everything ``create_app`` is given. ``data_plane`` has no default: None says that
    this process runs no data plane (see the module's text for the answers then)."""

    store: Store
    data_plane: DataPlaneHooks | None
    # The data plane's backoff registry (the Throttles API reads and ends backoff there);
    # without a data plane, an empty one.
    throttle_states: ThrottleStates = field(default_factory=ThrottleBackoffs)
    now: Callable[[], float] = time.time  # the clock those answers are given at
    # The registry of a data plane in this process, served at /metrics with the store's
    # readings added; None: the store's readings only.
    metrics: CollectorRegistry | None = None

    def engine_state(self) -> dict[str, Any]:
        hooks = self.data_plane
        return hooks.engine_state() if hooks is not None else {"running": False}

    def event_destinations(self) -> tuple[list[dict[str, Any]], int]:
        hooks = self.data_plane
        return hooks.event_destinations() if hooks is not None else ([], 0)

    def dependencies(self) -> dict[str, Any]:
        hooks = self.data_plane
        return hooks.dependencies() if hooks is not None else {}

    def config_changed(self) -> None:
        if self.data_plane is not None:
            self.data_plane.config_changed()

    def wake_engine(self) -> None:
        """New work is due now; without a data plane here, the engine of the process
        that has one finds it at its next look at the spool."""
        if self.data_plane is not None:
            self.data_plane.wake_engine()
