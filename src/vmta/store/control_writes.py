"""Writes to the control plane's reference graph: one lock for all of them, and the
database's own constraints read back as the rule they enforce.

VirtualMTAs refer to each other (redirects, routing rule entries), to throttling templates
and from the default setting. Whether a write is allowed depends on rows other than the
one it writes: a name must be free, a reference must exist, a redirect must not close a
loop, a record must be unused before it is deleted. Under PostgreSQL's READ COMMITTED two
transactions can each check and then both write (A→B and B→A: a loop neither saw), so
every such write first takes one transaction-level advisory lock; the checks then see
every write committed before it. SQLite needs nothing more: vmta begins write
transactions with BEGIN IMMEDIATE (database.py), so there is one writer at a time.

Reads never take the lock, and the spool never does: only the control plane is
serialised, and its writes are few and short.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from vmta.domain.errors import ValidationFailed

# Any 64-bit key would do, as long as every writer of the graph uses the same one:
# "vmta" in ASCII, then 1 for the control plane.
CONTROL_PLANE_KEY = 0x766D_7461_0000_0001


def is_write(conn: Connection) -> bool:
    """True for a connection of ``Store.write``."""
    return bool(conn.get_execution_options().get("vmta_write"))


def serialise_control_writes(conn: Connection) -> None:
    """Hold the control plane's write lock until this transaction ends (commit or
    rollback). Re-entrant: taking it again in the same transaction is harmless."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CONTROL_PLANE_KEY})


def serialise_if_write(conn: Connection) -> None:
    """What a repository of the reference graph does first: on a write connection, take
    the lock, so that what it checks (free names, existing references, no loop, unused
    before delete) still holds when it writes; a read connection takes nothing."""
    if is_write(conn):
        serialise_control_writes(conn)


CONFLICT = "conflicts with a change made at the same time; try again"


@contextmanager
def refused_on_conflict(conn: Connection, explain: Callable[[], list[str]]) -> Iterator[None]:
    """Run a write in a savepoint; when a unique or foreign key constraint refuses it
    (a writer that did not take the lock, such as an older vmta on another node), roll
    back to the savepoint and raise ValidationFailed with ``explain()``: the rule the
    constraint enforces, in the words of the checks that would have caught it."""
    try:
        with conn.begin_nested():
            yield
    except IntegrityError:
        raise ValidationFailed(explain() or [CONFLICT]) from None
