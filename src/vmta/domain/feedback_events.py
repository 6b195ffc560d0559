"""The event types of what comes back (vmta.feedback): ``scomp`` for a spam complaint
(GreenArrow's name), and ``report``, the parsed report itself, which goes to the RabbitMQ
``reports`` queue as MailerQ-style JSON. Received bounces are ``bounce_all`` events with
``synchronous: false`` (vmta.domain.delivery_event)."""

from __future__ import annotations

SCOMP = "scomp"
REPORT = "report"
REPORTS_QUEUE = "reports"  # the key of its queue among the RabbitMQ queue names
