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


# A second process that wants a slot of ``key`` (limit ``limit``) at ``now`` and finds
# none: it takes what it can (at most ``keep``), asks once more, says what it got, exits.
WAITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from tests.manual_clock import ManualClock
    from vmta.delivery.throttles.host_throttles import HostThrottles

    async def main() -> None:
        directory, key, limit, keep, now = sys.argv[1:6]
        throttles = HostThrottles(ManualClock(float(now)), Path(directory))
        got = [await throttles.acquire_connection(key, int(limit)) for _ in range(int(keep))]
        got.append(await throttles.acquire_connection(key, int(limit)))
        print(",".join(str(token) for token in got), flush=True)

    asyncio.run(main())
    """
)


def want_slot(directory: Path, key: str, limit: int, now: float, keep: int = 0) -> str:
    done = subprocess.run(
        [sys.executable, "-c", WAITER, str(directory), key, str(limit), str(keep), str(now)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_process_with_two_slots_more_than_a_waiting_one_yields_for_two_seconds(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        clock = ManualClock(START)
        throttles = HostThrottles(clock, tmp_path / "throttles")
        assert [await throttles.acquire_connection(KEY, 3) for _ in range(3)] == ["0", "1", "2"]
        assert not await throttles.yield_to_waiter(KEY)  # nobody has asked
        assert want_slot(tmp_path / "throttles", KEY, 3, START) == "None"
        assert await throttles.yield_to_waiter(KEY)  # 3 against 0
        clock.advance(2.0)
        assert await throttles.yield_to_waiter(KEY)
        clock.advance(0.1)
        assert not await throttles.yield_to_waiter(KEY)  # the want is stale: it would ask again
        # Its own want (every slot taken here too) is no reason to yield.
        assert await throttles.acquire_connection(KEY, 3) is None
        assert not await throttles.yield_to_waiter(KEY)
        await throttles.close()

    asyncio.run(main())


def test_near_equal_shares_are_kept(tmp_path: Path) -> None:
    """Two busy processes holding 2 and 1 of 3 slots: the one with 2 keeps them, or the
    two would close and open connections back and forth."""

    async def main() -> None:
        clock = ManualClock(START)
        throttles = HostThrottles(clock, tmp_path / "throttles")
        assert [await throttles.acquire_connection(KEY, 3) for _ in range(2)] == ["0", "1"]
        assert want_slot(tmp_path / "throttles", KEY, 3, START, keep=1) == "2,None"
        assert not await throttles.yield_to_waiter(KEY)  # 2 against 1
        await throttles.close()

    asyncio.run(main())
