"""A delivery attempt and what it means: replies, outcomes, retries, and the ports the
engine works through (the spool, the SMTP transport, its metrics)."""
