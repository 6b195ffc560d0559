"""What a suppression list costs each recipient: with 10 entries and with 1,000,000.

    .venv/bin/python bench/suppressions.py [--sizes 10,1000000] [--recipients N]
                                           [--db sqlite|postgresql] [--before]

Method, printed with the figures:

1. A fresh database (SQLite file in a temporary directory, or a fresh schema on the
   PostgreSQL server at 127.0.0.1:5432 db `test`) is migrated and filled with the
   entries by bulk inserts through the store layer: nine address entries for each
   domain entry, as lists of bounces and complaints look.
2. The delivery engine's own path is timed: ``ConfigView.delivery_controls()`` (read
   once a second, as in delivery) then ``ConfigView.suppression(address)`` for N
   distinct recipients (default 20,000), one in ten of them suppressed, timed apart.
   The first read of the controls (where a long list's keys are read, once) is timed
   on its own; the time per recipient includes the once-a-second refresh that follows,
   spread over the recipients of that second.
3. ``--before`` also times what vmta did before: the whole table read every second and
   walked for each recipient (one reload, and the walk for 50 recipients).

Every loop is bounded by the sizes and N given.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import insert, text

from vmta.delivery.routing.config_view import SUPPRESSIONS_IN_MEMORY, ConfigView
from vmta.domain.clock import SystemClock
from vmta.domain.paths.suppression import SuppressionType
from vmta.store.store import Store
from vmta.store.suppressions import SuppressionRepository
from vmta.store.tables import mq_suppressions

PG_URL = os.environ.get("VMTA_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CHUNK = 50_000


def fill(store: Store, size: int) -> None:
    """``size`` entries: user{i}@d{i//9}.test addresses, every tenth a domain d{i}.test."""
    for start in range(0, size, CHUNK):
        rows = []
        for i in range(start, min(size, start + CHUNK)):
            if i % 10 == 9:
                value, kind = f"dom{i}.test", "domain"
            else:
                value, kind = f"user{i}@d{i // 9}.test", "address"
            rows.append({"value_key": value, "value": value, "type": kind, "code": 550})
        with store.write() as conn:
            conn.execute(insert(mq_suppressions), rows)


def recipients(size: int, count: int) -> list[str]:
    """``count`` distinct addresses; one in ten suppressed (when the list has entries)."""
    found = []
    for n in range(count):
        if n % 10 == 0 and size:
            i = (n * 7919) % size
            found.append(f"x{n}@dom{i}.test" if i % 10 == 9 else f"user{i}@d{i // 9}.test")
        else:
            found.append(f"nobody{n}@elsewhere.test")
    return found


async def engine_path(store: Store, addresses: list[str]) -> tuple[float, float, float]:
    """Seconds of the first read of the controls (a long list's keys are read then, once),
    then µs per recipient not suppressed and per recipient suppressed, in steady state."""
    view = ConfigView(store, SystemClock())
    started = time.perf_counter()
    await view.delivery_controls()
    first = time.perf_counter() - started
    spent = {False: 0.0, True: 0.0}
    counted = {False: 0, True: 0}
    for address in addresses:
        started = time.perf_counter()
        controls = await view.delivery_controls()
        found = await view.suppression(address, controls) is not None
        spent[found] += time.perf_counter() - started
        counted[found] += 1
    return (
        first,
        spent[False] / max(1, counted[False]) * 1e6,
        spent[True] / max(1, counted[True]) * 1e6,
    )


def before(store: Store, addresses: list[str]) -> tuple[float, float]:
    """The old way: reload every entry, then walk them per recipient."""
    started = time.perf_counter()
    with store.read() as conn:
        entries = tuple(SuppressionRepository(conn).all())
    reload = time.perf_counter() - started
    sample = addresses[:50]
    started = time.perf_counter()
    for address in sample:
        wanted, domain = address.lower(), address.rpartition("@")[2].lower()
        for entry in entries:
            if entry.type is SuppressionType.ADDRESS and entry.key == wanted:
                break
            if entry.type is SuppressionType.DOMAIN and entry.key == domain:
                break
    return reload, (time.perf_counter() - started) / len(sample)


def open_store(db: str, directory: Path) -> tuple[Store, str | None]:
    if db == "sqlite":
        return Store.open(f"sqlite:///{directory / f'{uuid.uuid4().hex}.db'}"), None
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    store = Store.open(PG_URL)  # only to create the schema
    with store.write() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    store.close()
    separator = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{separator}options=-csearch_path%3D{schema}"
    return Store.open(url), schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,1000000")
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--before", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# {platform.python_implementation()} {platform.python_version()}, {args.db},")
    print(f"# {os.cpu_count()} CPUs; lists up to {SUPPRESSIONS_IN_MEMORY} are held in memory")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            store, schema = open_store(args.db, Path(tmp))
            try:
                started = time.perf_counter()
                fill(store, size)
                filled = time.perf_counter() - started
                addresses = recipients(size, args.recipients)
                first, clear, hit = asyncio.run(engine_path(store, addresses))
                print(
                    f"{size:>9,} entries (filled in {filled:.1f} s): first read {first:.2f} s;"
                    f" then per recipient {clear:6.1f} µs not suppressed, {hit:6.1f} µs"
                    f" suppressed ({len(addresses):,} recipients, one in ten suppressed)"
                )
                if args.before:
                    reload, walk = before(store, addresses)
                    print(
                        f"{'':>9}  before: reload every second {reload * 1e3:,.1f} ms,"
                        f" walk {walk * 1e6:,.1f} µs per recipient"
                    )
            finally:
                if schema is not None:
                    with store.write() as conn:
                        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                store.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
