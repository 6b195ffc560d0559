"""The event type of the parsed report itself (vmta.feedback): ``report`` goes to the
RabbitMQ ``reports`` queue as MailerQ-style JSON. Received bounces are ``bounce_all``
events with ``synchronous: false``, complaints ``scomp`` (vmta.domain.reports.delivery_event)."""

from __future__ import annotations

REPORT = "report"
REPORTS_QUEUE = "reports"  # the key of its queue among the RabbitMQ queue names
