"""Which event destinations are configured, as the spool (subscriptions: who gets a
delivery row for which event type) and the event sender (the destinations) need them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vmta.delivery.event_amqp import DEFAULT_QUEUES, RabbitMqEventDestination
from vmta.delivery.event_http import HttpEventDestination
from vmta.delivery.event_sender import EventDestination, SenderSettings
from vmta.domain.delivery_event import EventSubscription


@dataclass(frozen=True)
class EventSettings:
    http_url: str | None = field(default=None, repr=False)  # may carry credentials
    http_batch: int = 1
    http_timeout: float = 10.0
    rabbitmq_url: str | None = field(default=None, repr=False)
    rabbitmq_queues: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_QUEUES))
    sender: SenderSettings = field(default_factory=SenderSettings)


def event_destinations(settings: EventSettings) -> list[EventDestination]:
    destinations: list[EventDestination] = []
    if settings.http_url:
        destinations.append(
            HttpEventDestination(
                settings.http_url, batch_size=settings.http_batch, timeout=settings.http_timeout
            )
        )
    if settings.rabbitmq_url and any(settings.rabbitmq_queues.values()):
        destinations.append(
            RabbitMqEventDestination(settings.rabbitmq_url, queues=settings.rabbitmq_queues)
        )
    return destinations


def subscriptions(destinations: list[EventDestination]) -> list[EventSubscription]:
    return [EventSubscription(d.name, d.event_types) for d in destinations]
