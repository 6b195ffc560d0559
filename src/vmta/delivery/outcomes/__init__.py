"""What became of each recipient: the outcome recorder (retry policy, spool, bounces) and
the logs of what went through."""
