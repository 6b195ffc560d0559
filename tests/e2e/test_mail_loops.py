"""No mail loops, end to end on `vmta serve` (SQLite and PostgreSQL): a relay server whose
destination is vmta's own SMTP port, a default VirtualMTA whose destination is vmta's own
API port, an MX answer of 127.0.0.1 and a ``[127.0.0.1]`` literal each end with exactly
one permanent failure (5.4.6), its bounce and its events; a message with 101 Received
fields is refused at DATA (SMTP and /v1/inject). Deliveries go to vmta's own SMTP port
(``VMTA_DELIVERY_PORT``), so any loop would be accepted again: ``/metrics`` shows that
nothing but the test's own injections was accepted."""

from __future__ import annotations

import smtplib
from collections import Counter
from typing import Any

from tests.e2e.serve_process import GA, ServeFactory, ServeProcess, wait_until
from tests.e2e.test_events_and_metrics import samples, value
from tests.peers.dns import DnsmasqServer, DnsZone
from tests.peers.http_receiver import HttpReceiver

SENDER = "sender@src.test"


def inject(
    port: int, recipient: str, subject: str, *, hops: int = 0, selector: str | None = None
) -> tuple[int, bytes]:
    """One message over SMTP; the reply to DATA."""
    received = "".join(f"Received: from h{i}.test by h{i + 1}.test; now\r\n" for i in range(hops))
    if selector is not None:
        received += f"X-GreenArrow-MtaID: {selector}\r\n"
    data = f"{received}From: {SENDER}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail(SENDER)
        code, _ = client.rcpt(recipient)
        assert code == 250, recipient
        return client.data(data)


def relay(server: ServeProcess, name: str, port: int) -> None:
    created = server.api().post(
        f"{GA}/relay_servers",
        json={
            "relay_server": {
                "name": name,
                "source_ip": {"ip": "127.0.0.1", "hostname": "out.vmta.test"},
                "destination": {"hostname": "127.0.0.1", "port": port},
                "throttle_limits": {"max_concurrent_connections": 0, "max_messages_per_hour": 0},
            }
        },
    )
    assert created.status_code == 200 and created.json()["success"], created.text


def events_of(receiver: HttpReceiver, address: str) -> Counter[str]:
    return Counter(
        e["status"] if e["event_type"] == "delivery_attempt" else e["event_type"]
        for e in receiver.accepted_events()
        if e.get("email") == address
    )


def failure_of(receiver: HttpReceiver, address: str) -> dict[str, Any]:
    (failure,) = [
        e
        for e in receiver.accepted_events()
        if e.get("email") == address
        and e["event_type"] == "delivery_attempt"
        and e["status"] == "failure"
    ]
    return failure


def test_every_loop_ends_in_one_permanent_failure(
    serve: ServeFactory, dnsmasq: DnsmasqServer, http_receiver: HttpReceiver
) -> None:
    dnsmasq.start(
        DnsZone()
        .mx("loop.test", "mx.loop.test", 10)
        .host("mx.loop.test", "127.0.0.1")
        .mx("src.test", "mx.src.test", 10)  # where the bounces go: loopback too
        .host("mx.src.test", "127.0.0.1")
    )
    serve.configure(
        VMTA_DNS_SERVERS=dnsmasq.address,
        VMTA_DELIVERY_PORT=str(serve.smtp_port),  # any MX delivery would reach vmta itself
        VMTA_MX_ALLOW_LOOPBACK="false",  # production's default (the harness allows them)
        VMTA_EVENTS_HTTP_URL=http_receiver.url,
        VMTA_EVENTS_HTTP_BATCH="10",
    )
    server = serve.start()
    before = value(samples(server), "vmta_messages_accepted_total", source="smtp")
    assert before == 0

    # Everything configured before the first message (the data plane reads the
    # configuration through a one-second cache).
    direct = server.api().post(
        f"{GA}/ip_addresses",
        json={"ip_address": {"name": "direct", "ip": "127.0.0.1", "hostname": "out.vmta.test"}},
    )
    assert direct.status_code == 200, direct.text
    relay(server, "to-myself", serve.smtp_port)  # a relay server to vmta's own SMTP port
    api_port = int(server.api_address.rsplit(":", 1)[1])
    relay(server, "to-my-api", api_port)  # the default VirtualMTA: to vmta's own API port
    default = server.api().put(
        f"{GA}/virtual_mtas/default", json={"virtual_mta": {"name": "to-my-api"}}
    )
    assert default.status_code == 200, default.text

    # MX delivery from an IP address: to the MX (127.0.0.1) and to the literal.
    for recipient in ("user@loop.test", "user@[127.0.0.1]"):
        assert inject(serve.smtp_port, recipient, recipient, selector="direct")[0] == 250
    assert inject(serve.smtp_port, "user@relay.test", "relay", selector="to-myself")[0] == 250
    assert inject(serve.smtp_port, "user@default.test", "default")[0] == 250
    # 101 Received fields: refused at DATA, nothing stored; 100 would do.
    code, reply = inject(serve.smtp_port, "user@hops.test", "hops", hops=101)
    assert (code, reply) == (554, b"5.4.6 Too many hops (mail loop?)")
    mime = "".join(f"Received: from h{i}.test; now\r\n" for i in range(101)) + "Subject: x\r\n\r\nx"
    injected = server.api().post(
        "/v1/inject", json={"envelope": SENDER, "recipient": "user@hops.test", "mime": mime}
    )
    assert injected.status_code == 400 and "Too many hops" in injected.text, injected.text

    looping = {
        "user@loop.test": "loops back to myself: its mail hosts resolve only to loopback",
        "user@[127.0.0.1]": "loops back to myself: its mail hosts resolve only to loopback",
        "user@relay.test": f"loops back to myself (127.0.0.1:{serve.smtp_port})",
        "user@default.test": f"loops back to myself (127.0.0.1:{api_port})",
    }
    for address in looping:
        wait_until(
            lambda a=address: events_of(http_receiver, a) == {"failure": 1, "bounce_all": 1},  # type: ignore[misc]
            60,
            f"one failure and one bounce event for {address}",
        )
    for address, text in looping.items():
        failure = failure_of(http_receiver, address)
        assert failure["message"].startswith("554 5.4.6 ") and text in failure["message"], failure
    # Each failure's notification to the sender went the same way: refused as a loop
    # too (to src.test's loopback MX, then by the looping default), never bounced again.
    wait_until(
        lambda: events_of(http_receiver, SENDER)["failure"] == len(looping),
        60,
        "the notifications fail as loops too",
    )
    assert events_of(http_receiver, SENDER) == {"failure": len(looping)}
    after = samples(server)
    assert value(after, "vmta_messages_accepted_total", source="smtp") == len(looping)
    queue = server.get("/api/queue")["recipients"]
    assert queue["failed"] == 2 * len(looping) and queue["delivered"] == 0, queue
