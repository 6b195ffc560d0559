"""DKIM signing seen by a real SMTP sink and checked by an independent verifier (dkimpy)
against the DNS record vmta's own API returned for the key (``v=DKIM1; `` prepended, as
real clients publish it): default keys by From and by Sender, X-GreenArrow-DKIM (selector,
array, use_key_from, duplicates), send.json headers, MailerQ per-message keys with every
canonicalization, awkward bodies, redirects and routing rules. A tampered copy of every
delivered message must fail verification, so the checks can fail."""

from __future__ import annotations

import asyncio
import email
import json
import logging
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import dkim
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import func, select

from tests.conftest import TEST_SECRET
from tests.delivery.conftest import RunningPlane, eventually, insert, rule
from tests.delivery.test_amqp_outbox import AMQP_URL, channel, publish, queue_name
from tests.peers.sink import RecordingSink, SeenTransaction
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.delivery.ingress.amqp_outbox import OutboxConsumer
from vmta.domain.config.virtual_mta import RandomizationType, Ref
from vmta.domain.message.arrival import Arrival
from vmta.runtime import logs
from vmta.signing import keys as key_material
from vmta.store.tables import messages

__all__ = ["channel", "queue_name"]  # RabbitMQ fixtures, shared with the outbox tests
GA = "/ga/api/v3/eng/dkim_keys"
# Awkward bodies (RFC 6376 §3.4.3-3.4.4, RFC 5321 §4.5.2): leading dots, trailing white
# space, a long line, 8-bit text, blank lines at the end.
BODY = (
    ".leading dot\r\n..two dots\r\ntrailing spaces   \r\ntab\tand  runs \t \r\n"
    + "x" * 990
    + "\r\n8-bit: é ü 中文\r\n\r\n\r\n\r\n"
)


@dataclass
class Dns:
    """TXT records by name, as an operator publishes them from the API's answer."""

    records: dict[str, str] = field(default_factory=dict)

    def publish(self, key: dict[str, Any]) -> None:
        record = key["dns"]["public_key"]
        assert record["type"] == "TXT" and not record["value"].startswith("v=")
        self.records[record["name"].lower()] = "v=DKIM1; " + record["value"]

    def __call__(self, name: bytes | str, timeout: int = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        found = self.records.get(text.rstrip(".").lower())
        return None if found is None else found.encode()


@dataclass
class World:
    plane: RunningPlane
    sink: RecordingSink
    api: httpx.AsyncClient
    dns: Dns

    async def key(self, **record: Any) -> dict[str, Any]:
        response = await self.api.post(GA, json={"dkim_key": record})
        assert response.status_code == 200, response.text
        created: dict[str, Any] = response.json()["data"]["dkim_key"]
        self.dns.publish(created)
        signer = self.plane.plane.intake.signer
        assert signer is not None
        signer.keyring.invalidate()
        return created

    async def delivered(self, count: int) -> list[SeenTransaction]:
        """The first ``count`` messages the sink received, in the order they were sent
        (each test message carries ``Keywords: case<n>``, n from 1)."""
        seen: list[SeenTransaction] = await eventually(
            lambda: len(self.sink.messages) >= count and self.sink.messages,
            what=f"{count} deliveries",
        )
        return sorted(seen, key=lambda t: t.data.split(b"Keywords: case", 1)[-1][:4])


@pytest.fixture
async def world(plane: RunningPlane, sink: RecordingSink) -> AsyncIterator[World]:
    plane.add_relay("relay", sink.port)
    plane.set_default("relay")
    app = create_app(ApiPorts(plane.store, data_plane=plane.plane.api_hooks()))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://vmta",
        headers={"Authorization": f"Bearer {TEST_SECRET}"},
    ) as client:
        yield World(plane, sink, client, Dns())


def signatures(data: bytes) -> list[dict[bytes, bytes]]:
    """The tags of each DKIM-Signature field, top first."""
    parsed = email.message_from_bytes(data)
    found = []
    for value in parsed.get_all("DKIM-Signature") or []:
        text = "".join(str(value).split())
        tags = dict(part.split("=", 1) for part in text.split(";") if part)
        found.append({k.encode(): v.encode() for k, v in tags.items()})
    return found


def verifies(data: bytes, index: int, dns: Dns) -> bool:
    """dkimpy's verdict on the signature ``index`` (0: the top one)."""
    try:
        return bool(dkim.DKIM(data).verify(idx=index, dnsfunc=dns))
    except dkim.DKIMException:
        return False


