"""Throttles: which rule applies, a throttle's identity, and Dynamic Delivery's backoff."""
