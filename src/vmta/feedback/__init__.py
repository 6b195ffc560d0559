"""What comes back from receivers: bounces and complaints received at the mailboxes of
incoming email domains, parsed, matched to what vmta sent (VERP), and turned into events
(docs/feedback.md)."""
