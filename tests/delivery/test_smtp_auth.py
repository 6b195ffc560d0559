"""SMTP AUTH on the injection listener: submit credentials only (admin ones when the
operator allows it), checked in a worker thread, positive answers cached, and repeated
failures from one client slowed down. A real SMTP client (smtplib) talks to a real
listener; the failure delay is observed through the gate's injectable sleep, never timed."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from typing import Any

import pytest

from tests.conftest import TEST_SECRET
from tests.delivery.conftest import SUBMIT_LOGIN, RunningPlane
from vmta.smtp.auth_gate import AuthGate


def login(port: int, name: str, secret: str) -> int:
    """One AUTH PLAIN on a fresh connection (smtplib's login() would try every
    mechanism in turn); the reply code."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.user, client.password = name, secret
        try:
            code, _ = client.auth("PLAIN", client.auth_plain)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code
        return code


async def test_submit_credential_authenticates_admin_does_not(plane: RunningPlane) -> None:
    assert await asyncio.to_thread(login, plane.smtp_port, *SUBMIT_LOGIN) == 235
    # The admin credential can read relay passwords over the API: not for senders.
    assert await asyncio.to_thread(login, plane.smtp_port, "admin", TEST_SECRET) == 535


async def test_admin_credential_authenticates_when_allowed(plane_factory: Any) -> None:
    running: RunningPlane = await plane_factory(smtp_auth_admin=True)
    assert await asyncio.to_thread(login, running.smtp_port, "admin", TEST_SECRET) == 235


class Recorder:
    def __init__(self, gate: AuthGate) -> None:
        self.sleeps: list[float] = []
        self.threads: set[int] = set()
        self.checks = 0
        check = gate.check

        def recording_check(name: str, secret: str) -> bool:
            self.threads.add(threading.get_ident())
            self.checks += 1
            return check(name, secret)

        async def no_wait(seconds: float) -> None:
            self.sleeps.append(seconds)

        gate.check = recording_check
        gate.sleep = no_wait


async def test_repeated_failures_are_delayed_and_the_right_secret_still_works(
    plane: RunningPlane,
) -> None:
    recorder = Recorder(plane.plane.auth_gate)
    name, secret = SUBMIT_LOGIN

    def guess() -> list[int]:
        return [login(plane.smtp_port, name, f"wrong-{i}") for i in range(30)]

    codes = await asyncio.to_thread(guess)
    assert codes == [535] * 30
    # Free for the first three failures, then 1 s, doubling, bounded.
    assert recorder.sleeps[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert len(recorder.sleeps) == 27 and max(recorder.sleeps) == 30.0

    assert await asyncio.to_thread(login, plane.smtp_port, name, secret) == 235
    assert len(recorder.sleeps) == 28  # that attempt waited too: no fast-answer oracle
    # A success forgets the failures.
    assert await asyncio.to_thread(login, plane.smtp_port, name, "wrong") == 535
    assert len(recorder.sleeps) == 28
    # Never on the event loop's thread.
    assert threading.get_ident() not in recorder.threads


async def test_positive_answers_are_cached(plane: RunningPlane) -> None:
    recorder = Recorder(plane.plane.auth_gate)
    for _ in range(5):
        assert await asyncio.to_thread(login, plane.smtp_port, *SUBMIT_LOGIN) == 235
    assert recorder.checks == 1
    # A wrong secret is never answered from the cache.
    assert await asyncio.to_thread(login, plane.smtp_port, SUBMIT_LOGIN[0], "nope") == 535
    assert recorder.checks == 2


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_both_mechanisms_checked(plane: RunningPlane, mechanism: str) -> None:
    def run() -> tuple[int, int]:
        with smtplib.SMTP("127.0.0.1", plane.smtp_port, timeout=30) as client:
            client.ehlo()
            client.user, client.password = SUBMIT_LOGIN
            method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
            good = client.auth(mechanism, method)[0]
        with smtplib.SMTP("127.0.0.1", plane.smtp_port, timeout=30) as client:
            client.ehlo()
            client.user, client.password = SUBMIT_LOGIN[0], "bad"
            method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
            try:
                bad = client.auth(mechanism, method)[0]
            except smtplib.SMTPAuthenticationError as exc:
                bad = exc.smtp_code
        return good, bad

    assert await asyncio.to_thread(run) == (235, 535)
