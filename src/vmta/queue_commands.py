"""`vmta queue`: the spool seen and handled from the command line.

The commands read and write the database of the settings directly, so they work whether
`vmta serve` runs or not. They show what `GET /api/queue`, `GET /api/messages` and
`GET /api/messages/{id}` show, except the running engine's own state (in memory, in flight,
recovered after a crash), which only the serving process knows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from vmta.domain.attempts.queue_selection import CRITERIA, parse_selection
from vmta.domain.attempts.queue_selection import STATES as SELECTION_STATES
from vmta.domain.attempts.spool_records import DELIVERED, FAILED, QUEUED
from vmta.domain.errors import InvalidRequest
from vmta.store.message_search import MessageSearch, search_messages
from vmta.store.queue_bulk import QueueBulk
from vmta.store.spool import SqlSpool
from vmta.store.store import Store

STATES = (QUEUED, DELIVERED, FAILED)
MAX_LIMIT = 10_000  # as GET /api/messages
USAGE_ERROR = 2
OWNER = "cli"  # a SqlSpool needs a lease owner; these commands never take a lease

RETRY_HELP = (
    "make every queued recipient of message ID due now. A running `vmta serve` is not"
    " woken by this command: its engine polls the spool every second and picks the"
    " recipients up at the next poll (POST /api/messages/ID/retry wakes it at once)"
)


def _limit(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to {MAX_LIMIT}, not {text!r}")
    return int(text)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    settings_flags: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add `queue` and its sub-commands to ``commands`` (the top-level sub-parsers)."""
    queue = commands.add_parser(
        "queue",
        help="inspect the spool; retry, delete, hold or release messages",
        description="The spool of the configured database; works while `vmta serve` runs.",
    )
    settings_flags(queue)
    actions = queue.add_subparsers(dest="action", required=True)

    listing = actions.add_parser(
        "list", help="recipient counts by state and VirtualMTA, then messages, oldest first"
    )
    listing.add_argument(
        "--state", choices=STATES, help="only messages with at least one recipient in STATE"
    )
    listing.add_argument(
        "--limit", type=_limit, default=100, metavar="N", help="at most N messages (default 100)"
    )
    listing.add_argument("--recipient", metavar="ADDRESS", help="only messages to ADDRESS")
    listing.add_argument("--sender", metavar="ADDRESS", help="only messages from ADDRESS")
    listing.add_argument(
        "--message-id", metavar="ID", help="only the message whose Message-ID field is ID"
    )
    listing.add_argument(
        "--json",
        action="store_true",
        help="print JSON (the shapes of GET /api/queue and /api/messages)",
    )
    settings_flags(listing)

    show = actions.add_parser(
        "show", help="envelope, VirtualMTA, every recipient's state and every attempt (JSON)"
    )
    show.add_argument("queue_id", metavar="ID")
    settings_flags(show)

    retry = actions.add_parser("retry", help=RETRY_HELP + "; or every selected recipient")
    retry.add_argument("queue_id", metavar="ID", nargs="?")
    _selection_flags(retry)
    settings_flags(retry)

    delete = actions.add_parser(
        "delete",
        help="remove message ID, its recipients and attempts; or every selected recipient",
    )
    delete.add_argument("queue_id", metavar="ID", nargs="?")
    _selection_flags(delete)
    settings_flags(delete)

    hold = actions.add_parser("hold", help="hold the selected queued recipients until released")
    _selection_flags(hold)
    settings_flags(hold)
    release = actions.add_parser("release", help="make the selected held recipients due now")
    _selection_flags(release)
    settings_flags(release)


def _selection_flags(parser: argparse.ArgumentParser) -> None:
    """The recipients a bulk action is about (domain/attempts/queue_selection.py): all must hold."""
    group = parser.add_argument_group(
        "selection", "every criterion given must hold; recipients a node is sending are left alone"
    )
    group.add_argument("--virtual-mta", dest="virtual_mta", metavar="NAME")
    group.add_argument("--domain", metavar="DOMAIN", help="recipient domain")
    group.add_argument("--sender", metavar="ADDRESS", help="envelope sender ('' for <>)")
    group.add_argument("--state", choices=SELECTION_STATES)
    group.add_argument(
        "--older-than", dest="older_than", metavar="SECONDS", help="received that long ago"
    )


