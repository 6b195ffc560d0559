"""vmta's signer against dkimpy as the verifier, in memory: folding of long tag values,
messages with bare LF line endings, several signatures sharing one body hash, messages
in wire form (dot-stuffed) signed as the receiver gets them."""

from __future__ import annotations

import time

import dkim
import pytest

from vmta.domain.message.wire_form import to_wire, unstuffed
from vmta.signing.keys import generate, load
from vmta.signing.signer import Signature, body_hash, normalized, sign, sign_wire

RSA = generate("rsa", 1024)
ED = generate("ed25519", None)
DNS = {
    b"r._domainkey.a.test.": f"v=DKIM1; k=rsa; p={RSA.public}".encode(),
    b"e._domainkey.a.test.": f"v=DKIM1; k=ed25519; p={ED.public}".encode(),
}


def dns(name: bytes, timeout: int = 5) -> bytes | None:
    return DNS.get(name if name.endswith(b".") else name + b".")


def verified(data: bytes, count: int) -> None:
    for index in range(count):
        assert dkim.DKIM(data).verify(idx=index, dnsfunc=dns), index


@pytest.mark.parametrize("canon", ["simple", "relaxed"])
def test_many_signed_headers_fold_under_the_line_limit(canon: str) -> None:
    extra = tuple(f"x-extra-header-number-{n}" for n in range(40))
    head = "".join(f"{name}: value {n}\r\n" for n, name in enumerate(extra))
    data = (f"From: a@a.test\r\nSubject: s\r\n{head}\r\nbody\r\n").encode()
    signature = Signature("a.test", "r", load(RSA.private_pem), canon, canon, extra_headers=extra)
    signed = sign(data, [signature], int(time.time()))
    verified(signed, 1)
    assert max(len(line) for line in signed.split(b"\r\n")) <= 100
    field = signed.split(b"\r\nFrom:", 1)[0]
    assert all(name.encode() in field.replace(b"\r\n\t", b"") for name in extra)


def test_bare_lf_message_is_signed_as_it_goes_on_the_wire() -> None:
    data = b"From: a@a.test\nSubject: lf\n\nline one  \n.dot\n\n"
    signed = sign(data, [Signature("a.test", "e", load(ED.private_pem))], int(time.time()))
    assert signed.endswith(normalized(data)) and b"\n" not in signed.replace(b"\r\n", b"")
    verified(signed, 1)


def test_no_signature_leaves_the_message_alone_and_two_share_a_body_hash() -> None:
    data = b"From: a@a.test\nSubject: x\n\nbody\n"
    assert sign(data, [], 1) is data
    signed = sign(
        data,
        [
            Signature("a.test", "r", load(RSA.private_pem)),
            Signature("a.test", "e", load(ED.private_pem)),
        ],
        int(time.time()),
    )
    verified(signed, 2)
    assert signed.index(b"a=ed25519-sha256") < signed.index(b"a=rsa-sha256")  # last on top


@pytest.mark.parametrize("canon", ["simple", "relaxed"])
def test_a_wire_form_message_is_signed_as_the_receiver_gets_it(canon: str) -> None:
    """sign_wire hashes the body without its stuffed dots (the receiver removes them,
    RFC 5321 §4.5.2): dkimpy verifies the un-stuffed message, and the hash is the one
    ``sign`` gives for the message as given."""
    data = (
        b"From: a@a.test\r\nSubject: dots\r\n\r\n.first line\r\n..two dots\r\nmid  dle\t\r\n"
        b".\r\n. \r\nlast\r\n.\r\n\r\n\r\n"
    )
    wire = to_wire(data)
    assert wire != data  # stuffed
    signature = Signature("a.test", "r", load(RSA.private_pem), canon, canon)
    signed_wire = sign_wire(wire, [signature], 1_700_000_000)
    delivered = unstuffed(signed_wire)
    assert delivered == sign(data, [signature], 1_700_000_000)
    verified(delivered, 1)
    for how in ("simple", "relaxed"):
        assert body_hash(wire.split(b"\r\n\r\n", 1)[1], how, stuffed=True) == body_hash(
            data.split(b"\r\n\r\n", 1)[1], how
        )


def test_a_message_that_starts_with_a_dot_in_its_body_and_no_header_break() -> None:
    wire = to_wire(b"From: a@a.test\r\n\r\n.")
    signed = sign_wire(wire, [Signature("a.test", "e", load(ED.private_pem))], int(time.time()))
    verified(unstuffed(signed), 1)
    assert unstuffed(signed).endswith(b"\r\n\r\n.\r\n")
