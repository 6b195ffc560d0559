"""Shorter pauses of Python's cyclic garbage collector in vmta's long-running processes.

A full collection (generation 2) walks every container object the process holds, and it
runs on the thread that happened to allocate: in `vmta serve` and in a worker that is the
event loop, so every SMTP session of the process waits for it. What a process holds is
nearly all there from its start (FastAPI, pydantic, SQLAlchemy, the API's routes, the
engine): about 95,000 objects, 45 ms a walk for `vmta serve` alone on the benchmark
machine. Under the relay bench at 1 KB (docs/PERFORMANCE.md, "Round 6") the full
collection that came while mail flowed took 131 ms in `vmta serve` and 57 ms in the
worker, holding up every session of its process at once; with the freeze, 6 and 3 ms.

``freeze_startup_objects`` moves what exists once the process is set up into the
collector's permanent generation (``gc.freeze``), so later full collections walk only
what was made after: the messages in flight, caches, what the configuration reloads make.
The frozen objects are still freed when their reference count falls to zero; only a
reference cycle among them that became garbage would stay (the set-up objects live as long
as the process, so none is expected). Python's documentation recommends the same call
before forking workers, for another reason (copy-on-write pages).
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect once, then freeze everything that is left; how many objects are frozen."""
    gc.collect()  # garbage made while setting up is freed, not kept for good
    gc.freeze()
    return gc.get_freeze_count()
