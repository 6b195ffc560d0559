"""The one exception tree of vmta.

Every error is either *temporary* (try again later: the same request may succeed) or
*permanent* (it will fail the same way until something changes). Each edge (HTTP, SMTP)
keeps one table that maps these to what its peer sees; internals never leak.
Replies from remote SMTP servers are values (see ``smtp_reply``), not exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vmta.domain.config.virtual_mta import Ref


class VmtaError(Exception):
    """Base of every error vmta raises on purpose."""


class TemporaryError(VmtaError):
    """The operation may succeed if tried again later."""


class PermanentError(VmtaError):
    """The operation will fail the same way until its input changes."""


class InvalidRequest(PermanentError):
    """The request as a whole is malformed (not JSON, wrong wrapper, bad query parameter)."""

    def __init__(self, messages: list[str] | str) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))


@dataclass(frozen=True)
class PartialRecord:
    """What could still be read of a record whose document broke field rules: its name
    and its references by field path (``redirect``, ``default.deliver_through[0].virtual_mta``),
    each only if it was read well. The store checks them too, so that a request learns of
    a taken name or an unknown reference along with its field problems (contract §2.1)."""

    name: str | None = None
    references: Mapping[str, Ref] = field(default_factory=dict)


class ValidationFailed(PermanentError):
    """One or more field rules are broken. ``messages`` holds one sentence per problem;
    ``partial``, when given, is what could be read of the refused record."""

    def __init__(self, messages: list[str] | str, partial: PartialRecord | None = None) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        self.partial = partial
        super().__init__("; ".join(self.messages))


class NotFound(PermanentError):
    """No record exists with the given key."""

    def __init__(self, message: str = "Record not found.") -> None:
        self.message = message
        super().__init__(message)


class Unauthorized(PermanentError):
    """Credentials are missing or wrong."""
