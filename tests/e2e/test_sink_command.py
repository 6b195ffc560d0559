"""`vmta sink` as a real process, talked to with smtplib: what it prints, what it keeps,
and how it treats AUTH."""

from __future__ import annotations

import mailbox
import re
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.serve_process import VMTA, environment, wait_until

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


class Sink:
    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.log_path = tmp_path / "sink.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(VMTA), "sink", "--listen", "127.0.0.1:0", *args],
                cwd=tmp_path,
                env=environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        found: list[str] = []

        def listening() -> bool:
            found[:] = LISTENING.findall(self.output())
            if self.proc.poll() is not None:
                pytest.fail(f"vmta sink exited with {self.proc.returncode}:\n{self.output()}")
            return bool(found)

        wait_until(listening, 20.0, "vmta sink to listen")
        self.port = int(found[0])

    def output(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def messages(self) -> list[str]:
        return [line for line in self.output().splitlines() if " message " in line]

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=10)


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[list[Sink]]:
    started: list[Sink] = []
    yield started
    for sink in started:
        if sink.proc.poll() is None:
            sink.proc.kill()
            sink.proc.wait()


def test_prints_each_message_and_stops_cleanly_on_sigterm(
    tmp_path: Path, sinks: list[Sink]
) -> None:
    sink = Sink(tmp_path)
    sinks.append(sink)
    with smtplib.SMTP("127.0.0.1", sink.port) as client:
        client.ehlo()
        assert not client.has_extn("auth")  # no --auth: no AUTH offered
        assert client.sendmail("a@example.com", ["b@example.net", "c@example.net"], MESSAGE) == {}
    assert sink.stop() == 0
    [line] = sink.messages()
    assert (
        "message 1 from 127.0.0.1 auth=- mail_from=<a@example.com>"
        f" rcpt_to=<b@example.net>,<c@example.net> size={len(MESSAGE)}"
    ) in line
    assert "stopped after 1 message(s)" in sink.output()


def test_auth_is_required_and_checked_and_the_password_never_printed(
    tmp_path: Path, sinks: list[Sink]
) -> None:
    sink = Sink(tmp_path, "--auth", "relayuser:s3cret-pw")
    sinks.append(sink)
    with smtplib.SMTP("127.0.0.1", sink.port) as client:
        client.ehlo()
        assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        assert refused.value.smtp_code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("relayuser", "wrong-pw-xyz")
        client.login("relayuser", "s3cret-pw")
        client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
    sink.stop()
    [line] = sink.messages()
    assert "auth=relayuser" in line
    assert "refused for user 'relayuser'" in sink.output()
    assert "s3cret-pw" not in sink.output() and "wrong-pw-xyz" not in sink.output()


@pytest.mark.parametrize("where", ["--maildir", "--mbox", "--dir"])
def test_keeps_messages_with_the_envelope_recorded(
    tmp_path: Path, sinks: list[Sink], where: str
) -> None:
    target = tmp_path / "kept"
    sink = Sink(tmp_path, where, str(target))
    sinks.append(sink)
    with smtplib.SMTP("127.0.0.1", sink.port) as client:
        client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
    sink.stop()
    if where == "--maildir":
        kept = [bytes(m) for m in mailbox.Maildir(target, create=False)]
    elif where == "--mbox":
        kept = [bytes(m) for m in mailbox.mbox(target, create=False)]
    else:
        kept = [path.read_bytes() for path in sorted(target.iterdir())]
    assert len(kept) == 1
    text = kept[0].replace(b"\r\n", b"\n")
    assert text.startswith(b"Return-Path: <a@example.com>\nDelivered-To: b@example.net\n")
    assert b"Subject: hi\n\nhello\n" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "0.0.0.0:0", "--auth", "u:p"], "--auth needs a loopback --listen address"),
        (["--auth", "nopassword"], "--auth must be USER:PASSWORD"),
        (["--listen", "nowhere"], "--listen must be HOST:PORT"),
        (["--maildir", "a", "--mbox", "b"], "at most one of --maildir, --mbox and --dir"),
    ],
)
def test_bad_flags_are_refused_with_a_reason(tmp_path: Path, args: list[str], message: str) -> None:
    ran = subprocess.run(
        [str(VMTA), "sink", *args],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 2
    assert message in ran.stderr
