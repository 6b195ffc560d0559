"""The `vmta` command line: serve, credentials, database migrations."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from vmta.domain.credential import credential_name_problem, hash_secret, new_secret
from vmta.domain.errors import VmtaError
from vmta.runtime import logs
from vmta.runtime.bootstrap import ensure_data_dir
from vmta.runtime.settings import Settings, load_settings
from vmta.store import database
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store

log = logging.getLogger("vmta")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file (or VMTA_CONFIG)")
    parser.add_argument("--data-dir", help="data directory (VMTA_DATA_DIR, default ./vmta-data)")
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL, e.g. postgresql://user@host/db (VMTA_DATABASE_URL;"
        " default SQLite in the data directory)",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (VMTA_LOG_LEVEL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmta", description="vmta outbound MTA")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API (and, with it, the MTA)")
    _common(serve)
    serve.add_argument("--listen", dest="api_listen", help="API HOST:PORT (VMTA_API_LISTEN)")

    creds = commands.add_parser("credentials", help="manage API credentials")
    _common(creds)
    cred_cmds = creds.add_subparsers(dest="action", required=True)
    create = cred_cmds.add_parser(
        "create", help="create NAME (or renew its secret); prints it once"
    )
    create.add_argument("name")
    cred_cmds.add_parser("list", help="list credential names")
    revoke = cred_cmds.add_parser("revoke", help="delete credential NAME")
    revoke.add_argument("name")

    db = commands.add_parser("db", help="database maintenance")
    _common(db)
    db_cmds = db.add_subparsers(dest="action", required=True)
    db_cmds.add_parser("upgrade", help="apply every pending migration (Alembic)")
    db_cmds.add_parser("current", help="print the schema revision")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "data_dir": getattr(args, "data_dir", None),
        "database_url": getattr(args, "database_url", None),
        "log_level": getattr(args, "log_level", None),
        "api_listen": getattr(args, "api_listen", None),
    }
    return load_settings(config_file=args.config, overrides=overrides)


def _open_store(settings: Settings, *, migrate: bool = True) -> Store:
    if not settings.database_url:
        ensure_data_dir(settings)
    return Store.open(settings.effective_database_url, migrate=migrate)


def _credentials(args: argparse.Namespace, settings: Settings) -> int:
    store = _open_store(settings)
    try:
        with store.write() as conn:
            repo = CredentialRepository(conn)
            if args.action == "create":
                problem = credential_name_problem(args.name)
                if problem:
                    print(f"vmta: {problem}", file=sys.stderr)
                    return 2
                secret = new_secret()
                repo.put(args.name, hash_secret(secret))
                # The one place a secret is shown: to the operator who asked for it.
                print(secret)
                return 0
            if args.action == "list":
                for record in repo.all():
                    created = record.created_at.isoformat() if record.created_at else ""
                    print(f"{record.name}\t{created}")
                return 0
            if not repo.remove(args.name):
                print(f"vmta: no credential named {args.name!r}", file=sys.stderr)
                return 1
            return 0
    finally:
        store.close()


def _db(args: argparse.Namespace, settings: Settings) -> int:
    store = _open_store(settings, migrate=False)
    try:
        if args.action == "upgrade":
            database.upgrade(store.engine)
        print(database.current_revision(store.engine) or "(empty)")
        return 0
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        logs.configure(settings.log_level)
        if args.command == "serve":
            from vmta.runtime.server import run

            run(settings)
            return 0
        if args.command == "credentials":
            return _credentials(args, settings)
        return _db(args, settings)
    except VmtaError as exc:
        print(f"vmta: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
