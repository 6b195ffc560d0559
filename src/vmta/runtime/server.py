"""`vmta serve`: build every component from the settings, start them in order, and stop
them in reverse order on SIGTERM or SIGINT.

Components enter one AsyncExitStack, so one added later (an SMTP listener, delivery)
starts after what it needs and stops before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import replace
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.runtime import data_dir_lock, engine_state_board, gc_pauses, startup_report
from vmta.runtime.bootstrap import ensure_admin_credential, ensure_data_dir
from vmta.runtime.data_plane import data_plane_for
from vmta.runtime.log_files import LogFiles
from vmta.runtime.metrics import DeliveryMetrics
from vmta.runtime.settings import Listen, Settings, SettingsError
from vmta.runtime.shutdown import Shutdown
from vmta.runtime.worker_pool import WorkerPool
from vmta.smtp.listener import ACCEPT_QUEUE
from vmta.store.database import safe_url
from vmta.store.store import Store

log = logging.getLogger(__name__)

# Seconds a stopping API waits for requests in flight before it closes their connections.
API_GRACE_SECONDS = 10


def bind_listener(listen: Listen, what: str) -> socket.socket:
    """Bind now, so a taken port fails at start-up with a clear message."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    # proto must say IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets whose proto
    # says so, and accepted sockets inherit it. Without TCP_NODELAY, a response written
    # in two parts (headers, body) waits for the client's delayed ACK: +40 ms on every
    # request after the first on a keep-alive connection (see docs/PERFORMANCE.md).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # Lets a restart bind while old connections sit in TIME_WAIT; on Linux it does not let
    # two listeners share a port, so a running vmta still makes this fail.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen.host, listen.port))
        sock.listen(ACCEPT_QUEUE)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SettingsError(f"{what} address {listen} is already in use") from None
        reason = exc.strerror or str(exc)
        raise SettingsError(f"cannot listen on {listen} for {what}: {reason}") from None
    sock.setblocking(False)
    return sock


def bound_address(sock: socket.socket) -> Listen:
    """Where ``sock`` listens: with port 0 asked for, the port the system chose."""
    host, port = sock.getsockname()[:2]
    return Listen(host, port)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: see ``runtime/shutdown.py``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """The HTTP API served by uvicorn on an already bound socket, as a task of this loop."""

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=API_GRACE_SECONDS,
        )
        self._server = _Uvicorn(config)
        self._sock = sock
        self._task: asyncio.Task[None] | None = None

    @property
    def task(self) -> asyncio.Task[None]:
        assert self._task is not None, "ApiServer not started"
        return self._task

    def force_exit(self) -> None:
        self._server.force_exit = True

    async def __aenter__(self) -> ApiServer:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="api")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # uvicorn stops accepting, finishes requests in flight (at most API_GRACE_SECONDS),
        # closes idle keep-alive connections and returns.
        self._server.should_exit = True
        await self.task


async def serve(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    shutdown = Shutdown()
    shutdown.install(loop)
    try:
        async with contextlib.AsyncExitStack() as stack:
            # Bind before anything else: a taken port fails before anything is created.
            api_socket = bind_listener(settings.api_listen, "API")
            stack.callback(api_socket.close)
            smtp_socket = bind_listener(settings.smtp_listen, "SMTP")
            stack.callback(smtp_socket.close)
            inbound_socket = None
            if settings.inbound_listen is not None:  # bounces and complaints come back
                inbound_socket = bind_listener(settings.inbound_listen, "inbound SMTP")
                stack.callback(inbound_socket.close)
            # As bound (port 0 resolved): worker processes, too, must know where the API
            # listens, so that none of them delivers to it (domain/paths/mail_loops.py).
            api_address = bound_address(api_socket)
            settings = replace(settings, api_listen=api_address)
            if inbound_socket is not None:  # nor to the inbound listener
                settings = replace(settings, inbound_listen=bound_address(inbound_socket))
            ensure_data_dir(settings)
            stack.callback(data_dir_lock.hold(settings))  # one serve per SQLite data dir
            url = settings.effective_database_url
            store = Store.open(url)
            stack.callback(store.close)
            log.info("store ready: %s", safe_url(url))
            # What runs, once it can run: a start that fails earlier says only why.
            startup_report.report(settings, os.environ)
            ensure_admin_credential(store, settings)
            metrics = DeliveryMetrics()
            data_plane = data_plane_for(store, settings, metrics=metrics)
            await data_plane.start(smtp_socket, inbound_socket)
            # Registered after the store's close, so it runs before it (LIFO).
            stack.push_async_callback(data_plane.stop)
            log_files = LogFiles([data_plane.delivery_log])
            log_files.install(loop)
            stack.callback(log_files.remove, loop)
            log.info("SMTP listening on %s", bound_address(smtp_socket))
            if inbound_socket is not None:
                log.info("inbound SMTP listening on %s", bound_address(inbound_socket))
            if settings.workers > 1:
                # After the data plane: the schema is migrated and this data directory's
                # node registered before any worker starts (runtime/worker_pool.py).
                engine_state_board.reset(settings.data_dir)
                pool = WorkerPool(settings, smtp_socket, settings.workers - 1)
                await pool.start()
                stack.push_async_callback(pool.stop)  # before the data plane stops
                log_files.also(functools.partial(pool.send_signal, signal.SIGHUP))
                shutdown.on_force(pool.force)
            # Delivery never connects to the API either (a mail loop would be a relay
            # server pointed at it by mistake; domain/paths/mail_loops.py).
            data_plane.own_listeners.add(api_address.host, api_address.port)
            hooks = data_plane.api_hooks()
            if settings.workers > 1:
                # /api/queue adds up every process (runtime/engine_state_board.py).
                hooks = replace(
                    hooks,
                    engine_state=lambda: engine_state_board.combined(
                        data_plane.state(), engine_state_board.read_workers(settings.data_dir)
                    ),
                )
            app = create_app(
                ApiPorts(
                    store,
                    data_plane=hooks,
                    throttle_states=data_plane.backoffs,
                    now=data_plane.clock.now,
                    metrics=metrics.exposed(),
                )
            )
            api = await stack.enter_async_context(ApiServer(app, api_socket))
            shutdown.on_force(api.force_exit)
            shutdown.on_force(data_plane.force_stop)
            # Set up: later full collections need not walk all that (runtime/gc_pauses.py).
            gc_pauses.freeze_startup_objects()
            log.info("API listening on http://%s", bound_address(api_socket))
            log.info("stopping: %s", await shutdown.wait(api.task))
            # New SMTP connections are refused at once; sessions in DATA get the grace
            # period when the data plane stops, after the API (runtime/shutdown.py).
            data_plane.stop_accepting()
    finally:
        shutdown.remove(loop)
    log.info("stopped")


def run(settings: Settings) -> None:
    asyncio.run(serve(settings))
