"""Telling others what happened: the event sender and its HTTP and RabbitMQ destinations."""
