"""The delivery engine proper: the scheduler (what is due), the dispatcher and a ready
queue per egress path, connection workers, the outcome recorder, and the spool gateway
with its group commit."""