def verify_all(data: bytes, dns: Dns) -> list[dict[bytes, bytes]]:
    """Every signature verifies; a tampered body and a tampered Subject do not."""
    tags = signatures(data)
    assert tags, "the delivered message carries no DKIM-Signature"
    for index in range(len(tags)):
        assert verifies(data, index, dns), (index, data[:600])
        tampered_body = data.replace(b"trailing", b"Trailing").replace(b"body", b"Body")
        assert tampered_body != data and not verifies(tampered_body, index, dns)
        tampered_head = data.replace(b"Subject: ", b"Subject: re: ", 1)
        assert tampered_head != data and not verifies(tampered_head, index, dns)
    return tags


CASES = iter(range(1000, 10000))


def message(head: str, body: str = BODY) -> bytes:
    case = next(CASES)
    return (
        head + f"To: rcpt@dest.test\r\nSubject: body test\r\nKeywords: case{case}\r\n\r\n" + body
    ).encode()


async def test_default_key_by_from_and_by_sender(world: World) -> None:
    by_from = await world.key(
        domain="from.test", selector="default", default_for_domain=True, key={"bits": 1024}
    )
    await world.key(domain="from.test", selector="other", key={"bits": 1024})
    await world.key(
        domain="Sender.test", selector="ed", default_for_domain=True, key={"type": "ed25519"}
    )
    await world.plane.asend(message("From: Ann <ann@from.test>\r\n"))
    await world.plane.asend(message("From: ann@from.test\r\nSender: Bob <bob@sender.TEST>\r\n"))
    await world.plane.asend(message("From: nobody@unsigned.test\r\n"))
    first, second, third = await world.delivered(3)

    tags = verify_all(first.data, world.dns)
    assert len(tags) == 1 and tags[0][b"d"] == b"from.test" and tags[0][b"s"] == b"default"
    assert tags[0][b"a"] == b"rsa-sha256" and tags[0][b"c"] == b"relaxed/relaxed"
    assert b"t" in tags[0] and b"l" not in tags[0]
    assert tags[0][b"h"].split(b":")[:2] == [b"from", b"from"]  # From over-signed
    assert {b"to", b"subject"} <= set(tags[0][b"h"].split(b":"))
    tags = verify_all(second.data, world.dns)
    assert [(t[b"d"], t[b"s"], t[b"a"]) for t in tags] == [
        (b"sender.test", b"ed", b"ed25519-sha256")
    ]
    assert signatures(third.data) == []
    # The stored copy is what was delivered: signed once, before the first attempt.
    assert by_from["key"]["private"] not in first.data.decode("utf-8", "replace")


async def test_header_picks_selectors_arrays_and_use_key_from(world: World) -> None:
    await world.key(
        domain="from.test", selector="default", default_for_domain=True, key={"bits": 1024}
    )
    second = await world.key(domain="from.test", selector="second", key={"type": "ed25519"})
    # use_key_from: d=/s= as given, the key of another domain: publish that key there.
    world.dns.records["borrowed._domainkey.brand.test"] = (
        "v=DKIM1; " + second["dns"]["public_key"]["value"]
    )
    asked = [
        {"domain": "from.test", "selector": "second"},
        {"domain": "brand.test", "selector": "borrowed", "use_key_from": "from.test/second"},
        {"domain": "from.test", "selector": "second"},  # the same key again: signs once
    ]
    head = (
        "From: ann@from.test\r\n"
        f"X-GreenArrow-DKIM: {json.dumps(asked[:2])}\r\n"
        f"X-GreenArrow-DKIM: {json.dumps(asked[2])}\r\n"
    )
    await world.plane.asend(message(head))
    await world.plane.asend(
        message('From: ann@from.test\r\nX-GreenArrow-DKIM: {"from_domain": true}\r\n')
    )
    first, other = await world.delivered(2)
    tags = verify_all(first.data, world.dns)
    assert sorted((t[b"d"], t[b"s"]) for t in tags) == [
        (b"brand.test", b"borrowed"),
        (b"from.test", b"second"),
    ]  # the header replaces the default key (from.test/default signs nothing here)
    assert b"x-greenarrow" not in first.data.lower()
    tags = verify_all(other.data, world.dns)
    assert [(t[b"d"], t[b"s"]) for t in tags] == [(b"from.test", b"default")]


