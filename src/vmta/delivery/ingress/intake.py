"""Accepting a message: choose nothing yet, remove the selector headers, add the trace
header, commit to the spool, and only then say yes (ARCHITECTURE.md pitfall: never reply
250 to DATA before the message is durably stored)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from vmta.delivery.engine.delivery_engine import DeliveryEngine
from vmta.delivery.engine.spool_gateway import SpoolGateway
from vmta.delivery.ingress.inflow import InflowGate
from vmta.delivery.outcomes.activity_log import ActivityLog
from vmta.domain.attempts.engine_metrics import EngineMetrics, NoMetrics
from vmta.domain.attempts.message_retry_policy import lifetime_end
from vmta.domain.attempts.spool_records import NewMessage
from vmta.domain.clock import Clock
from vmta.domain.message.arrival import Arrival
from vmta.domain.message.dkim_request import (
    Directive,
    DkimRequestRefused,
    MqSignature,
    header_values,
    parse_directives,
)
from vmta.domain.message.message_headers import take_selector, with_trace_header
from vmta.domain.message.mq_message import (
    InvalidMqMessage,
    MqMessage,
    read_options,
    take_mq_headers,
)
from vmta.domain.message.queue_id import new_queue_id
from vmta.domain.message.wire_form import to_wire
from vmta.domain.paths.mail_loops import DEFAULT_MAX_HOPS, check_hops
from vmta.signing.message_signer import MessageSigner


@functools.lru_cache(maxsize=4)
def rfc5322_date(second: int) -> str:
    """The date of a Received field (RFC 5322 §3.3), which names whole seconds: built once
    per second, not once per message."""
    return format_datetime(datetime.fromtimestamp(second, UTC))


# The metric source of each way in (``via``: "" is SMTP injection; "inbound" is a copy
# the inbound listener forwards, which came by SMTP too).
_SOURCE_OF_VIA = {"": "smtp", "inbound": "smtp", "HTTP": "http", "AMQP": "amqp"}


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
        inflow: InflowGate | None = None,
        signer: MessageSigner | None = None,
        max_hops: int = DEFAULT_MAX_HOPS,
        activity: ActivityLog | None = None,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.metrics = metrics or NoMetrics()
        self.inflow = inflow
        self.signer = signer
        self.max_hops = max_hops
        self.activity = activity or ActivityLog("off")
        self.gateway = gateway
        self.engine = engine
        self.clock = clock
        self.hostname = hostname
        self.honour_x_virtual_mta = honour_x_virtual_mta
        self.max_lifetime = max_lifetime

    def refusal(self) -> str | None:
        """The reply for a new transaction when the node takes no more mail now (queue
        full, disk low), else None."""
        return self.inflow.refusal() if self.inflow is not None else None

    async def accept(
        self,
        arrival: Arrival,
        mq_document: Mapping[str, Any] | None = None,
        via: str = "",
        mq_dkim: Sequence[MqSignature] = (),
    ) -> str:
        """Store the message durably and hand it to the engine; returns its queue id.

        Selector headers and every ``x-mq-*`` header are removed; the MailerQ options they
        carry, or those of ``mq_document`` (a MailerQ message JSON without its ``mime``,
        from ``/v1/inject`` or the AMQP outbox), travel with the message. A bad MailerQ
        option raises ``InvalidMqMessage`` before anything is stored; a message with more
        than ``max_hops`` Received fields raises ``TooManyHops`` (a mail loop,
        domain/paths/mail_loops.py), whichever way it came.

        When the client may relay, the message is DKIM-signed here, once, after vmta's own
        header changes and before the commit (``MessageSigner``): by the default keys, or
        as ``X-GreenArrow-DKIM`` asks, plus MailerQ's per-message keys (``mq_dkim``). A
        signing request that cannot be honoured raises ``DkimRequestRefused``, and nothing
        is stored."""
        # Every edit below is of whole header lines, which keeps wire form: no header line
        # added here starts with ".", and removing lines changes no other line.
        wire = arrival.data if arrival.wire_form else to_wire(arrival.data)
        check_hops(wire, self.max_hops)
        now = self.clock.now()
        queue_id = new_queue_id(now)
        directives: list[Directive] | None = None
        if self.signer is not None and arrival.may_relay:
            values = header_values(wire)
            directives = parse_directives(values) if values else None
        selection = take_selector(wire, honour_powermta=self.honour_x_virtual_mta)
        headers = take_mq_headers(selection.data)
        document = {**headers.keys, **(mq_document or {})}
        options = read_options(document, now) if document else None
        data = headers.data
        if self.signer is not None and arrival.may_relay:
            data = await self.signer.sign(data, directives=directives, per_message=mq_dkim)
        body = with_trace_header(data, self.received(arrival, queue_id, now, via))
        received_size = len(arrival.data)
        client_ip, auth_name = arrival.client_ip, arrival.auth_name
        message = NewMessage(
            id=queue_id,
            received_at=now,
            expires_at=lifetime_end(options, now + self.max_lifetime),
            mail_from=arrival.mail_from,
            recipients=list(arrival.recipients),
            body=body,
            vmta_selector=selection.selector,
            client_ip=arrival.client_ip,
            auth_name=arrival.auth_name,
            mq_options=options or None,
            kept_headers=selection.kept or None,
            wire_form=True,
        )
        # From here on only ``body`` holds the message. The caller handed the arrival over
        # (smtp/listener.py gives it no name), so the message as it came is freed now,
        # not after the commit: a session waiting for the spool holds one copy, not two
        # (docs/PERFORMANCE.md round 7).
        del arrival, wire, selection, headers, data
        # Claimed at once (the fast path) when this node has room in memory for its
        # recipients; otherwise stored for a poll, by this node or another.
        claim = self.engine.room_for(len(message.recipients))
        jobs = await self.gateway.accept(message, now, claim=claim)
        if self.inflow is not None:
            self.inflow.accepted(len(message.recipients))
        self.engine.submit(jobs)
        self.metrics.accepted(_SOURCE_OF_VIA.get(via, "smtp"))
        self.activity.accepted(
            queue_id,
            client=client_ip,
            auth_name=auth_name,
            size=received_size,
            data=message.body,
            recipients=len(message.recipients),
        )
        return queue_id

    async def accept_mq(
        self, message: MqMessage, *, via: str, client_ip: str | None, auth_name: str | None
    ) -> str:
        """A MailerQ message JSON (``/v1/inject``, the AMQP outbox): the same intake as
        SMTP, answered only after the commit."""
        arrival = Arrival(
            mail_from=message.envelope,
            recipients=[message.recipient],
            data=message.mime,
            client_ip=client_ip,
            helo=None,
            auth_name=auth_name,
            tls=False,
            may_relay=True,  # an API credential, or the operator's own RabbitMQ outbox
        )
        document = dict(message.options.get("document") or {})
        try:
            return await self.accept(arrival, document, via, message.dkim)
        except DkimRequestRefused as exc:
            # An X-GreenArrow-DKIM in its mime that cannot be honoured: a bad message, as
            # MailerQ's own problems are (400 at /v1/inject, rejected on the outbox).
            raise InvalidMqMessage(exc.messages) from None

    def received(self, arrival: Arrival, queue_id: str, now: float, via: str = "") -> str:
        """A Received field (RFC 5321 §4.4) with the protocol keyword of RFC 3848 (for
        mail that did not come by SMTP, ``via`` names how it came: HTTP, AMQP)."""
        protocol = "ESMTP" + ("S" if arrival.tls else "") + ("A" if arrival.auth_name else "")
        protocol = via or protocol
        helo = (arrival.helo or "unknown").replace("\r", "").replace("\n", "")[:255]
        stamp = rfc5322_date(int(now))
        return (
            f"Received: from {helo} ([{arrival.client_ip or 'unknown'}])\r\n"
            f"\tby {self.hostname} (vmta) with {protocol} id {queue_id};\r\n"
            f"\t{stamp}"
        )
