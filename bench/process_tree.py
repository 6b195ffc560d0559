"""What a server costs, read from /proc: CPU seconds and memory of a process and all its
descendants, and what the file system under a directory is and how fast it fsyncs."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    return text[text.rindex(")") + 2 :].split()


class ProcessTree:
    """Root processes and their descendants, found anew on every reading (Postfix starts
    and ends daemons all the time). Several roots make one server of several programs:
    Postfix's master and the OpenDKIM milter it signs through."""

    def __init__(self, root: int, *more_roots: int) -> None:
        self.roots = (root, *more_roots)

    def pids(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                fields = _stat_fields(int(entry))
                if fields is not None:
                    children.setdefault(int(fields[1]), []).append(int(entry))
        found: list[int] = []
        todo = list(self.roots)
        while todo and len(found) < 10_000:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def cpu_seconds(self) -> float:
        """User + system time of every live process of the tree, plus what they collected
        from children they have reaped (cutime, cstime): a daemon that ended still counts."""
        total = 0
        for pid in self.pids():
            fields = _stat_fields(pid)
            if fields is not None:
                total += sum(int(value) for value in fields[11:15])
        return total / TICKS

    def memory(self) -> tuple[int, int]:
        """Summed RSS and PSS in bytes. RSS counts a shared library once per process that
        maps it; PSS divides shared pages among the processes that share them."""
        rss = pss = 0
        for pid in self.pids():
            fields = _stat_fields(pid)
            if fields is None:
                continue
            rss += int(fields[21]) * PAGE
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            for line in rollup.splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                    break
        return rss, pss


def file_system(path: Path) -> str:
    """'ext4 on /dev/vda' for the mount that holds ``path``."""
    resolved = str(path.resolve())
    best = ("", "?", "?")
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, kind = line.split()[:3]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[0]):
            best = (mount, device, kind)
    return f"{best[2]} on {best[1]} (mounted at {best[0]})"


def fsync_latency(directory: Path, rounds: int = 30) -> float:
    """Median seconds to fsync a 4 KB append in ``directory``."""
    path = directory / f".fsync-probe-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    samples = []
    try:
        for _ in range(rounds):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(samples)