BAD_HEADERS = [
    ("not json", "is not valid JSON"),
    ('{"selector": "s"}', "domain is missing"),
    ('{"domain": "from.test", "selector": "nope"}', "does not exist: from.test/nope"),
    ('{"domain": "none.test"}', "does not exist: none.test (its default key)"),
    (json.dumps([{"domain": "from.test"}] * 11), "array of 1 to 10"),
    (json.dumps({"domain": "from.test", "use_key_from": "from.test"}), "selector is missing"),
    # Folded (RFC 5322 §2.2.3) across lines under the SMTP line limit; 4.5 KB unfolded.
    (
        '{"domain": "from.test", "selector": "' + "\r\n ".join(["x" * 500] * 9) + '"}',
        "shorter than 4 KB",
    ),
]


async def test_header_that_cannot_be_honoured_is_refused_at_data(world: World) -> None:
    await world.key(
        domain="from.test", selector="default", default_for_domain=True, key={"bits": 1024}
    )

    def refused(value: str) -> tuple[int, str]:
        data = message(f"From: ann@from.test\r\nX-GreenArrow-DKIM: {value}\r\n")
        with smtplib.SMTP("127.0.0.1", world.plane.smtp_port, timeout=30) as client:
            client.ehlo()
            client.mail("ann@from.test")
            client.rcpt("rcpt@dest.test")
            code, reply = client.data(data)
        return code, reply.decode()

    for value, reason in BAD_HEADERS:
        code, reply = await asyncio.to_thread(refused, value)
        assert code == 550 and reply.startswith("5.7.0"), (value, code, reply)
        assert "X-GreenArrow-DKIM" in reply and reason in reply, (value, reply)
    with world.plane.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(messages)).scalar_one() == 0


async def test_client_not_allowed_to_relay_cannot_pick_a_key(world: World) -> None:
    """Mail from a client that may not relay (inbound mail a mailbox forwards, say) is
    taken, its X-GreenArrow-DKIM removed and ignored, even one that would be refused, and
    nothing signs it: a signature vouches for the message. The same message from a relay
    client is signed as its header asks."""
    await world.key(
        domain="from.test", selector="default", default_for_domain=True, key={"bits": 1024}
    )
    await world.key(domain="from.test", selector="second", key={"bits": 1024})
    intake = world.plane.plane.intake
    picks = ('{"domain": "from.test", "selector": "second"}', "not json at all")
    for value in picks:
        data = message(f"From: ann@from.test\r\nX-GreenArrow-DKIM: {value}\r\n")
        arrival = Arrival("ann@from.test", ["rcpt@dest.test"], data, "192.0.2.7", "h", None,
                          False, may_relay=False)  # fmt: skip
        await intake.accept(arrival)
    data = message(f"From: ann@from.test\r\nX-GreenArrow-DKIM: {picks[0]}\r\n")
    await intake.accept(
        Arrival("ann@from.test", ["rcpt@dest.test"], data, "127.0.0.1", "h", None, False,
                may_relay=True)
    )  # fmt: skip
    *untrusted, trusted = await world.delivered(3)
    for seen in untrusted:
        assert signatures(seen.data) == []
        assert b"x-greenarrow" not in seen.data.lower()
    tags = verify_all(trusted.data, world.dns)
    assert [(t[b"d"], t[b"s"]) for t in tags] == [(b"from.test", b"second")]


async def test_send_json_headers_sign_and_refuse(world: World) -> None:
    await world.key(domain="from.test", selector="api", key={"bits": 1024})
    document: dict[str, Any] = {
        "message": {
            "html": "<p>body</p>",
            "text": "body text   \n.dot\n",
            "subject": "from send.json",
            "to": [{"email": "rcpt@dest.test"}],
            "from_email": "ann@from.test",
            "headers": {
                "X-GreenArrow-DKIM": json.dumps({"domain": "from.test", "selector": "api"})
            },
        }
    }
    response = await world.api.post("/api/v1/send.json", json=document)
    assert response.json()["success"] == 1, response.text
    (seen,) = await world.delivered(1)
    tags = verify_all(seen.data, world.dns)
    assert [(t[b"d"], t[b"s"]) for t in tags] == [(b"from.test", b"api")]

    document["message"]["headers"]["X-GreenArrow-DKIM"] = (
        '{"domain": "from.test", "selector": "gone"}'
    )
    response = await world.api.post("/api/v1/send.json", json=document)
    body = response.json()
    assert body["success"] == 0 and "X-GreenArrow-DKIM" in body["error"], body
    with world.plane.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(messages)).scalar_one() == 1


