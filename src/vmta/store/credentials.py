"""API credentials: names, secret hashes and scopes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, delete, insert, select, update

from vmta.domain.config.credential import DEFAULT_SCOPE, SCRYPT_PREFIX, Scope
from vmta.store.tables import api_credentials


@dataclass(frozen=True)
class CredentialRecord:
    name: str
    secret_sha256: str  # the stored hash, of either kind (domain/config/credential.py)
    created_at: datetime | None
    scope: Scope = DEFAULT_SCOPE


def _record(row: Any) -> CredentialRecord:
    return CredentialRecord(row.name, row.secret_sha256, row.created_at, cast(Scope, row.scope))


class CredentialRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def by_hash(self, secret_sha256: str) -> CredentialRecord | None:
        row = self.conn.execute(
            select(api_credentials).where(api_credentials.c.secret_sha256 == secret_sha256)
        ).first()
        return None if row is None else _record(row)

    def by_name(self, name: str) -> CredentialRecord | None:
        row = self.conn.execute(
            select(api_credentials).where(api_credentials.c.name == name)
        ).first()
        return None if row is None else _record(row)

    def slow_hashed(self) -> list[CredentialRecord]:
        """Credentials whose secret is kept salted (operator-chosen): a Bearer secret
        cannot be looked up by its hash for these, only compared with each."""
        rows = self.conn.execute(
            select(api_credentials).where(api_credentials.c.secret_sha256.startswith(SCRYPT_PREFIX))
        )
        return [_record(r) for r in rows]

    def all(self) -> list[CredentialRecord]:
        rows = self.conn.execute(select(api_credentials).order_by(api_credentials.c.name))
        return [_record(r) for r in rows]

    def put(self, name: str, secret_sha256: str, scope: Scope | None = None) -> None:
        """Create the credential (``admin`` unless ``scope`` says otherwise), or give an
        existing one of that name a new secret (and the new scope, when one is given)."""
        if self.by_name(name) is None:
            self.conn.execute(
                insert(api_credentials).values(
                    name=name, secret_sha256=secret_sha256, scope=scope or DEFAULT_SCOPE
                )
            )
        else:
            values: dict[str, str] = {"secret_sha256": secret_sha256}
            if scope is not None:
                values["scope"] = scope
            self.conn.execute(
                update(api_credentials).where(api_credentials.c.name == name).values(**values)
            )

    def remove(self, name: str) -> bool:
        result = self.conn.execute(delete(api_credentials).where(api_credentials.c.name == name))
        return result.rowcount > 0
