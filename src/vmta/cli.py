"""The `vmta` command line: serve, credentials, database migrations, the queue.

Exit status: 0 success, 1 failure (the message on stderr says why), 2 bad usage,
130 interrupted before start-up completed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vmta import __version__, queue_commands, sink
from vmta.domain.config.credential import SCOPES, credential_name_problem, hash_secret, new_secret
from vmta.domain.errors import VmtaError
from vmta.runtime import data_dir_lock, logs, malloc_tuning
from vmta.runtime.bootstrap import ensure_data_dir
from vmta.runtime.settings import OPTIONS, Settings, help_text, load_settings
from vmta.runtime.worker_pool import prepare_worker_metrics
from vmta.store import database
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store

USAGE_ERROR = 2


def _settings_flags(parser: argparse.ArgumentParser, *, serve: bool = False) -> None:
    # SUPPRESS: a flag not given leaves no attribute, so the flags work before and after
    # a sub-command (`vmta db --data-dir D upgrade` and `vmta db upgrade --data-dir D`)
    # without the inner parser's default overwriting the outer value.
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="TOML settings file [VMTA_CONFIG]",
    )
    for option in OPTIONS:
        if option.flag is None or (option.serve_only and not serve):
            continue
        parser.add_argument(
            option.flag,
            dest=option.name,
            metavar=option.metavar,
            default=argparse.SUPPRESS,
            # argparse reads "%" in a help as a format directive.
            help=f"{help_text(option)} [{option.env}]".replace("%", "%%"),
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vmta",
        description="vmta outbound MTA. Settings: flags > VMTA_* environment > TOML file"
        " (--config) > defaults.",
    )
    parser.add_argument("--version", action="version", version=f"vmta {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API (and, with it, the MTA)")
    _settings_flags(serve, serve=True)

    creds = commands.add_parser("credentials", help="manage API credentials")
    _settings_flags(creds)
    cred_cmds = creds.add_subparsers(dest="action", required=True)
    create = cred_cmds.add_parser(
        "create", help="create NAME (or renew its secret); prints the secret once"
    )
    create.add_argument("name")
    create.add_argument(
        "--scope",
        choices=SCOPES,
        default=None,
        help="admin: every endpoint (the default for a new credential); submit: message"
        " injection only (SMTP AUTH, the injection endpoints). Renewing keeps the scope"
        " unless given",
    )
    _settings_flags(create)
    _settings_flags(cred_cmds.add_parser("list", help="list credential names"))
    revoke = cred_cmds.add_parser("revoke", help="delete credential NAME")
    revoke.add_argument("name")
    _settings_flags(revoke)

    db = commands.add_parser("db", help="database maintenance")
    _settings_flags(db)
    db_cmds = db.add_subparsers(dest="action", required=True)
    _settings_flags(db_cmds.add_parser("upgrade", help="apply every pending migration"))
    _settings_flags(db_cmds.add_parser("current", help="print the schema revision"))

    queue_commands.register(commands, _settings_flags)
    sink.register(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {option.name: getattr(args, option.name, None) for option in OPTIONS}
    return load_settings(config_file=getattr(args, "config", None), overrides=overrides)


def _open_store(settings: Settings, *, migrate: bool = True) -> Store:
    if not settings.database_url:
        ensure_data_dir(settings)
    return Store.open(settings.effective_database_url, migrate=migrate)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    malloc_tuning.tune_malloc()  # before the first large block (runtime/malloc_tuning)
    release = None
    if settings.workers > 1:
        # Before prometheus_client is first imported: it decides then where values live.
        ensure_data_dir(settings)
        # The lock first: the metrics files of the data directory are removed next. With
        # one process the server takes it after binding its ports (runtime/server.py).
        release = data_dir_lock.hold(settings)
        prepare_worker_metrics(settings)
    from vmta.runtime.server import run  # uvicorn and the app: only when serving

    try:
        run(settings)
    finally:
        if release is not None:
            release()
    return 0


def _credentials(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "create":
        problem = credential_name_problem(args.name)
        if problem:
            print(f"vmta: {problem}", file=sys.stderr)
            return USAGE_ERROR
    store = _open_store(settings)
    try:
        with store.write() as conn:
            repo = CredentialRepository(conn)
            if args.action == "create":
                secret = new_secret()
                repo.put(args.name, hash_secret(secret), args.scope)
                # The one place a secret is shown: to the operator who asked for it.
                print(secret)
                return 0
            if args.action == "list":
                # Names, dates and scopes only: never a secret, nor its hash.
                for record in repo.all():
                    created = record.created_at.isoformat() if record.created_at else ""
                    print(f"{record.name}\t{created}\t{record.scope}")
                return 0
            if not repo.remove(args.name):
                print(f"vmta: no credential named {args.name!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.name}")
            return 0
    finally:
        store.close()


def _db(args: argparse.Namespace, settings: Settings) -> int:
    store = _open_store(settings, migrate=False)
    try:
        if args.action == "upgrade":
            database.upgrade(store.engine)
        current = database.current_revision(store.engine)
        head = database.head_revision()
        if current == head:
            print(f"{current} (head)")
        else:
            print(f"{current or 'none'} (head is {head}; run `vmta db upgrade`)")
        # The ids are not in numeric order: the chain says which is the latest.
        chain = [f"[{rev}]" if rev == current else rev for rev in database.revision_chain()]
        print(f"migrations in the order they apply: {' -> '.join(chain)}")
        if current == head:
            print(f"the database is at the latest migration, {head}")
        return 0
    finally:
        store.close()


def _queue(args: argparse.Namespace, settings: Settings) -> int:
    store = _open_store(settings)
    try:
        return queue_commands.run(args, store)
    finally:
        store.close()


_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": _serve,
    "credentials": _credentials,
    "db": _db,
    "queue": _queue,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sink":
        # A peer for trying vmta out: it reads none of vmta's settings or data.
        return sink.run(args)
    try:
        settings = _settings(args)
        logs.configure(settings.log_level)
        return _COMMANDS[args.command](args, settings)
    except VmtaError as exc:
        # Errors vmta raises on purpose carry a complete, secret-free message: no traceback.
        print(f"vmta: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`vmta queue list | head`): what it wanted it has. No
        # traceback; stdout is pointed at /dev/null so the interpreter's final flush of
        # it cannot fail again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
