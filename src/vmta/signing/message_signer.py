"""Signing one message at intake: the keys chosen for it (``choice``) and MailerQ's
per-message keys, then the signer, in a worker thread (RSA in OpenSSL releases the GIL),
so that the event loop keeps serving other clients meanwhile.

Signing happens once, before the message is committed to the spool: every attempt and
every recipient gets the same signed bytes, and a per-message key is never stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from vmta.domain.clock import Clock
from vmta.domain.message.dkim_request import Directive, MqSignature
from vmta.domain.message.message_headers import split_headers
from vmta.domain.message.mq_message import InvalidMqMessage
from vmta.signing.choice import UnknownKey, default_choice, directed_choice
from vmta.signing.keyring import Keyring
from vmta.signing.keys import KeyRefused, load
from vmta.signing.signer import Signature, sign_wire

# Threads of the signer's own: on asyncio's default executor, signing waited behind
# whatever else was queued there (blocking clients in a test, DNS lookups), and with
# that executor full no message could be answered. Two are enough on two cores: a
# 2048-bit RSA signature takes about half a millisecond of OpenSSL, outside the GIL.
SIGNING_THREADS = 2


class MessageSigner:
    def __init__(self, keyring: Keyring, clock: Clock) -> None:
        self.keyring = keyring
        self.clock = clock
        self._threads = ThreadPoolExecutor(SIGNING_THREADS, thread_name_prefix="dkim-signer")

    async def sign(
        self,
        data: bytes,
        *,
        directives: Sequence[Directive] | None,
        per_message: Sequence[MqSignature] = (),
    ) -> bytes:
        """``data`` (in wire form, domain/message/wire_form.py) signed as asked, in wire form;
        raises DkimRequestRefused (a directive names no key) or InvalidMqMessage (a
        per-message key cannot be used)."""
        keys = await self.keyring.keys()
        if directives is None and not per_message and not keys.defaults:
            return data  # no key could sign it: nothing to read
        # Which keys apply is read from From and the like, never from a field whose
        # name starts with ".", so the wire form's stuffed dots change nothing here.
        fields = split_headers(data).headers
        if directives is None:
            choices = default_choice(fields, keys)
        else:
            try:
                choices = directed_choice(fields, directives, keys)
            except UnknownKey:
                # Perhaps created since the keyring last looked: look again, once.
                keys = await self.keyring.keys(fresh=True)
                choices = directed_choice(fields, directives, keys)
        signatures = [Signature(c.domain, c.selector, c.key.key) for c in choices]
        problems: list[str] = []
        for index, wanted in enumerate(per_message):
            where = "dkim" if len(per_message) == 1 else f"dkim[{index}]"
            try:
                key = load(wanted.key_pem)
            except KeyRefused as refused:
                problems.append(f"{where}.key {refused}")
                continue
            signatures.append(
                Signature(
                    wanted.domain,
                    wanted.selector,
                    key,
                    header_canon=wanted.header_canon,
                    body_canon=wanted.body_canon,
                    extra_headers=wanted.headers,
                    oversign_all=wanted.oversign,
                    expire=wanted.expire,
                    report=wanted.report,
                )
            )
        if problems:
            raise InvalidMqMessage(problems)
        if not signatures:
            return data
        loop = asyncio.get_running_loop()
        now = int(self.clock.now())
        return await loop.run_in_executor(self._threads, sign_wire, data, signatures, now)
