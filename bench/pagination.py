"""Paging through many relay servers: does the last page cost what the first one does?

    .venv/bin/python bench/pagination.py [--records N] [--db sqlite|postgresql|both]
                                         [--per-page N] [--max-seconds S] [--sql-only]

Method, printed with the figures:

1. A fresh database (SQLite file in a temporary directory, or a fresh schema on the
   PostgreSQL server at 127.0.0.1:5432 db `test`) is migrated and filled with N relay
   servers by one bulk insert through the store layer (``Store.write`` and
   ``store.tables``), not through HTTP.
2. The real server, ``vmta serve``, runs as a separate process on a free port, so client
   and server do not share one interpreter (the machine has 2 cores: one each).
3. An httpx client on a keep-alive connection warms up, then walks every page with
   ``page_token`` (per_page 100), timing each request and checking that every id comes
   exactly once and in order.
4. The tokens of the first 10 and the last 10 pages are requested again, alternating with
   ``?page=N`` (OFFSET) requests for the same pages, 3 rounds: 30 samples per cell.
5. For the explanation, the two SQL parts of a list request are timed in-process on the
   same database: the page query (keyset and offset) and the COUNT(*) behind num_records.

Every loop is bounded: at most N / per_page + 1 pages and --max-seconds per walk.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from vmta.domain.config.virtual_mta import VirtualMtaType
from vmta.store import database
from vmta.store.store import Store
from vmta.store.tables import virtual_mtas
from vmta.store.virtual_mtas import VirtualMtaRepository

PG_URL = os.environ.get("VMTA_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
VMTA = Path(sys.executable).with_name("vmta")
TOKEN = "bench-token-0123456789abcdefghijklmnop"  # a throw-away secret
LIST = "/ga/api/v3/eng/relay_servers"
FREE_PORTS = ("--listen", "127.0.0.1:0", "--smtp-listen", "127.0.0.1:0")
EDGE_PAGES = 10
ROUNDS = 3
BATCH = 10_000


# ---- the database --------------------------------------------------------------------


@contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """The URL of an empty database, removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = database.create_db_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def relay_row(i: int) -> dict[str, Any]:
    name = f"relay-{i:07d}"
    return {
        "type": VirtualMtaType.RELAY_SERVER.value,
        "name": name,
        "name_key": name.lower(),
        "ip": "127.0.0.2",
        "hostname": "out.example.com",
        "destination_hostname": "127.0.0.1",
        "destination_port": 2526,
        "max_concurrent_connections": 0,
        "max_messages_per_hour": 0,
        "delivery_paused": False,
    }


def fill(store: Store, records: int) -> float:
    """Insert ``records`` relay servers in batches; seconds taken."""
    started = time.perf_counter()
    for first in range(0, records, BATCH):
        rows = [relay_row(i) for i in range(first, min(first + BATCH, records))]
        with store.write() as conn:
            conn.execute(virtual_mtas.insert(), rows)
    elapsed = time.perf_counter() - started
    with store.read() as conn:
        repo = VirtualMtaRepository(conn)
        count = repo.count(VirtualMtaType.RELAY_SERVER)
        last = repo.page(VirtualMtaType.RELAY_SERVER, after_id=None, offset=records - 1, limit=1)
        record = repo.get(last[0].id) if last else None
    if count != records or record is None or record.name != f"relay-{records - 1:07d}":
        raise SystemExit(f"bulk insert check failed: {count} records, last {record}")
    if store.dialect == "postgresql":
        with store.write() as conn:
            conn.exec_driver_sql("ANALYZE")  # what autovacuum would soon do
    return elapsed


# ---- the server ----------------------------------------------------------------------


@contextmanager
def vmta_serve(url: str, workdir: Path) -> Iterator[str]:
    """`vmta serve` on a free port; yields its base URL."""
    log_path = workdir / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMTA_")}
    env |= {"VMTA_API_TOKEN": TOKEN, "VMTA_DATABASE_URL": url}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(VMTA), "serve", "--data-dir", str(workdir / "d"), *FREE_PORTS],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            found = re.search(r"API listening on (http://\S+)", log_path.read_text())
            if found:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"vmta serve did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---- measuring -------------------------------------------------------------------------


@dataclass
class Walk:
    latencies: list[float]  # seconds, one per page in order
    tokens: list[str | None]  # the token that fetched each page (None: page 0)
    seconds: float
    complete: bool


