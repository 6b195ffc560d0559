"""The data directory and its files are vmta's alone: the directory 0700, every file 0600.

The store holds relay passwords, message bodies and credential hashes; the delivery log
names every recipient. Another local user must read none of it. Three layers, because
each alone has a gap: ``vmta serve`` (and every command that opens the store) sets the
umask to 077, so files that others create for vmta (SQLite's -wal and -shm files) are
private too; vmta's own files are opened with mode 0600; and at start-up a directory
or file left looser by an older version is tightened.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077


def restrict_umask() -> None:
    os.umask(UMASK)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) 0700, or tighten it and the files in it."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIRECTORY_MODE)
    for entry in os.scandir(path):
        # Only regular files of our own, never through a symlink someone planted.
        if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == (
            os.getuid()
        ):
            mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
            if mode & 0o077:
                os.chmod(entry.path, mode & 0o700, follow_symlinks=False)


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with mode 0600, refusing a symlink in the file's place; a file left
    with a looser mode is tightened (O_CREAT's mode applies only to a new file)."""
    fd = os.open(path, flags | os.O_NOFOLLOW, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_private(path: Path, text: str) -> None:
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)
