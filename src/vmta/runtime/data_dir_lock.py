"""One `vmta serve` per SQLite data directory.

SQLite is one node's database: two `vmta serve` on one data directory would both claim
and send the same spool, and race over the admin token and the metrics files. The first
takes an exclusive ``flock(2)`` on ``<data_dir>/serve.lock`` and holds it while it runs; a
second is refused at start with the first one's process id. The kernel releases the lock
when the holder's last descriptor closes, so any exit frees it, kill -9 too; the
descriptor is not inherited by worker processes (Python opens it close-on-exec), so a
worker left behind cannot hold it. With PostgreSQL no lock is taken: several nodes
sharing one database is a cluster (docs/cluster.md).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from vmta.runtime.settings import Settings, SettingsError

LOCK_FILE = "serve.lock"


def needs_lock(settings: Settings) -> bool:
    """True when the spool is SQLite: the default, or a ``sqlite:`` URL."""
    return settings.effective_database_url.startswith("sqlite")


_held: dict[Path, int] = {}  # lock file -> descriptor, in this process


def hold(settings: Settings) -> Callable[[], None]:
    """Take the data directory's lock (nothing with PostgreSQL, nothing more when this
    process holds it already) and return what releases it; raises ``SettingsError`` when
    another process holds it. The data directory must exist."""
    if not needs_lock(settings):
        return _nothing
    path = (settings.data_dir / LOCK_FILE).resolve()
    if path in _held:
        return _nothing  # the outer holder releases it
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise SettingsError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise SettingsError(
            f"data directory {settings.data_dir} is in use by another `vmta serve`"
            f" (pid {holder}); with SQLite one vmta runs per data directory: use"
            " another --data-dir, or PostgreSQL (VMTA_DATABASE_URL) for several nodes"
        ) from None
    # Who holds it, for the refusal above (the flock is the lock: a stale pid left here
    # by a kill -9 means nothing).
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    _held[path] = fd

    def release() -> None:
        if _held.pop(path, None) is not None:
            os.close(fd)  # releases the lock

    return release


def _nothing() -> None:
    return None