def pem_of(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


async def test_mailerq_per_message_keys_with_each_canonicalization(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await world.key(
        domain="from.test", selector="default", default_for_domain=True, key={"bits": 1024}
    )
    own = pem_of(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    material = key_material.imported(own)
    world.dns.records["mq._domainkey.mq.test"] = f"v=DKIM1; k=rsa; p={material.public}"
    mime = message("From: ann@from.test\r\n").decode()
    canons = ("simple/simple", "simple/relaxed", "relaxed/simple", "relaxed/relaxed", None)
    for canon in canons:
        wanted: dict[str, Any] = {"domain": "mq.test", "selector": "mq", "key": own,
                                  "headers": ["x-campaign"], "expire": "2099-01-01 00:00:00",
                                  "report": True}  # fmt: skip
        if canon is not None:
            wanted["canonicalization"] = canon
        response = await world.api.post(
            "/v1/inject",
            json={"envelope": "ann@from.test", "recipient": "rcpt@dest.test",
                  "mime": "X-Campaign: c1\r\n" + mime, "dkim": wanted, "tags": ["t"]},
        )  # fmt: skip
        assert response.status_code == 200, response.text
    delivered = await world.delivered(len(canons))
    seen_canons = []
    for seen in delivered:
        tags = verify_all(seen.data, world.dns)
        by_domain = {t[b"d"]: t for t in tags}
        assert set(by_domain) == {b"from.test", b"mq.test"}  # in addition to the default
        mq = by_domain[b"mq.test"]
        assert mq[b"x"] == b"4070908800" and mq[b"r"] == b"y"
        assert b"x-campaign" in mq[b"h"].split(b":")
        seen_canons.append(mq[b"c"].decode())
    assert sorted(seen_canons) == sorted(c or "relaxed/simple" for c in canons)

    bad = [
        ({"domain": "mq.test", "selector": "mq", "key": "nope"}, "dkim.key must be a PEM"),
        ({"domain": "mq.test", "selector": "mq", "key": own, "protocols": ["arc"]}, "ARC"),
        ({"domain": "mq.test", "selector": "mq", "key": own, "canonicalization": "x/y"},
         "canonicalization must be one of"),
        ({"domain": "mq.test", "selector": "mq",
          "key": own.replace(own.splitlines()[2], own.splitlines()[2][::-1])},
         "dkim.key is not a readable PEM private key"),
    ]  # fmt: skip
    for wanted, reason in bad:
        response = await world.api.post(
            "/v1/inject",
            json={"recipient": "rcpt@dest.test", "mime": mime, "dkim": wanted},
        )
        assert response.status_code == 400 and reason in response.json()["error"], response.text
        assert own.splitlines()[2] not in response.text
    # An X-GreenArrow-DKIM in the mime that names no key refuses the message as well.
    response = await world.api.post(
        "/v1/inject",
        json={"recipient": "rcpt@dest.test",
              "mime": 'X-GreenArrow-DKIM: {"domain": "none.test"}\r\n' + mime},
    )  # fmt: skip
    assert response.status_code == 400, response.text
    assert "X-GreenArrow-DKIM names a DKIM key that does not exist" in response.text
    # The key is in no stored message, no result document and no log line.
    secret_line = own.splitlines()[2]
    with world.plane.store.read() as conn:
        rows = conn.execute(select(messages.c.mq_options, messages.c.body)).all()
    assert len(rows) == len(canons)
    for row in rows:
        assert secret_line not in json.dumps(row.mq_options)
        assert secret_line.encode() not in bytes(row.body)
        assert row.mq_options["document"]["dkim"]["domain"] == "mq.test"
        assert "key" not in row.mq_options["document"]["dkim"]
    assert secret_line not in caplog.text and secret_line[::-1] not in caplog.text


async def test_signed_through_a_redirect_and_a_routing_rule(
    world: World, sink_factory: Any
) -> None:
    other: RecordingSink = sink_factory()
    target = world.plane.add_relay("relay-b", other.port)
    world.plane.add_relay("relay-a", world.sink.port, redirect=Ref(id=target))
    insert(world.plane, rule("rr", RandomizationType.EMAIL_ADDRESS_CONSTANT, ("relay-a", 1)))
    await world.key(
        domain="from.test", selector="default", default_for_domain=True, key={"type": "ed25519"}
    )
    await world.plane.asend(message("X-GreenArrow-MtaID: rr\r\nFrom: ann@from.test\r\n"))
    seen = (await eventually(lambda: other.messages, what="delivery through the redirect"))[0]
    tags = verify_all(seen.data, world.dns)
    assert [(t[b"d"], t[b"s"]) for t in tags] == [(b"from.test", b"default")]
    assert world.sink.messages == []


async def test_amqp_outbox_signs_per_message_keys_and_rejects_a_bad_dkim(
    world: World, channel: Any, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure("DEBUG")  # as `vmta serve` sets logging up, at its most talkative
    root.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    try:
        await _outbox_case(world, channel, queue_name, caplog)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        logging.getLogger("aiormq").setLevel(logging.NOTSET)


async def _outbox_case(
    world: World, channel: Any, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    own = pem_of(ed25519.Ed25519PrivateKey.generate())
    material = key_material.imported(own)
    world.dns.records["amqp._domainkey.mq.test"] = f"v=DKIM1; k=ed25519; p={material.public}"
    mime = message("From: ann@from.test\r\n").decode()
    good = {"domain": "mq.test", "selector": "amqp", "key": own}
    bad = {"domain": "mq.test", "selector": "amqp", "key": own, "protocols": ["arc", "dkim"]}
    consumer = OutboxConsumer(AMQP_URL, queue_name, world.plane.plane.intake)
    await consumer.start()
    try:
        for wanted in (bad, good):
            body = {"recipient": "rcpt@dest.test", "mime": mime, "dkim": wanted}
            await publish(channel, queue_name, json.dumps(body).encode())
        (seen,) = await world.delivered(1)
        await eventually(lambda: consumer.rejected == 1, what="the bad dkim rejected")
    finally:
        await consumer.stop()
    await channel.queue_delete(queue_name)
    tags = verify_all(seen.data, world.dns)
    assert [(t[b"d"], t[b"s"], t[b"c"]) for t in tags] == [(b"mq.test", b"amqp", b"relaxed/simple")]
    assert "protocols" in caplog.text  # the reason, logged ...
    assert own.splitlines()[1] not in caplog.text  # ... without the key


@pytest.mark.one_database  # the store's part is in tests/store/test_dkim_keys.py
async def test_rotation_new_selector_made_default_then_old_deleted(world: World) -> None:
    old = await world.key(
        domain="from.test", selector="s2026", default_for_domain=True, key={"bits": 1024}
    )
    await world.plane.asend(message("From: ann@from.test\r\n"))
    new = await world.key(domain="from.test", selector="s2027", key={"bits": 1024})
    await world.plane.asend(message("From: ann@from.test\r\n"))  # still the old default
    response = await world.api.put(
        f"{GA}/{new['id']}", json={"dkim_key": {"default_for_domain": True}}
    )
    assert response.json()["data"]["dkim_key"]["default_for_domain"] is True
    signer = world.plane.plane.intake.signer
    assert signer is not None
    signer.keyring.invalidate()  # rather than waiting for the keyring's second
    await world.plane.asend(message("From: ann@from.test\r\n"))
    assert (await world.api.delete(f"{GA}/{old['id']}")).status_code == 200
    signer.keyring.invalidate()
    await world.plane.asend(message("From: ann@from.test\r\n"))
    selectors = []
    for seen in await world.delivered(4):
        (tags,) = verify_all(seen.data, world.dns)
        selectors.append(tags[b"s"])
    assert selectors == [b"s2026", b"s2026", b"s2027", b"s2027"]


@pytest.mark.one_database
async def test_a_key_named_just_after_it_was_created_is_found(world: World) -> None:
    """The keyring looks at the table at most once a second; a header naming a key it does
    not hold makes it look again at once, so a key is usable as soon as POST answered."""
    await world.plane.asend(message("From: ann@from.test\r\n"))  # the keyring has looked
    response = await world.api.post(
        GA, json={"dkim_key": {"domain": "from.test", "selector": "fresh", "key": {"bits": 1024}}}
    )
    world.dns.publish(response.json()["data"]["dkim_key"])  # no keyring.invalidate() here
    header = '{"domain": "from.test", "selector": "fresh"}'
    await world.plane.asend(message(f"From: ann@from.test\r\nX-GreenArrow-DKIM: {header}\r\n"))
    unsigned, signed = await world.delivered(2)
    assert signatures(unsigned.data) == []
    tags = verify_all(signed.data, world.dns)
    assert [(t[b"d"], t[b"s"]) for t in tags] == [(b"from.test", b"fresh")]
