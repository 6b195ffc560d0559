"""How mail enters the spool: the intake (checks, header edits, DKIM signing, the commit
before the reply), inflow control, and MailerQ's AMQP outbox."""
