"""One setting of glibc's malloc for vmta's long-running processes: a fixed mmap threshold.

glibc serves a request of ``M_MMAP_THRESHOLD`` bytes or more (128 KiB at first) with a
mapping of its own, returned to the system when freed. Its threshold is *dynamic*: each
time such a block is freed, the threshold rises to the block's size (up to 32 MiB) and the
heap's trim threshold to twice that, so that the next block of that size comes from the
heap instead. One scrypt check of an operator-chosen secret (domain/credential.py: 16 MiB
of working memory) is enough: from then on the process keeps up to 32 MiB of free heap
rather than give it back, and every thread that checks a secret later keeps its 16 MiB
block in its own malloc arena. Measured with ``VMTA_WORKERS=2`` under the relay bench
(docs/PERFORMANCE.md, "Round 5: memory"): 16 MiB in the API process's heap and 16 MiB in
its request thread's arena, after the first request with the ``VMTA_API_TOKEN`` secret.

Setting the threshold turns the dynamic rule off (mallopt(3)). It is set at 1 MiB: a
message body of up to about that size is still served from the heap as before (mapping
and faulting in every 100 KB body cost CPU when 64 KiB was tried, round 4), and the rare
larger block, scrypt's among them, goes back to the system when freed.

The same as ``MALLOC_MMAP_THRESHOLD_=1048576`` in the environment, which glibc reads only
when a process starts; through mallopt(3) it also applies to `vmta serve` itself. Not
glibc (musl, macOS): nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 1 << 20  # bytes


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Set glibc's mmap threshold once, early in a process (before its first large
    block); True if glibc took it."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # no libc by that name, or not glibc's malloc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done: bool = mallopt(M_MMAP_THRESHOLD, threshold) == 1
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; malloc keeps its dynamic threshold")
    return done
