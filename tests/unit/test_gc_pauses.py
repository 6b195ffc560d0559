"""After `vmta serve` or a worker is set up, a full collection walks only what was made
since (runtime/gc_pauses.py). In a fresh interpreter: a freeze is per process, and this
one's objects are pytest's."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
import vmta.runtime.server  # what `vmta serve` imports
from vmta.runtime.gc_pauses import freeze_startup_objects

walked_before = len(gc.get_objects())  # what a full collection walks
frozen = freeze_startup_objects()
leftover = [[] for _ in range(1000)]  # made after the freeze: walked from now on
walked_after = len(gc.get_objects())
print(walked_before, frozen, walked_after)
"""


def test_a_full_collection_after_the_freeze_walks_only_what_came_after() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    walked_before, frozen, walked_after = map(int, out.split())
    assert walked_before > 50_000  # the imports of `vmta serve`
    assert frozen > 0.9 * walked_before  # all but what the collection freed
    # The thousand lists made after the freeze, and little else.
    assert 1000 <= walked_after < 3000
