"""The delivery engine proper: the scheduler (what is due), the dispatcher and a ready
queue per egress path, connection workers, and the spool gateway with its group commit."""
