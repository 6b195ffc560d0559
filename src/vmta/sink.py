"""`vmta sink`: a small SMTP server that accepts every message and says what it got.

It is for trying vmta out and for testing one's own set-up: point a relay server (or
``VMTA_DELIVERY_PORT``) at it and watch each delivery arrive. Per message it prints one
line to standard output (time, client address, authenticated user, envelope sender,
recipients, size) and can keep the message in a Maildir, an mbox file or a plain
directory. With ``--auth USER:PASSWORD`` it offers AUTH PLAIN and LOGIN (RFC 4954,
RFC 4616) and refuses mail from a client that has not authenticated (530 5.7.0).

There is no STARTTLS, so AUTH would travel in cleartext: ``--auth`` is accepted only on
a loopback listening address, where nothing crosses a network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import mailbox
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    # aiosmtpd itself is imported by the `vmta sink` command only (in `serve`): the
    # command line builds this module's parser for every command (src/vmta/cli.py), and
    # `vmta db` or `vmta credentials` has no use for an SMTP server.
    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

DEFAULT_LISTEN = "127.0.0.1:2526"
MAX_MESSAGE_SIZE = 64 * 1024 * 1024  # above vmta's own default limit of 50 MiB
USAGE_ERROR = 2


class SinkUsageError(ValueError):
    """A flag the sink cannot work with; the message says which and why."""


@dataclass(frozen=True)
class SinkOptions:
    host: str
    port: int
    hostname: str = "sink.localhost"
    credentials: tuple[str, str] | None = None
    maildir: Path | None = None
    mbox: Path | None = None
    directory: Path | None = None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6); port 0 lets the system choose."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SinkUsageError(f"--listen must be HOST:PORT, not {text!r}")
    return host, int(port)


def parse_credentials(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise SinkUsageError("--auth must be USER:PASSWORD, both non-empty")
    return user, password


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def options_from(args: argparse.Namespace) -> SinkOptions:
    host, port = parse_listen(args.listen)
    credentials = parse_credentials(args.auth) if args.auth else None
    if credentials is not None and not is_loopback(host):
        # No TLS here: a password sent to a non-loopback address would cross a network
        # in cleartext (RFC 4954 §4 leaves protecting it to the deployment).
        raise SinkUsageError("--auth needs a loopback --listen address (the sink has no TLS)")
    if sum(x is not None for x in (args.maildir, args.mbox, args.dir)) > 1:
        raise SinkUsageError("choose at most one of --maildir, --mbox and --dir")
    return SinkOptions(
        host=host,
        port=port,
        hostname=args.hostname,
        credentials=credentials,
        maildir=args.maildir,
        mbox=args.mbox,
        directory=args.dir,
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `sink` to ``commands`` (the top-level sub-parsers)."""
    sink = commands.add_parser(
        "sink",
        help="a test SMTP server that accepts and prints every message",
        description="Accept every message, print its envelope and size, optionally keep it."
        " Stop it with Ctrl-C.",
    )
    sink.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_LISTEN}; port 0 picks a free port)",
    )
    sink.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help="offer AUTH PLAIN/LOGIN and require it before MAIL (loopback addresses only)",
    )
    sink.add_argument("--hostname", default="sink.localhost", help="name in the greeting")
    keep = sink.add_argument_group("keeping messages (at most one)")
    keep.add_argument("--maildir", type=Path, metavar="DIR", help="deliver into Maildir DIR")
    keep.add_argument("--mbox", type=Path, metavar="FILE", help="append to mbox FILE")
    keep.add_argument("--dir", type=Path, metavar="DIR", help="write each message to DIR/N.eml")


