"""Telling others what happened: the event sender, its HTTP and RabbitMQ destinations, and
the state of the links to them."""
