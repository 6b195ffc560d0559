"""`vmta serve`: build every component from the settings, start them, stop them in order."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

import uvicorn

from vmta.api.app import create_app
from vmta.runtime.bootstrap import ensure_admin_credential, ensure_data_dir
from vmta.runtime.settings import Listen, Settings, SettingsError
from vmta.store.database import safe_url
from vmta.store.store import Store

log = logging.getLogger(__name__)


def bind_listener(listen: Listen, what: str) -> socket.socket:
    """Bind now, so a taken port fails at start-up with a clear message."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen.host, listen.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SettingsError(f"{what} address {listen} is already in use") from None
        raise SettingsError(f"cannot listen on {listen} for {what}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(settings: Settings) -> None:
    ensure_data_dir(settings)
    api_socket = bind_listener(settings.api_listen, "API")
    url = settings.effective_database_url
    store = Store.open(url)
    log.info("store ready: %s", safe_url(url))
    try:
        ensure_admin_credential(store, settings)
        app = create_app(store)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        log.info("API listening on http://%s", settings.api_listen)
        # uvicorn handles SIGINT and SIGTERM: it stops accepting, finishes requests in
        # flight, then returns here.
        await server.serve(sockets=[api_socket])
    finally:
        store.close()
        api_socket.close()
        log.info("stopped")


def run(settings: Settings) -> None:
    asyncio.run(serve(settings))
