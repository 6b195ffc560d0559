"""What became of mail, written out: bounces to the sender (RFC 3464 delivery status
notifications), the JSON delivery log and the activity log."""
