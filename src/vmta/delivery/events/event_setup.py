"""Which event destinations are configured, as the spool (subscriptions: who gets a
delivery row for which event type) and the event sender (the destinations) need them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vmta.delivery.events.event_sender import EventDestination, SenderSettings
from vmta.domain.reports.bad_address import BadAddressPolicy
from vmta.domain.reports.delivery_event import EventSubscription
from vmta.domain.reports.mailerq_result import DEFAULT_QUEUES


@dataclass(frozen=True)
class EventSettings:
    http_url: str | None = field(default=None, repr=False)  # may carry credentials
    http_batch: int = 100
    http_timeout: float = 10.0
    # Per event type, a URL of its own (VMTA_EVENTS_HTTP_URL_<TYPE>).
    http_type_urls: Mapping[str, str] = field(default_factory=dict, repr=False)
    http_json: bool = True  # false: GreenArrow's form-encoded one-event-per-POST
    server_id: str | None = None  # the node's name, in every GreenArrow event
    bad_addresses: BadAddressPolicy = field(default_factory=BadAddressPolicy)
    rabbitmq_url: str | None = field(default=None, repr=False)
    rabbitmq_queues: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_QUEUES))
    sender: SenderSettings = field(default_factory=SenderSettings)


def event_destinations(settings: EventSettings) -> list[EventDestination]:
    destinations: list[EventDestination] = []
    type_urls = {kind: url for kind, url in settings.http_type_urls.items() if url}
    # Each destination's client library is imported only when it is configured: httpx and
    # aio-pika cost every process about 9 MB that a node without them never uses.
    if settings.http_url or type_urls:
        from vmta.delivery.events.event_http import HttpEventDestination

        destinations.append(
            HttpEventDestination(
                settings.http_url,
                batch_size=settings.http_batch,
                timeout=settings.http_timeout,
                type_urls=type_urls,
                json_form=settings.http_json,
                server_id=settings.server_id,
            )
        )
    if settings.rabbitmq_url and any(settings.rabbitmq_queues.values()):
        from vmta.delivery.events.event_amqp import RabbitMqEventDestination

        destinations.append(
            RabbitMqEventDestination(settings.rabbitmq_url, queues=settings.rabbitmq_queues)
        )
    return destinations


def subscriptions(destinations: list[EventDestination]) -> list[EventSubscription]:
    return [EventSubscription(d.name, d.event_types) for d in destinations]
