"""First-start chores: the data directory and the `admin` credential."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vmta.domain.credential import hash_secret, new_secret
from vmta.runtime.settings import Settings, SettingsError
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store

log = logging.getLogger(__name__)

ADMIN = "admin"
ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name


def ensure_data_dir(settings: Settings) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SettingsError(f"cannot create data directory {settings.data_dir}: {reason}") from None


def ensure_admin_credential(store: Store, settings: Settings) -> Path | None:
    """Make sure someone can call the API.

    With ``VMTA_API_TOKEN`` the `admin` credential gets that secret (API.md §1). Without it,
    and with no credential at all, a fresh `admin` secret is written to
    ``<data_dir>/admin-token`` (mode 0600) and only the file's path is logged. Returns the
    path of the file when one was written.
    """
    path = settings.data_dir / ADMIN_TOKEN_FILE
    with store.write() as conn:
        repo = CredentialRepository(conn)
        if settings.api_token:
            repo.put(ADMIN, hash_secret(settings.api_token))
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
        repo.put(ADMIN, hash_secret(secret))
    log.info("created credential %r; its secret is in %s", ADMIN, path.resolve())
    return path


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read. O_NOFOLLOW refuses a symlink
    planted in its place; fchmod covers a file left by an earlier start with a looser
    mode (O_CREAT's mode applies only to a file it creates)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SettingsError(f"cannot write {path}: {reason}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
