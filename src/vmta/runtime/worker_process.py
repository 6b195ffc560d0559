"""A worker process of ``VMTA_WORKERS`` (runtime/worker_pool.py says why and how).

    python -m vmta.runtime.worker_process INDEX SMTP_FD PARENT_PID   (settings on stdin)

It runs a data plane on the inherited SMTP socket and stops on SIGTERM or SIGINT as
`vmta serve` does, or when its parent is gone: a worker never outlives the process that
serves the API and would start its replacement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys

from vmta.runtime import engine_state_board, gc_pauses, logs, malloc_tuning
from vmta.runtime.data_plane import data_plane_for
from vmta.runtime.log_files import LogFiles
from vmta.runtime.settings import Settings
from vmta.runtime.shutdown import Shutdown
from vmta.store.store import Store

log = logging.getLogger("vmta.runtime.worker_process")  # not __main__ under -m

PARENT_CHECK_SECONDS = 0.5


async def _parent_gone(parent: int) -> None:
    """Returns once ``parent`` is no longer this process's parent: at once when it died
    before this process got here (its pid comes from the parent, not from getppid)."""
    # Polled: an orphan is told nothing (its parent pid just changes), and prctl's
    # PR_SET_PDEATHSIG would have to be set between fork and exec.
    while os.getppid() == parent:  # noqa: ASYNC110
        await asyncio.sleep(PARENT_CHECK_SECONDS)
    log.warning("the vmta serve process (pid %d) is gone", parent)


async def serve_worker(
    settings: Settings, smtp_socket: socket.socket, index: int, parent_pid: int
) -> None:
    loop = asyncio.get_running_loop()
    shutdown = Shutdown()
    shutdown.install(loop)
    parent = asyncio.ensure_future(_parent_gone(parent_pid))
    # The parent migrated the schema before starting workers.
    store = Store.open(settings.effective_database_url, migrate=False)
    try:
        data_plane = data_plane_for(store, settings, worker=index)
        api = settings.api_listen  # as the parent bound it (runtime/server.py)
        data_plane.own_listeners.add(api.host, api.port)
        if settings.inbound_listen is not None:  # the parent's inbound listener, as bound
            inbound = settings.inbound_listen
            data_plane.own_listeners.add(inbound.host, inbound.port)
        # SIGHUP (passed on by the parent): reopen this worker's log files.
        log_files = LogFiles([data_plane.delivery_log])
        log_files.install(loop)
        # Blocked by the parent until now (runtime/worker_pool.py); one that came while
        # this process started is handled now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        await data_plane.start(smtp_socket)
        shutdown.on_force(data_plane.force_stop)
        gc_pauses.freeze_startup_objects()  # as `vmta serve` does (runtime/gc_pauses.py)
        log.info("worker %d (pid %d) accepting and delivering", index, os.getpid())
        board = asyncio.create_task(
            engine_state_board.publish(settings.data_dir, index, data_plane.state)
        )
        log.info("worker %d stopping: %s", index, await shutdown.wait(parent))
        await engine_state_board.stop(board)
        data_plane.stop_accepting()
        await data_plane.stop()
    finally:
        parent.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await parent
        shutdown.remove(loop)
        store.close()


def main(argv: list[str]) -> int:
    malloc_tuning.tune_malloc()  # as `vmta serve` does (runtime/malloc_tuning.py)
    index, fd, parent_pid = int(argv[0]), int(argv[1]), int(argv[2])
    # S301: the bytes come from the parent `vmta serve` through our own stdin pipe.
    settings: Settings = pickle.loads(sys.stdin.buffer.read())  # noqa: S301
    logs.configure(settings.log_level, tag=f"worker {index}")
    smtp_socket = socket.socket(fileno=fd)
    smtp_socket.setblocking(False)
    try:
        asyncio.run(serve_worker(settings, smtp_socket, index, parent_pid))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
