"""Throttles shared by the processes of one host (delivery/throttles/host_throttles.py),
checked with a second, real process holding slots and pacing: the limits hold summed over
both, and a process killed with SIGKILL leaves no slot behind."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.manual_clock import ManualClock
from vmta.delivery.throttles.host_throttles import HostThrottles

START = 1_700_000_000.0
KEY = "relay:sink"

# A second process: takes ``count`` slots of KEY (limit 3) and one send slot at START
# (3600 an hour: the next one is START + 1), says what it got, then waits to be killed.
HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from tests.manual_clock import ManualClock
    from vmta.delivery.throttles.host_throttles import HostThrottles

    async def main() -> None:
        throttles = HostThrottles(ManualClock(float(sys.argv[3])), Path(sys.argv[1]))
        count = int(sys.argv[2])
        tokens = [await throttles.acquire_connection("relay:sink", 3) for _ in range(count)]
        wait = await throttles.reserve_message("relay:sink", 3600)
        print(",".join(str(t) for t in tokens), wait, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "throttles"), "2", str(START)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the holder has taken its slots
        assert line.split() == ["0,1", "0.0"], line
        yield process
    finally:
        process.kill()
        process.wait()


def test_connection_slots_and_pacing_hold_over_two_processes(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    async def main() -> None:
        clock = ManualClock(START)
        throttles = HostThrottles(clock, tmp_path / "throttles")
        # The other process holds 2 of 3: one is left here, then none.
        first = await throttles.acquire_connection(KEY, 3)
        assert first == "2"
        assert await throttles.acquire_connection(KEY, 3) is None
        # It took the send slot of START: the next is a second later, for this process too.
        assert await throttles.reserve_message(KEY, 3600) == pytest.approx(1.0)
        clock.advance(1.0)
        assert await throttles.reserve_message(KEY, 3600) == 0.0
        assert await throttles.reserve_message(KEY, 3600) == pytest.approx(1.0)
        # A slot given back here can be taken again; another key has its own slots.
        await throttles.release_connection(KEY, first)
        assert await throttles.acquire_connection(KEY, 3) == "2"
        assert await throttles.acquire_connection("relay:other", 1) == "0"
        await throttles.close()

    asyncio.run(main())


def test_a_killed_process_leaves_no_slot_behind(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    async def main() -> None:
        throttles = HostThrottles(ManualClock(START), tmp_path / "throttles")
        taken = [await throttles.acquire_connection(KEY, 3)]
        assert taken == ["2"] and await throttles.acquire_connection(KEY, 3) is None
        holder.kill()  # SIGKILL: no code of the holder runs
        holder.wait()
        # The kernel dropped its locks: its two slots are free at once.
        taken += [await throttles.acquire_connection(KEY, 3) for _ in range(2)]
        assert sorted(t for t in taken if t is not None) == ["0", "1", "2"]
        assert await throttles.acquire_connection(KEY, 3) is None
        await throttles.close()

    asyncio.run(main())


def test_a_process_never_counts_its_own_slot_twice(tmp_path: Path) -> None:
    """POSIX record locks never conflict within one process: the slots it holds must be
    skipped by itself, or one process would take the same slot again and again."""

    async def main() -> None:
        throttles = HostThrottles(ManualClock(START), tmp_path / "throttles")
        tokens = [await throttles.acquire_connection(KEY, 2) for _ in range(3)]
        assert tokens == ["0", "1", None]
        assert throttles.open_connections(KEY) == 2
        # Unlimited (0): no slot bytes, but counted while open.
        free = await throttles.acquire_connection("relay:free", 0)
        assert free is not None and throttles.open_connections("relay:free") == 1
        await throttles.release_connection("relay:free", free)
        throttles.forget("relay:free")
        assert throttles.open_connections("relay:free") == 0
        await throttles.close()

    asyncio.run(main())
