"""Stopping on SIGTERM and SIGINT.

vmta handles these signals itself rather than letting uvicorn do it: uvicorn re-raises
the signal once it has shut down, so the process would die by SIGTERM (status 143)
instead of exiting 0 after stopping every component in order. The first signal asks for
an orderly stop; a second one tells components to stop waiting for work in flight.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown:
    def __init__(self) -> None:
        self._requested = asyncio.Event()
        self._signal: str | None = None
        self._on_force: list[Callable[[], None]] = []

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._received, sig)

    def remove(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)

    def on_force(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when a second signal says: stop now."""
        self._on_force.append(callback)

    def _received(self, sig: signal.Signals) -> None:
        if not self._requested.is_set():
            self._signal = sig.name
            self._requested.set()
            return
        log.warning("%s again: no longer waiting for work in flight", sig.name)
        for callback in self._on_force:
            callback()

    async def _wait_requested(self) -> None:
        await self._requested.wait()

    async def wait(self, *components: asyncio.Future[None]) -> str:
        """Wait for a stop signal, or for any of ``components`` to end by itself; say which."""
        requested: asyncio.Future[None] = asyncio.ensure_future(self._wait_requested())
        try:
            await asyncio.wait([requested, *components], return_when=asyncio.FIRST_COMPLETED)
        finally:
            requested.cancel()
        if self._signal is not None:
            return f"received {self._signal}"
        return "a component ended by itself"
