"""More processes for the data plane (``VMTA_WORKERS``): the parent's side.

One Python process runs one interpreter at a time, so one `vmta serve` uses about one core
however many the machine has. With ``VMTA_WORKERS=N`` the `vmta serve` process (which
also serves the API) starts N-1 worker processes. Each worker runs a data plane of its
own (SMTP listener, delivery engine, spool writer) as one more node of the cluster:

- they accept on the parent's SMTP socket, inherited (the pre-fork model): the kernel
  hands each new connection to one of the processes waiting in accept;
- they share the spool (SQLite or PostgreSQL) with node names of their own, so the leases
  that keep two nodes from sending one recipient keep two workers from it too;
- they hold the throttles together: through Redis when the cluster uses it, else
  through files in the data directory (delivery/throttles/host_throttles.py).

A worker that exits by itself (a crash, kill -9) is started again after a pause that
grows while it keeps failing; the new process releases the leases of the one it replaces
(runtime/node_identity.py). On stop, each worker gets SIGTERM and stops like `vmta serve`
does (DATA in progress may finish within ``VMTA_SMTP_SHUTDOWN_GRACE``); one that has not
stopped well after that is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass

from vmta.runtime.settings import Settings

log = logging.getLogger(__name__)

METRICS_DIR = "metrics"  # under the data directory: prometheus_client's value files
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # seconds, after consecutive failures
STABLE_SECONDS = 60.0  # a worker that ran this long starts the delay sequence anew
STOP_MARGIN = 30.0  # seconds past the SMTP shutdown grace before a worker is killed


def prepare_worker_metrics(settings: Settings) -> None:
    """prometheus_client's multiprocess mode: each process writes its metric values to
    files in one directory, and ``/metrics`` serves their sum (runtime/metrics.py). Set up
    before prometheus_client is first imported, which reads the variable then; workers
    inherit it. The files of an earlier run are removed: counters start at 0 with each
    `vmta serve`, as they do with one process."""
    directory = settings.data_dir / METRICS_DIR
    if directory.is_dir() and not directory.is_symlink():
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0


class WorkerPool:
    def __init__(self, settings: Settings, smtp_socket: socket.socket, count: int) -> None:
        self._settings = settings
        self._socket = smtp_socket
        self._workers = [_Worker(index) for index in range(1, count + 1)]
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None

    def _spawn(self, worker: _Worker) -> None:
        fd = self._socket.fileno()
        command = [sys.executable, "-m", "vmta.runtime.worker_process"]
        command += [str(worker.index), str(fd), str(os.getpid())]
        # The settings go over a pipe, not the command line or the environment: they may
        # hold secrets (a Redis or RabbitMQ password), and both of those are readable by
        # other users of the machine (/proc/PID/cmdline, /proc/PID/environ to root).
        # S603: the command is this interpreter and fixed arguments, no outside input.
        # SIGHUP blocked for the child from its first instruction (the signal mask is
        # inherited across fork and exec) until it can handle it: a SIGHUP passed on
        # while it starts would otherwise end it (runtime/log_files.py). Pending, it is
        # handled once the worker unblocks it.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, pass_fds=(fd,))  # noqa: S603
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(pickle.dumps(self._settings))
        process.stdin.close()
        worker.process = process
        worker.started_at = asyncio.get_running_loop().time()
        log.info("worker %d started (pid %d)", worker.index, process.pid)

    async def start(self) -> None:
        for worker in self._workers:
            self._spawn(worker)
        self._watch = asyncio.create_task(self._supervise(), name="worker-pool")

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            for worker in self._workers:
                process = worker.process
                if process is None or process.poll() is None:
                    continue
                ran = loop.time() - worker.started_at
                worker.failures = 1 if ran > STABLE_SECONDS else worker.failures + 1
                delay = RESTART_DELAYS[min(worker.failures, len(RESTART_DELAYS)) - 1]
                log.warning(
                    "worker %d (pid %d) exited with status %s; starting it again in %g s",
                    worker.index,
                    process.pid,
                    process.returncode,
                    delay,
                )
                worker.process = None
                _forget_metrics_of(process.pid)
                loop.call_later(delay, self._restart, worker)
            await asyncio.sleep(0.2)

    def _restart(self, worker: _Worker) -> None:
        if not self._stopping and worker.process is None:
            self._spawn(worker)

    def send_signal(self, sig: signal.Signals) -> None:
        """Pass ``sig`` on to every running worker (SIGHUP: reopen the log files)."""
        for worker in self._workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(sig)

    def force(self) -> None:
        """A second stop signal: passed on, so workers stop waiting for DATA too."""
        for worker in self._workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)

    async def stop(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        running = [w.process for w in self._workers if w.process and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = self._settings.smtp_shutdown_grace + STOP_MARGIN
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline
        for process in running:
            try:
                await asyncio.to_thread(process.wait, max(0.0, until - loop.time()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in %g s; killing it", process.pid, deadline)
                process.kill()
                await asyncio.to_thread(process.wait)


def _forget_metrics_of(pid: int) -> None:
    """A dead worker's open-connection gauge no longer counts (its counters do)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
