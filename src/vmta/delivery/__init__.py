"""Scheduling and carrying out deliveries: spool gateway, routing, ready queues per egress
path, throttles, workers, retries."""
