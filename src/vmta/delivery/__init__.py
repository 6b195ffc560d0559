"""Scheduling and carrying out deliveries, one sub-package per concept: ``ingress`` (mail
into the spool), ``routing`` (recipient to egress path), ``throttles`` (how fast a path
may go), ``engine`` (scheduler, dispatcher, ready queues, connections), ``outcomes`` (what
became of each recipient) and ``events`` (telling others)."""
