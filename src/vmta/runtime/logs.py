"""Logging set-up: one line per event on stderr, no secrets (they are never logged)."""

from __future__ import annotations

import logging
import sys


def configure(level: str, *, tag: str | None = None) -> None:
    """``tag`` marks every line of a worker process ("worker 2"), whose log is the same
    stream as its parent's."""
    handler = logging.StreamHandler(sys.stderr)
    where = f"[{tag}] " if tag else ""
    line = f"%(asctime)s %(levelname)s {where}%(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(line))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # No line shows where it was logged from, nor its thread or process (the format
    # above): each record would still look for its caller's frame and ask for them,
    # about 8 µs of the two INFO lines every message gets with VMTA_LOG_MESSAGES=each
    # (docs/PERFORMANCE.md, round 5). These are the switches the logging HOWTO names
    # under "Optimization".
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root.setLevel(level)
    # uvicorn's access log would print query strings; vmta's own logs say what matters.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # aiosmtpd logs every SMTP command at INFO; vmta logs what matters itself.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # Alembic narrates every start ("Context impl SQLiteImpl."); vmta logs the one thing
    # that matters, a migration that changed the schema. DEBUG shows Alembic's detail.
    if level != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    # aiormq's DEBUG lines print whole AMQP frames: MailerQ messages with their per-message
    # DKIM private keys. Never below INFO, whatever the level.
    logging.getLogger("aiormq").setLevel(logging.INFO)
