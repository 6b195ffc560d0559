"""`vmta queue list | show | retry | delete`, run as subprocesses against the database of
a real `vmta serve` (SQLite in its data directory, or PostgreSQL), while it runs and after
it has stopped. What the commands show is compared with what the API shows."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serve_process import (
    ServeFactory,
    ServeProcess,
    environment,
    relay_to,
    vmta,
    wait_until,
)
from tests.peers.sink import RecordingSink

DEFERRED = "deferred@sink.test"
REFUSED = "refused@sink.test"
DELIVERED = "delivered@sink.test"


def send(port: int, rcpt: str, sender: str = "sender@client.test") -> str:
    """One message to ``rcpt``; its queue id from the 250 reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail(sender)
        client.rcpt(rcpt)
        code, reply = client.data(f"Subject: to {rcpt}\r\n\r\nbody\r\n".encode())
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]


def recipient(server: ServeProcess, queue_id: str) -> dict[str, Any]:
    message = server.get(f"/api/messages/{queue_id}")["message"]
    (only,) = message["recipients"]
    return dict(only)


def ok(serve: ServeFactory, *args: str) -> str:
    result = serve.cli("queue", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def spool(serve: ServeFactory, sink: RecordingSink) -> tuple[ServeProcess, dict[str, str]]:
    """A running server whose spool holds one deferred, one delivered and one failed
    message. Retries wait an hour, so only an operator's retry sends the deferred one."""
    serve.configure(VMTA_RETRY_BACKOFF="3600")
    server = serve.start()
    relay_to(server, sink.port)
    sink.script("RCPT", "451 4.2.1 Mailbox busy, try later")
    sink.refuse(REFUSED, "550 5.1.1 No such user")
    ids = {DEFERRED: send(serve.smtp_port, DEFERRED)}
    wait_until(lambda: recipient(server, ids[DEFERRED])["attempts"] == 1, 60, "a deferral")
    # A null sender (<>): its failure causes no bounce, which would be a fourth message.
    ids[REFUSED] = send(serve.smtp_port, REFUSED, sender="")
    ids[DELIVERED] = send(serve.smtp_port, DELIVERED)
    counts = {"queued": 1, "delivered": 1, "failed": 1}
    wait_until(
        lambda: server.get("/api/queue")["recipients"] == counts,
        60,
        "one delivered and one failed recipient",
    )
    return server, ids


def test_list_and_show_read_the_spool(
    serve: ServeFactory, spool: tuple[ServeProcess, dict[str, str]]
) -> None:
    """What only reads the spool, on one spool (its setup is a `vmta serve` and three
    deliveries): three tests before, merged to set it up once."""
    list_shows_counts_by_state_and_virtual_mta_then_messages(serve, spool)
    list_filters_by_state_and_limits(serve, spool)
    list_json_and_show_carry_what_the_api_shows(serve, spool)


def list_shows_counts_by_state_and_virtual_mta_then_messages(
    serve: ServeFactory, spool: tuple[ServeProcess, dict[str, str]]
) -> None:
    _, ids = spool

    lines = ok(serve, "list").splitlines()

    assert lines[0] == (
        "recipients: 1 queued (0 ready, 1 deferred, 0 waiting), 1 delivered, 1 failed"
    )
    assert lines[1].split() == ["VIRTUAL", "MTA", "QUEUED", "DELIVERED", "FAILED"]
    assert lines[2].split() == ["sink", "1", "1", "1"]
    assert lines[4].split()[:2] == ["QUEUE", "ID"]
    rows = [line.split() for line in lines[5:]]
    # Oldest first: id, date, time, recipients, queued, size, selector, sender.
    assert [row[0] for row in rows] == [ids[DEFERRED], ids[REFUSED], ids[DELIVERED]]
    assert [row[3:5] for row in rows] == [["1", "1"], ["1", "0"], ["1", "0"]]
    assert [row[7] for row in rows] == ["sender@client.test", "<>", "sender@client.test"]


def list_filters_by_state_and_limits(
    serve: ServeFactory, spool: tuple[ServeProcess, dict[str, str]]
) -> None:
    _, ids = spool

    def listed(*args: str) -> list[str]:
        return [line.split()[0] for line in ok(serve, "list", *args).splitlines()[5:]]

    assert listed("--state", "queued") == [ids[DEFERRED]]
    assert listed("--state", "failed") == [ids[REFUSED]]
    assert listed("--state", "delivered") == [ids[DELIVERED]]
    assert listed("--limit", "2") == [ids[DEFERRED], ids[REFUSED]]


def list_json_and_show_carry_what_the_api_shows(
    serve: ServeFactory, spool: tuple[ServeProcess, dict[str, str]]
) -> None:
    server, ids = spool

    listed = json.loads(ok(serve, "list", "--json"))
    api_queue = server.get("/api/queue")
    del api_queue["engine"]  # the serving process's memory: not in the database
    assert listed == {"queue": api_queue, "messages": server.get("/api/messages")["messages"]}

    for queue_id in ids.values():
        shown = json.loads(ok(serve, "show", queue_id))
        assert shown == server.get(f"/api/messages/{queue_id}")["message"]
    deferred = json.loads(ok(serve, "show", ids[DEFERRED]))
    assert deferred["mail_from"] == "sender@client.test"
    (rcpt,) = deferred["recipients"]
    assert (rcpt["address"], rcpt["state"], rcpt["attempts"]) == (DEFERRED, "queued", 1)
    (attempt,) = deferred["attempts"]
    assert attempt["outcome"] == "deferred"
    assert attempt["reply"].startswith("451")
    assert attempt["virtual_mta"] == "sink"


def test_retry_is_picked_up_by_the_running_engine(
    serve: ServeFactory, sink: RecordingSink, spool: tuple[ServeProcess, dict[str, str]]
) -> None:
    server, ids = spool
    assert [m.rcpt_tos for m in sink.messages] == [[DELIVERED]]

    out = ok(serve, "retry", ids[DEFERRED])

    assert out.startswith(f"1 recipient(s) of {ids[DEFERRED]} due now")
    # Nothing wakes the engine: its poll finds the recipient due (the backoff is an hour).
    wait_until(lambda: len(sink.messages) == 2, 60, "the retried message at the sink")
    # (The sink lists by connection; the retry may reuse the first, still open.)
    assert sorted(m.rcpt_tos for m in sink.messages) == [[DEFERRED], [DELIVERED]]
    wait_until(lambda: recipient(server, ids[DEFERRED])["state"] == "delivered", 60, "its outcome")
    # A message with nothing queued has nothing to retry.
    assert ok(serve, "retry", ids[DELIVERED]).startswith(f"{ids[DELIVERED]} has no queued")


def test_delete_removes_the_message(
    serve: ServeFactory, spool: tuple[ServeProcess, dict[str, str]]
) -> None:
    server, ids = spool

    assert ok(serve, "delete", ids[REFUSED]) == f"deleted {ids[REFUSED]}\n"

    assert server.api().get(f"/api/messages/{ids[REFUSED]}").status_code == 404
    assert server.get("/api/queue")["recipients"] == {"queued": 1, "delivered": 1, "failed": 0}
    again = serve.cli("queue", "delete", ids[REFUSED])
    assert (again.returncode, again.stderr) == (
        1,
        f"vmta: no message with queue id {ids[REFUSED]!r}\n",
    )


def test_commands_work_when_vmta_is_not_running(
    serve: ServeFactory, spool: tuple[ServeProcess, dict[str, str]]
) -> None:
    server, ids = spool
    shown_while_running = ok(serve, "show", ids[DEFERRED])
    assert server.stop() == 0

    assert ok(serve, "show", ids[DEFERRED]) == shown_while_running
    assert ok(serve, "list").splitlines()[0] == (
        "recipients: 1 queued (0 ready, 1 deferred, 0 waiting), 1 delivered, 1 failed"
    )
    assert ok(serve, "retry", ids[DEFERRED]).startswith("1 recipient(s)")
    assert ok(serve, "delete", ids[DELIVERED]) == f"deleted {ids[DELIVERED]}\n"
    rows = ok(serve, "list").splitlines()[5:]
    assert [row.split()[0] for row in rows] == [ids[DEFERRED], ids[REFUSED]]


def test_an_empty_spool_and_unknown_ids(serve: ServeFactory) -> None:
    # No server has run: the command creates and migrates the database like `vmta db`.
    out = ok(serve, "list")
    assert out == (
        "recipients: 0 queued (0 ready, 0 deferred, 0 waiting), 0 delivered, 0 failed\n"
        "\n"
        "no messages\n"
    )
    for action in ("show", "retry", "delete"):
        result = serve.cli("queue", action, "0123456789ABCDEF")
        assert (result.returncode, result.stdout) == (1, ""), action
        assert result.stderr == "vmta: no message with queue id '0123456789ABCDEF'\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--state", "deferred"], "argument --state: invalid choice: 'deferred'"),
        (["list", "--limit", "0"], "argument --limit: must be an integer from 1 to 10000"),
        (["list", "--limit", "10001"], "argument --limit: must be an integer from 1 to 10000"),
        (["show"], "the following arguments are required: ID"),
        (["requeue", "X"], "invalid choice: 'requeue'"),
    ],
)
def test_bad_usage(tmp_path: Path, args: list[str], message: str) -> None:
    result = vmta("queue", *args, "--data-dir", str(tmp_path), env=environment(), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_envelope_text_cannot_drive_the_terminal(serve: ServeFactory, sink: RecordingSink) -> None:
    server = serve.start()
    relay_to(server, sink.port)
    with smtplib.SMTP("127.0.0.1", serve.smtp_port, timeout=30) as client:
        # A control character in a path is refused at MAIL (501 5.1.7): never stored.
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            client.sendmail("evil\x1b[2J@client.test", [DELIVERED], b"Subject: hi\r\n\r\nx\r\n")
        assert caught.value.smtp_code == 501
        client.rset()
        refused = client.sendmail(  # raises unless DATA got 250
            "good@client.test",
            [DELIVERED],
            b"X-GreenArrow-MtaID: odd\x1b[31m\r\nSubject: hi\r\n\r\nbody\r\n",
        )
    assert refused == {}

    out = ok(serve, "list")

    # A selector that cannot name a VirtualMTA is not kept, so it cannot be printed.
    (message,) = server.get("/api/messages")["messages"]
    assert message["mail_from"] == "good@client.test"
    assert message["vmta_selector"] is None
    assert "\x1b" not in out


@pytest.mark.slow(45)
def test_bulk_hold_release_delete_and_search(
    serve: ServeFactory, spool: tuple[ServeProcess, dict[str, str]]
) -> None:
    server, ids = spool

    def listed(*args: str) -> list[str]:
        return [line.split()[0] for line in ok(serve, "list", *args).splitlines()[5:]]

    assert listed("--recipient", DEFERRED.upper()) == [ids[DEFERRED]]
    assert listed("--sender", "sender@client.test") == [ids[DEFERRED], ids[DELIVERED]]
    assert ok(serve, "hold", "--domain", "sink.test") == "1 recipient(s) held\n"
    assert recipient(server, ids[DEFERRED])["waiting_reason"] == "held by an operator"
    assert ok(serve, "retry", "--state", "queued") == "0 recipient(s) due now\n"
    assert ok(serve, "release", "--state", "held") == "1 recipient(s) released\n"
    assert ok(serve, "delete", "--state", "failed", "--sender", "") == (
        "1 recipient(s) deleted, 1 message(s) removed\n"
    )
    assert server.api().get(f"/api/messages/{ids[REFUSED]}").status_code == 404
    both = serve.cli("queue", "delete", ids[DELIVERED], "--state", "delivered")
    assert (both.returncode, both.stderr) == (2, "vmta: give a queue id or a selection, not both\n")
    none = serve.cli("queue", "hold")
    assert none.returncode == 2 and "give at least one of" in none.stderr


def test_list_into_head_is_quiet(tmp_path: Path) -> None:
    """`vmta queue list | head -1`: the reader leaves early; no BrokenPipe traceback."""
    from vmta.domain.attempts.spool_records import NewMessage
    from vmta.store.spool import SqlSpool
    from vmta.store.store import Store

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    store = Store.open(f"sqlite:///{data / 'vmta.db'}")
    batch = [
        NewMessage(
            id=f"Q{n:06d}",
            received_at=1e9 + n,
            expires_at=2e9,
            mail_from="s@x.test",
            recipients=["r@y.test"],
            body=b"Subject: x\r\n\r\nx\r\n",
        )
        for n in range(3000)
    ]
    SqlSpool(store, "test").accept(batch, lease_until=None)
    store.close()
    vmta_bin = Path(sys.executable).with_name("vmta")
    result = subprocess.run(
        f"'{vmta_bin}' queue list --limit 10000 --data-dir '{data}' | head -1",
        shell=True,  # a fixed pipeline of our own
        executable="/bin/bash",
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.startswith("recipients: 3000 queued")
    assert result.stderr == "", result.stderr
