"""API credentials: names and secret hashes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from vmta.store.tables import api_credentials


@dataclass(frozen=True)
class CredentialRecord:
    name: str
    secret_sha256: str
    created_at: datetime | None


class CredentialRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def by_hash(self, secret_sha256: str) -> CredentialRecord | None:
        row = self.conn.execute(
            select(api_credentials).where(api_credentials.c.secret_sha256 == secret_sha256)
        ).first()
        return (
            None if row is None else CredentialRecord(row.name, row.secret_sha256, row.created_at)
        )

    def by_name(self, name: str) -> CredentialRecord | None:
        row = self.conn.execute(
            select(api_credentials).where(api_credentials.c.name == name)
        ).first()
        return (
            None if row is None else CredentialRecord(row.name, row.secret_sha256, row.created_at)
        )

    def all(self) -> list[CredentialRecord]:
        rows = self.conn.execute(select(api_credentials).order_by(api_credentials.c.name))
        return [CredentialRecord(r.name, r.secret_sha256, r.created_at) for r in rows]

    def put(self, name: str, secret_sha256: str) -> None:
        """Create the credential, or give an existing one of that name a new secret."""
        if self.by_name(name) is None:
            self.conn.execute(
                insert(api_credentials).values(name=name, secret_sha256=secret_sha256)
            )
        else:
            self.conn.execute(
                update(api_credentials)
                .where(api_credentials.c.name == name)
                .values(secret_sha256=secret_sha256)
            )

    def remove(self, name: str) -> bool:
        result = self.conn.execute(delete(api_credentials).where(api_credentials.c.name == name))
        return result.rowcount > 0
