"""The SMTP AUTH credential check has a deadline, as every database wait on the
injection path: a database that went silent costs the client the deadline, then a
temporary error (the client gets 421 4.3.0), and it is not counted as a guesser."""

from __future__ import annotations

import threading

import pytest

from vmta.domain.errors import TemporaryError
from vmta.smtp.auth_gate import AuthGate

pytestmark = pytest.mark.one_database


async def test_a_check_that_hangs_ends_in_a_temporary_error() -> None:
    released = threading.Event()

    def hanging(_name: str, _secret: str) -> bool:
        released.wait(10)  # bounded: the test releases it
        return True

    gate = AuthGate(hanging, deadline=0.2)
    try:
        with pytest.raises(TemporaryError):
            await gate.verify("10.0.0.1", "submitter", "secret")
    finally:
        released.set()
    assert gate.delays.delay("10.0.0.1", gate.now()) == 0  # not counted as a failure