class MessageStore:
    """Where accepted messages go, if anywhere: Maildir, mbox or one file per message."""

    def __init__(self, options: SinkOptions) -> None:
        self._maildir = mailbox.Maildir(options.maildir) if options.maildir else None
        self._mbox = mailbox.mbox(options.mbox) if options.mbox else None
        self._directory = options.directory
        if self._directory is not None:
            self._directory.mkdir(parents=True, exist_ok=True)
        self._count = 0
        self.where: str | None = None
        self.where_path = options.maildir
        if options.maildir is not None:
            self.where = f"Maildir {options.maildir}"
        elif options.mbox is not None:
            self.where = f"mbox {options.mbox}"
        elif options.directory is not None:
            self.where = f"directory {options.directory}"

    def keep(self, mail_from: str, recipients: list[str], data: bytes) -> str | None:
        """Store one message; returns where it went (a file name or key), or None."""
        self._count += 1
        # A final delivery records the envelope in the message (RFC 5321 §4.4:
        # Return-Path; Delivered-To as common MDAs do).
        trace = f"Return-Path: <{mail_from}>\r\n".encode()
        trace += b"".join(f"Delivered-To: {r}\r\n".encode() for r in recipients)
        message = trace + data
        if self._maildir is not None:
            return f"{self.where_path}/new/{self._maildir.add(message)}"
        if self._mbox is not None:
            entry = mailbox.mboxMessage(message)
            entry.set_from(mail_from or "MAILER-DAEMON", time.gmtime())
            self._mbox.lock()
            try:
                self._mbox.add(entry)
                self._mbox.flush()
            finally:
                self._mbox.unlock()
            return self.where
        if self._directory is not None:
            path = self._directory / f"{int(time.time())}-{self._count}.eml"
            path.write_bytes(message)
            return str(path)
        return None

    def close(self) -> None:
        if self._mbox is not None:
            self._mbox.close()


class SinkHandler:
    """aiosmtpd's handler: accepts every message, prints it and stores it."""

    def __init__(self, store: MessageStore, out: TextIO) -> None:
        self.store = store
        self.out = out
        self.received = 0

    def say(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f"{stamp} {line}", file=self.out, flush=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.received += 1
        number = self.received
        stored = self.store.keep(envelope.mail_from or "", list(envelope.rcpt_tos), data)
        peer = session.peer[0] if session.peer else "?"
        user = session.auth_data if isinstance(session.auth_data, str) else "-"
        recipients = ",".join(f"<{r}>" for r in envelope.rcpt_tos)
        line = (
            f"message {number} from {peer} auth={user} mail_from=<{envelope.mail_from or ''}>"
            f" rcpt_to={recipients} size={len(data)}"
        )
        self.say(line + (f" saved={stored}" if stored else ""))
        return f"250 2.0.0 Ok: message {number} accepted by vmta sink"


def _authenticator(
    credentials: tuple[str, str], say: Callable[[str], None]
) -> Callable[[SMTP, Session, Envelope, str, Any], AuthResult]:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        peer = session.peer[0] if session.peer else "?"
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = data.login.decode("utf-8", "replace")
        password = data.password.decode("utf-8", "replace")
        if (login, password) != credentials:
            # The password a client tried is never printed, right or wrong.
            say(f"AUTH {mechanism} refused for user {login!r} from {peer}")
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=login)

    return check


async def serve(
    options: SinkOptions,
    out: TextIO,
    *,
    ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the sink until ``stop`` is set (or SIGINT/SIGTERM); returns the message count."""
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    store = MessageStore(options)
    handler = SinkHandler(store, out)
    credentials = options.credentials

    def protocol() -> SMTP:
        return SMTP(
            handler,
            hostname=options.hostname,
            ident="vmta sink",
            data_size_limit=MAX_MESSAGE_SIZE,
            enable_SMTPUTF8=True,
            authenticator=_authenticator(credentials, handler.say) if credentials else None,
            auth_required=credentials is not None,
            # With --auth: loopback only (checked in options_from), so cleartext AUTH
            # crosses no network. Without it, "TLS required" (and no TLS) keeps aiosmtpd
            # from advertising an AUTH line at all.
            auth_require_tls=credentials is None,
            auth_exclude_mechanism=[] if credentials else ["PLAIN", "LOGIN"],
            loop=loop,
        )

    server = await loop.create_server(protocol, options.host, options.port)
    port = int(server.sockets[0].getsockname()[1])
    stop = stop or asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    auth = f"AUTH PLAIN LOGIN required, user {credentials[0]}" if credentials else "no AUTH"
    keeping = f", keeping messages in {store.where}" if store.where else ""
    handler.say(f"vmta sink listening on {options.host}:{port} ({auth}{keeping})")
    if ready is not None:
        ready(options.host, port)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        store.close()
        handler.say(f"vmta sink stopped after {handler.received} message(s)")
    return handler.received


def run(args: argparse.Namespace) -> int:
    """The `vmta sink` command."""
    try:
        options = options_from(args)
    except SinkUsageError as exc:
        print(f"vmta sink: {exc}", file=sys.stderr)
        return USAGE_ERROR
    # aiosmtpd warns about AUTH without TLS on every connection; the sink allows it on
    # loopback only, on purpose, so the warning would only be noise.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    try:
        asyncio.run(serve(options, sys.stdout))
    except OSError as exc:
        print(f"vmta sink: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
