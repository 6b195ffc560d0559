"""Accepting a message: choose nothing yet, remove the selector headers, add the trace
header, commit to the spool, and only then say yes (ARCHITECTURE.md pitfall: never reply
250 to DATA before the message is durably stored)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from vmta.delivery.clock import Clock
from vmta.delivery.engine import DeliveryEngine
from vmta.delivery.spool_gateway import SpoolGateway
from vmta.domain.message_headers import take_selector, with_trace_header
from vmta.domain.queue_id import new_queue_id
from vmta.domain.spool_records import NewMessage


@dataclass(frozen=True)
class Arrival:
    mail_from: str
    recipients: Sequence[str]
    data: bytes
    client_ip: str | None
    helo: str | None
    auth_name: str | None
    tls: bool


class Intake:
    def __init__(
        self,
        gateway: SpoolGateway,
        engine: DeliveryEngine,
        clock: Clock,
        *,
        hostname: str,
        honour_x_virtual_mta: bool,
        max_lifetime: float,
    ) -> None:
        self.gateway = gateway
        self.engine = engine
        self.clock = clock
        self.hostname = hostname
        self.honour_x_virtual_mta = honour_x_virtual_mta
        self.max_lifetime = max_lifetime

    async def accept(self, arrival: Arrival) -> str:
        """Store the message durably and hand it to the engine; returns its queue id."""
        now = self.clock.now()
        queue_id = new_queue_id(now)
        selection = take_selector(arrival.data, honour_powermta=self.honour_x_virtual_mta)
        body = with_trace_header(selection.data, self.received(arrival, queue_id, now))
        message = NewMessage(
            id=queue_id,
            received_at=now,
            expires_at=now + self.max_lifetime,
            mail_from=arrival.mail_from,
            recipients=list(arrival.recipients),
            body=body,
            vmta_selector=selection.selector,
            client_ip=arrival.client_ip,
            auth_name=arrival.auth_name,
            kept_headers=selection.kept or None,
        )
        jobs = await self.gateway.accept(message, now)
        self.engine.submit(jobs, body)
        return queue_id

    async def accept_bounce(self, recipient: str, data: bytes) -> str:
        """Queue a delivery status notification: null reverse-path (RFC 5321 §4.5.5, so
        that it can never cause another bounce), no selector (it goes the default way)."""
        now = self.clock.now()
        queue_id = new_queue_id(now)
        message = NewMessage(
            id=queue_id,
            received_at=now,
            expires_at=now + self.max_lifetime,
            mail_from="",
            recipients=[recipient],
            body=data,
            is_bounce=True,
        )
        jobs = await self.gateway.accept(message, now)
        self.engine.submit(jobs, data)
        return queue_id

    def received(self, arrival: Arrival, queue_id: str, now: float) -> str:
        """A Received field (RFC 5321 §4.4) with the protocol keyword of RFC 3848."""
        protocol = "ESMTP" + ("S" if arrival.tls else "") + ("A" if arrival.auth_name else "")
        helo = (arrival.helo or "unknown").replace("\r", "").replace("\n", "")[:255]
        stamp = format_datetime(datetime.fromtimestamp(now, UTC))
        return (
            f"Received: from {helo} ([{arrival.client_ip or 'unknown'}])\r\n"
            f"\tby {self.hostname} (vmta) with {protocol} id {queue_id};\r\n"
            f"\t{stamp}"
        )
