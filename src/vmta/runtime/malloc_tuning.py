"""Two settings of glibc's malloc for vmta's long-running processes: a fixed mmap
threshold, and at most two malloc arenas.

glibc serves a request of ``M_MMAP_THRESHOLD`` bytes or more (128 KiB at first) with a
mapping of its own, returned to the system when freed. Its threshold is *dynamic*: each
time such a block is freed, the threshold rises to the block's size (up to 32 MiB) and the
heap's trim threshold to twice that, so that the next block of that size comes from the
heap instead. One scrypt check of an operator-chosen secret (domain/config/credential.py: 16 MiB
of working memory) is enough: from then on the process keeps up to 32 MiB of free heap
rather than give it back, and every thread that checks a secret later keeps its 16 MiB
block in its own malloc arena. Measured with ``VMTA_WORKERS=2`` under the relay bench
(docs/PERFORMANCE.md, "Round 5: memory"): 16 MiB in the API process's heap and 16 MiB in
its request thread's arena, after the first request with the ``VMTA_API_TOKEN`` secret.

Setting the threshold turns the dynamic rule off (mallopt(3)). It is set at 1 MiB: a
message body of up to about that size is still served from the heap as before (mapping
and faulting in every 100 KB body cost CPU when 64 KiB was tried, round 4), and the rare
larger block, scrypt's among them, goes back to the system when freed.

glibc also gives threads malloc arenas of their own, up to eight per core, so that they
do not wait for each other's locks. Each arena keeps its own free memory, and vmta's
threads (the spool writer, the threads that read bodies and serve the API) each leave a
few megabytes of it behind after a burst of large messages. vmta's threads run Python
code under one interpreter lock, so they seldom allocate at the same moment: two arenas
took 2-5 MB off the peak at 100 KB in the relay bench (two A/B pairs of runs each of the
bench and of a memory probe), with the same CPU per message.

Both are what ``MALLOC_MMAP_THRESHOLD_=1048576 MALLOC_ARENA_MAX=2`` in the environment
would do, which glibc reads only when a process starts; through mallopt(3) they also
apply to `vmta serve` itself. Not glibc (musl, macOS): nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD = 1 << 20  # bytes
ARENA_MAX = 2


def tune_malloc(threshold: int = MMAP_THRESHOLD, arenas: int = ARENA_MAX) -> bool:
    """Set both once, early in a process (before its first large block and its first
    thread); True if glibc took them."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # no libc by that name, or not glibc's malloc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done: bool = mallopt(M_MMAP_THRESHOLD, threshold) == 1 and mallopt(M_ARENA_MAX, arenas) == 1
    if not done:
        log.debug("mallopt refused; malloc keeps its own settings")
    return done