def run(args: argparse.Namespace, store: Store, out: TextIO | None = None) -> int:
    """Carry out the `queue` sub-command in ``args``; returns the exit status."""
    out = out or sys.stdout
    spool = SqlSpool(store, OWNER)
    action: str = args.action
    if action == "list":
        search = MessageSearch(
            state=args.state,
            recipient=args.recipient,
            sender=args.sender,
            message_id=args.message_id,
        )
        return _list(spool, search, args.limit, args.json, out)
    queue_id: str | None = getattr(args, "queue_id", None)
    raw = {n: v for n in CRITERIA if (v := getattr(args, n, None)) is not None}
    if action in ("hold", "release") or (queue_id is None and action in ("retry", "delete")):
        return _bulk(store, action, raw, out)
    if raw:
        print("vmta: give a queue id or a selection, not both", file=sys.stderr)
        return USAGE_ERROR
    assert queue_id is not None
    if action == "show":
        view = spool.inspector.message(queue_id)
        if view is None:
            return _not_found(queue_id)
        out.write(json.dumps(vars(view), indent=2) + "\n")
        return 0
    if action == "retry":
        if spool.inspector.message(queue_id) is None:
            return _not_found(queue_id)
        due = spool.housekeeping.retry_now(queue_id, time.time())
        if due:
            out.write(
                f"{due} recipient(s) of {queue_id} due now; a running vmta sends them after"
                " its next poll of the spool (within about a second)\n"
            )
        else:
            out.write(f"{queue_id} has no queued recipient (all delivered or failed)\n")
        return 0
    if not spool.housekeeping.delete_message(queue_id):
        return _not_found(queue_id)
    out.write(f"deleted {queue_id}\n")
    return 0


def _bulk(store: Store, action: str, raw: dict[str, str], out: TextIO) -> int:
    try:
        selection = parse_selection(raw)
    except InvalidRequest as exc:
        print(f"vmta: {exc} (or give one queue id)", file=sys.stderr)
        return USAGE_ERROR
    result = QueueBulk(store).apply(action, selection, time.time())
    done = {"retry": "due now", "delete": "deleted", "hold": "held", "release": "released"}
    line = f"{result.changed} recipient(s) {done[action]}"
    if result.messages_deleted:
        line += f", {result.messages_deleted} message(s) removed"
    if result.in_flight:
        line += f"; {result.in_flight} left alone: a node is sending them"
    out.write(line + "\n")
    return 0


def _not_found(queue_id: str) -> int:
    print(f"vmta: no message with queue id {queue_id!r}", file=sys.stderr)
    return 1


def _list(spool: SqlSpool, search: MessageSearch, limit: int, as_json: bool, out: TextIO) -> int:
    # Imported here: the summary is the API's own (one definition of the counts), and the
    # API package pulls in FastAPI, which the other commands need not load.
    from vmta.api.queue import queue_summary

    summary = queue_summary(spool.inspector.counts())
    rows = search_messages(spool.store, search, limit)
    if as_json:
        from vmta.store.queue_report import deferred_recipients

        queue = {**summary, "deferred": deferred_recipients(spool.store)}
        out.write(json.dumps({"queue": queue, "messages": rows}, indent=2) + "\n")
        return 0
    out.write(_summary_text(summary))
    out.write("\n")
    out.write(_messages_table(rows) if rows else "no messages\n")
    return 0


def _summary_text(summary: dict[str, Any]) -> str:
    counts, queued = summary["recipients"], summary["queued"]
    lines = [
        f"recipients: {counts[QUEUED]} queued ({queued['ready']} ready,"
        f" {queued['deferred']} deferred, {queued['waiting']} waiting),"
        f" {counts[DELIVERED]} delivered, {counts[FAILED]} failed"
    ]
    by_vmta = summary["by_virtual_mta"]
    if by_vmta:
        table = [["VIRTUAL MTA", "QUEUED", "DELIVERED", "FAILED"]]
        # The name may be a message's own selector header: printable characters only.
        table += [[_printable(e["virtual_mta"]), *(str(e[s]) for s in STATES)] for e in by_vmta]
        lines += _columns(table, right=(1, 2, 3))
    return "\n".join(lines) + "\n"


def _messages_table(rows: list[dict[str, Any]]) -> str:
    table = [["QUEUE ID", "RECEIVED (UTC)", "RCPTS", "QUEUED", "SIZE", "VMTA SELECTOR", "FROM"]]
    for row in rows:
        received = datetime.fromtimestamp(row["received_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.append(
            [
                row["id"],
                received,
                str(row["recipients"]),
                str(row["queued"]),
                str(row["size"]),
                _printable(row["vmta_selector"] or "-"),
                _printable(row["mail_from"] or "<>"),
            ]
        )
    return "\n".join(_columns(table, right=(2, 3, 4))) + "\n"


def _printable(text: str) -> str:
    """Envelope text came from SMTP clients: never let it send control sequences to the
    operator's terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _columns(table: list[list[str]], right: tuple[int, ...]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines
