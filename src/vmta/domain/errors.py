"""The one exception tree of vmta.

Every error is either *temporary* (try again later: the same request may succeed) or
*permanent* (it will fail the same way until something changes). Each edge (HTTP, SMTP)
keeps one table that maps these to what its peer sees; internals never leak.
Replies from remote SMTP servers are values (see ``smtp_reply``), not exceptions.
"""

from __future__ import annotations


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


class ValidationFailed(PermanentError):
    """One or more field rules are broken. ``messages`` holds one sentence per problem."""

    def __init__(self, messages: list[str] | str) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))


class NotFound(PermanentError):
    """No record exists with the given key."""

    def __init__(self, message: str = "Record not found.") -> None:
        self.message = message
        super().__init__(message)


class Unauthorized(PermanentError):
    """Credentials are missing or wrong."""
