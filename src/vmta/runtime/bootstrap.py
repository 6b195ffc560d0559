"""First-start chores: the data directory and the `admin` credential."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from vmta.domain.config.credential import (
    hash_chosen_secret,
    hash_secret,
    is_slow_hash,
    new_secret,
    secret_matches,
)
from vmta.runtime.private_files import ensure_private_dir, restrict_umask, write_private
from vmta.runtime.settings import Settings, SettingsError
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store

log = logging.getLogger(__name__)

ADMIN = "admin"
ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name


def ensure_data_dir(settings: Settings) -> None:
    """The data directory, 0700 with its files 0600 (runtime/private_files.py says why)."""
    restrict_umask()
    try:
        ensure_private_dir(settings.data_dir)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SettingsError(f"cannot create data directory {settings.data_dir}: {reason}") from None


def ensure_admin_credential(store: Store, settings: Settings) -> Path | None:
    """Make sure someone can call the API.

    With ``VMTA_API_TOKEN`` the `admin` credential gets that secret (contract §1). Without it,
    and with no credential at all, a fresh `admin` secret is written to
    ``<data_dir>/admin-token`` (mode 0600) and only the file's path is logged. Returns the
    path of the file when one was written.

    Nodes of a cluster that start at the same moment may both find no `admin` and both
    create it: the one whose insert loses looks again, and then finds it (with
    ``VMTA_API_TOKEN`` it sets the secret on it; without, it leaves it and writes no file).
    """
    try:
        return _ensure_admin_credential(store, settings)
    except IntegrityError:
        log.info("another node created credential %r at the same moment; looking again", ADMIN)
        return _ensure_admin_credential(store, settings)


def _ensure_admin_credential(store: Store, settings: Settings) -> Path | None:
    path = settings.data_dir / ADMIN_TOKEN_FILE
    with store.write() as conn:
        repo = CredentialRepository(conn)
        if settings.api_token:
            # An operator chose this secret: kept as a salted scrypt hash, not SHA-256
            # (domain/config/credential.py). Unchanged since the last start: nothing to write.
            current = repo.by_name(ADMIN)
            if (
                current is None
                or current.scope != "admin"
                or not secret_matches(settings.api_token, current.secret_sha256)
                or not is_slow_hash(current.secret_sha256)
            ):
                repo.put(ADMIN, hash_chosen_secret(settings.api_token), "admin")
                log.info("credential %r set from VMTA_API_TOKEN", ADMIN)
            # A file from an earlier start now holds a secret that no longer works.
            if path.exists():
                path.unlink()
                log.info("removed %s: it held admin's previous secret", path.resolve())
            return None
        if repo.all():
            return None
        secret = new_secret()
        _write_private(path, secret + "\n")
        try:
            repo.put(ADMIN, hash_secret(secret))
        except IntegrityError:
            path.unlink(missing_ok=True)  # the other node's secret is the one that works
            raise
    log.info("created credential %r; its secret is in %s", ADMIN, path.resolve())
    return path


def _write_private(path: Path, text: str) -> None:
    try:
        write_private(path, text)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SettingsError(f"cannot write {path}: {reason}") from None