def timed_get(client: httpx.Client, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = client.get(LIST, params=params)
    elapsed = time.perf_counter() - started
    body = response.json()
    if response.status_code != 200 or not body["success"]:
        raise SystemExit(f"request {params} failed: {response.status_code} {body}")
    return elapsed, body["data"]


def walk(client: httpx.Client, records: int, per_page: int, max_seconds: float) -> Walk:
    latencies: list[float] = []
    tokens: list[str | None] = []
    last_id = 0
    token: str | None = None
    started = time.perf_counter()
    for _ in range(records // per_page + 1):
        params: dict[str, Any] = {"per_page": per_page}
        if token is not None:
            params["page_token"] = token
        elapsed, data = timed_get(client, params)
        ids = [item["id"] for item in data["relay_servers"]]
        if (ids and ids[0] <= last_id) or ids != sorted(set(ids)):
            raise SystemExit(f"page {len(tokens)} is out of order")
        last_id = ids[-1] if ids else last_id
        latencies.append(elapsed)
        tokens.append(token)
        token = data["pagination"]["next_page_token"]
        if token is None or time.perf_counter() - started > max_seconds:
            break
    seen = (len(latencies) - 1) * per_page + len(ids)
    return Walk(latencies, tokens, time.perf_counter() - started, token is None and seen == records)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[max(0, round(0.9 * len(ordered)) - 1)]
    return f"{statistics.median(ordered) * 1e3:7.2f} {p90 * 1e3:7.2f} {ordered[-1] * 1e3:7.2f}"


def edges(client: httpx.Client, run: Walk, per_page: int) -> dict[str, list[float]]:
    """Token and offset requests for the first and last pages, alternating, ROUNDS times."""
    pages = len(run.tokens)
    first = list(range(min(EDGE_PAGES, pages)))
    last = list(range(max(0, pages - EDGE_PAGES), pages))
    cells: dict[str, list[float]] = {k: [] for k in ("token/first", "token/last",
                                                      "page/first", "page/last")}  # fmt: skip
    for _ in range(ROUNDS):
        for where, indexes in (("first", first), ("last", last)):
            for index in indexes:
                token = run.tokens[index]
                params: dict[str, Any] = {"per_page": per_page}
                if token is not None:
                    params["page_token"] = token
                cells[f"token/{where}"].append(timed_get(client, params)[0])
                cells[f"page/{where}"].append(
                    timed_get(client, {"per_page": per_page, "page": index})[0]
                )
    return cells


def sql_parts(store: Store, records: int, per_page: int) -> dict[str, list[float]]:
    """The SQL behind one list request, timed in-process (no HTTP)."""
    kind = VirtualMtaType.RELAY_SERVER
    last_page = (records - 1) // per_page
    with store.read() as conn:
        repo = VirtualMtaRepository(conn)
        near_end = repo.page(kind, after_id=None, offset=last_page * per_page - 1, limit=1)
        after_last = near_end[0].id if near_end else 0

    def timed(work: Callable[[VirtualMtaRepository], object]) -> list[float]:
        samples = []
        for _ in range(20):
            with store.read() as conn:
                repo = VirtualMtaRepository(conn)
                started = time.perf_counter()
                work(repo)
                samples.append(time.perf_counter() - started)
        return samples

    limit = per_page + 1
    return {
        "keyset page, first": timed(lambda r: r.page(kind, after_id=0, offset=0, limit=limit)),
        "keyset page, last": timed(
            lambda r: r.page(kind, after_id=after_last, offset=0, limit=limit)
        ),
        "offset page, first": timed(lambda r: r.page(kind, after_id=None, offset=0, limit=limit)),
        "offset page, last": timed(
            lambda r: r.page(kind, after_id=None, offset=last_page * per_page, limit=limit)
        ),
        "COUNT(*) for num_records": timed(lambda r: r.count(kind)),
    }


def bench(
    kind: str, records: int, per_page: int, max_seconds: float, *, sql_only: bool = False
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="vmta-bench-"))
    try:
        with fresh_database(kind, workdir) as url:
            store = Store.open(url)
            try:
                inserted = fill(store, records)
                print(f"\n== {kind}: {records:,} relay servers, per_page {per_page}")
                print(f"bulk insert: {inserted:.1f} s ({records / inserted:,.0f} rows/s)")
                if not sql_only:
                    http_parts(url, workdir, records, per_page, max_seconds)
                print("SQL only, 20 runs each            p50 ms  p90 ms  max ms")
                for name, samples in sql_parts(store, records, per_page).items():
                    print(f"  {name:<28} {percentiles(samples)}")
            finally:
                store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def http_parts(url: str, workdir: Path, records: int, per_page: int, max_seconds: float) -> None:
    """Steps 2-4: the real server, the page_token walk, first vs last pages."""
    with (
        vmta_serve(url, workdir) as base,
        httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        ) as client,
    ):
        for _ in range(20):  # warm-up: connection, imports, caches
            timed_get(client, {"per_page": per_page})
        run = walk(client, records, per_page, max_seconds)
        state = "every record once, in order" if run.complete else "INCOMPLETE"
        print(
            f"page_token walk: {len(run.latencies)} pages in {run.seconds:.1f} s"
            f" ({state}); all pages p50/p90/max ms: {percentiles(run.latencies)}"
        )
        cells = edges(client, run, per_page)
    print(f"HTTP, {ROUNDS} rounds x {EDGE_PAGES} pages   p50 ms  p90 ms  max ms")
    for name, samples in cells.items():
        print(f"  {name:<28} {percentiles(samples)}")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = models[0] if models else cpu
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--max-seconds", type=float, default=600, help="bound on one walk")
    parser.add_argument(
        "--sql-only", action="store_true", help="skip HTTP: time only the SQL (step 5)"
    )
    args = parser.parse_args()
    if args.records < 1 or not 1 <= args.per_page <= 1000:
        parser.error("--records must be >= 1 and --per-page 1-1000")
    print(f"machine: {machine()}")
    for kind in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        bench(kind, args.records, args.per_page, args.max_seconds, sql_only=args.sql_only)


if __name__ == "__main__":
    main()
